"""The artifacts `sam build` made (.aws-sam/build), run as Lambda runs them: every function in a
fresh Python 3.12 process with only its own directory and its layer's python/ on sys.path, invoked
with its events/ payloads against moto holding the template's resources.

This is what catches code that works in the checkout but not as deployed: a handler path that
does not exist, a dependency missing from the layer's requirements.txt, a data file not shipped,
an environment variable or a permission the template does not give.
"""

import pytest

from tests.deploy import checks
from tests.deploy.conftest import Stack, built_target
from tests.deploy.scenarios import SCENARIOS


def test_every_built_function_has_a_scenario() -> None:
    target = built_target()
    functions = {
        logical
        for logical, resource in target.template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert functions == set(SCENARIOS)


# A metric each function's scenario makes it emit with Powertools Metrics (besides ColdStart).
METRICS = {
    "ApiFunction": "ApiServerErrors",
    "ConsoleFunction": "ConsoleServerErrors",
    "RegistryFunction": "RegistryServerErrors",
    "ConsumerFunction": "MessagesKept",
    "DeadLetterFunction": "DeadLettersAbandoned",
    "StreamFunction": "FramesDelivered",
    "WsFunction": "WebSocketMessages",
    "SettleFunction": "AsyncResultsSettled",
}


@pytest.mark.parametrize("function", sorted(SCENARIOS))
def test_built_function_works_as_deployed(built_stack: Stack, function: str) -> None:
    SCENARIOS[function](built_stack)

    template = built_stack.target.template
    for outcome in built_stack.outcomes:
        name = outcome.function
        assert outcome.handler_callable, f"{name}: the handler named in the template is not callable"
        paths = built_stack.target.sys_path(name)
        assert checks.foreign_modules(outcome.modules, paths, outcome.stdlib) == [], f"{name}: not its own"
        assert checks.unset_resource_settings(built_stack.local, name, outcome.settings_read) == [], (
            f"{name}: read but not set by the template"
        )
        assert checks.denied_calls(built_stack.local, template, name, outcome.aws_calls) == [], (
            f"{name}: not allowed by its role"
        )
        shipped = [path for path in outcome.compiled if path.startswith(str(built_stack.target.code_root))]
        assert shipped == [], f"{name}: compiled at its cold start, not loaded from the artifacts' bytecode"
        emitted = checks.emf_metrics(outcome.stdout)
        assert {"ColdStart", METRICS[name]} <= emitted, f"{name}: EMF metrics {sorted(emitted)}"


def test_every_module_of_the_artifacts_has_bytecode_checked_against_its_source() -> None:
    """scripts/sam-build compiles what Lambda will import (read-only there: no __pycache__ can be
    written), as checked-hash .pyc files: used only while their source's hash matches, so an
    artifact whose source changed after compiling is compiled again, never run stale."""
    root = built_target().code_root
    sources = [path for path in root.rglob("*.py") if "__pycache__" not in path.parts]
    missing, unchecked = [], []
    for source in sources:
        cached = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        if not cached.is_file():
            missing.append(str(source.relative_to(root)))
            continue
        flags = int.from_bytes(cached.read_bytes()[4:8], "little")  # PEP 552: bit 0 hash-based, bit 1 checked
        if flags != 0b11:
            unchecked.append(str(source.relative_to(root)))
    assert len(sources) > 1000  # the functions, our package and its dependencies
    assert missing == [], missing[:10]
    assert unchecked == [], unchecked[:10]


def layer_files() -> list[str]:
    layer = built_target().code_root / "PromptsvcLayer" / "python"
    return [path.relative_to(layer).as_posix() for path in layer.rglob("*") if path.is_file()]


def test_the_layer_ships_only_what_runs_in_lambda() -> None:
    """The local stack, its emulators and the CLI (promptsvc_dev) stay on developers' machines, and
    with them moto, uvicorn, websockets and PyYAML."""
    files = layer_files()
    ours = {name.split("/")[1] for name in files if name.startswith("promptsvc/")}
    top = {name.split("/")[0] for name in files}

    assert {"domain", "adapters", "api", "consumer", "engines", "services", "data", "wiring.py"} <= ours
    assert not {"local", "cli.py"} & ours
    assert not {"promptsvc_dev", "moto", "uvicorn", "websockets", "yaml"} & top, sorted(top)
