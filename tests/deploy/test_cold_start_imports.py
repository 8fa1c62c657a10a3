"""Each function's init imports what its requests use and no more (benchmarks/cold_start.py times
it): the queue API no consumer, engine, WebSocket, console or registry code (a run of a stored prompt
imports the registry's at that run), the console and the registry API no queue code; the other
functions no FastAPI; none the X-Ray SDK while tracing is off, and the non-HTTP functions, with
tracing on, import it before their own code. Counted in a fresh process that
imports the handler's module, as Lambda's init does, with the function's folder and the layer's
source on its path."""

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.deploy.conftest import ROOT

PROBE = r"""
import importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
importlib.import_module("app")
print(json.dumps(sorted(sys.modules)))
"""

ENVIRONMENT = {
    "PROMPTS_TABLE": "t",
    "KEYS_TABLE": "k",
    "REGISTRY_TABLE": "r",
    "CONNECTIONS_TABLE": "c",
    "SUBSCRIPTIONS_TABLE": "s",
    "THREAD_EVENTS_TABLE": "e",
    "PROMPTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
    "PROMPTS_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/d",
    "CURSOR_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:c",
    "WEBSOCKET_ENDPOINT": "https://w.execute-api.us-east-1.amazonaws.com/prod",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "promptsvc",
}

WEBSOCKET = (
    "promptsvc.services.subscriptions",
    "promptsvc.services.fanout",
    "promptsvc.adapters.connection_table",
    "promptsvc.adapters.connections_api",
)
REGISTRY = (
    "promptsvc.api.registry_routes",
    "promptsvc.services.registry",
    "promptsvc.domain.registry",
    "promptsvc.domain.prompt_settings",
    "promptsvc.adapters.registry_table",
)
CONSOLE = (
    "promptsvc.api.key_routes",
    "promptsvc.api.key_schemas",
    "promptsvc.api.usage_routes",
    "promptsvc.api.playground",
    "promptsvc.services.usage",
)
QUEUE = (
    "promptsvc.api.routes",
    "promptsvc.api.seed_routes",
    "promptsvc.services.prompts",
    "promptsvc.services.prompt_intake",
    "promptsvc.adapters.prompt_table",
    "promptsvc.adapters.prompt_queue",
)
NOT_IMPORTED = {
    # api/documentation: the OpenAPI document's models, which the deployed API never writes; the
    # list query language, its reads and cursors: imported by the first list request
    "api": (
        "promptsvc.domain.query",
        "promptsvc.services.listing",
        "promptsvc.adapters.prompt_reads",
        "promptsvc.consumer",
        "promptsvc.engines",
        *WEBSOCKET,
        "aws_xray_sdk",
        "promptsvc.api.documentation",
        *CONSOLE,
        *REGISTRY,
    ),
    "console": (
        "promptsvc.consumer",
        "promptsvc.engines",
        *WEBSOCKET,
        "aws_xray_sdk",
        "promptsvc.api.documentation",
        *QUEUE,
        *REGISTRY,
    ),
    "registry": (
        "promptsvc.consumer",
        "promptsvc.engines",
        *WEBSOCKET,
        "aws_xray_sdk",
        "promptsvc.api.documentation",
        *QUEUE,
        *CONSOLE,
    ),
    # the mock engine's settings: made with the mock engine, which no deployed model uses
    "consumer": (
        "fastapi",
        "starlette",
        "mangum",
        "promptsvc.api",
        *WEBSOCKET,
        "aws_xray_sdk",
        "promptsvc.settings.mock_engine",
    ),
    # settle ends runs, it runs none: no claims, generation or engines (wiring.async_runs)
    "settle": (
        "fastapi",
        "starlette",
        "mangum",
        "promptsvc.api",
        *WEBSOCKET,
        "aws_xray_sdk",
        "promptsvc.consumer.runner",
        "promptsvc.consumer.claim",
        "promptsvc.consumer.generation",
        "promptsvc.engines.registry",
        "promptsvc.settings.mock_engine",
    ),
    "deadletter": ("fastapi", "starlette", "mangum", "promptsvc.api", "promptsvc.engines", "aws_xray_sdk"),
    "ws": ("fastapi", "starlette", "mangum", "promptsvc.api", "promptsvc.consumer", "aws_xray_sdk"),
    "stream": ("fastapi", "starlette", "mangum", "promptsvc.api", "promptsvc.consumer", "aws_xray_sdk"),
}


def after_init(function: str, probe: str, env: dict[str, str] | None = None) -> Any:
    """What `probe` prints (JSON, its last line) in a fresh process that imported the function's
    handler module, with the function's folder and the layer's source on its path."""
    paths = [str(ROOT / "functions" / function), str(ROOT / "layers" / "promptsvc")]
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(paths)],
        env={**ENVIRONMENT, **(env or {}), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT / "functions" / function,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def imported_by(function: str) -> list[str]:
    modules: list[str] = after_init(function, PROBE)
    return modules


@pytest.mark.parametrize("function", sorted(NOT_IMPORTED))
def test_a_functions_init_imports_only_what_its_requests_use(function: str) -> None:
    modules = imported_by(function)
    assert "promptsvc.settings" in modules  # the probe saw the init
    unwanted = sorted(
        name
        for name in modules
        for prefix in NOT_IMPORTED[function]
        if name == prefix or name.startswith(f"{prefix}.")
    )
    assert unwanted == []


COLLECTOR_PROBE = r"""
import gc, importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
importlib.import_module("app")
print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""

FUNCTIONS = sorted(path.parent.name for path in (ROOT / "functions").glob("*/app.py"))


def collector_after_init(function: str, *, in_lambda: bool) -> dict[str, int]:
    lambda_env = {"LAMBDA_TASK_ROOT": str(ROOT / "functions" / function)} if in_lambda else {}
    state: dict[str, int] = after_init(function, COLLECTOR_PROBE, lambda_env)
    return state


@pytest.mark.parametrize("function", FUNCTIONS)
def test_in_lambda_an_init_ends_with_its_objects_frozen_and_the_collector_back_on(function: str) -> None:
    """The handler pauses the collector for its init (promptsvc/collector.py): a handler that
    never resumed it would leave every invocation's cyclic garbage uncollected."""
    state = collector_after_init(function, in_lambda=True)
    assert state["enabled"] is True
    assert state["frozen"] > 10_000  # the init's modules, classes and app: no later collection scans them


@pytest.mark.parametrize("function", ["api", "consumer"])
def test_outside_lambda_a_handler_module_freezes_nothing(function: str) -> None:
    """Tests and `promptsvc dev` load handler modules again and again in one process."""
    assert collector_after_init(function, in_lambda=False) == {"enabled": True, "frozen": 0}


ORDER_PROBE = r"""
import importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
importlib.import_module("app")
print(json.dumps({"modules": list(sys.modules), "tracer": type(sys.modules["app"].tracer).__name__}))
"""
HTTP = {"api", "console", "registry"}  # their tracer is made by api/handler.py's http_handler


@pytest.mark.parametrize("function", sorted(set(FUNCTIONS) - HTTP))
def test_with_tracing_on_the_x_ray_sdk_is_imported_before_the_functions_own_code(function: str) -> None:
    """In Lambda with tracing on, the handler makes Powertools' tracer before its own imports, so
    the X-Ray SDK is imported at the top of the stack, as the dependency floor imports it
    (docs/architecture.md, "Cold start"): imported from inside promptsvc's modules, it cost settle's
    cold start about 4 ms more (benchmarks/cold_start.py)."""
    tracing_on = {
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / function),
        "POWERTOOLS_TRACE_DISABLED": "false",
    }
    after: dict[str, Any] = after_init(function, ORDER_PROBE, tracing_on)
    modules: list[str] = after["modules"]
    assert after["tracer"] == "Tracer"  # a real one: tracing is on
    first_own = min(
        i
        for i, name in enumerate(modules)
        if name.startswith("promptsvc.") and name not in ("promptsvc.collector", "promptsvc.tracing")
    )
    assert modules.index("aws_xray_sdk") < first_own
