"""Running the functions of template.yaml as Lambda would: each in a fresh process, with only its
code directory and its layers importable, against moto with the template's own resources.

Two targets: `built` is what `sam build` put in .aws-sam/build (the artifacts `sam deploy`
uploads), run with Python 3.12 and nothing else on sys.path; `source` is functions/ and
layers/promptsvc of the checkout, run with the project's virtualenv, which needs no build.
"""

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from promptsvc.adapters import clients
from promptsvc.adapters.key_table import DynamoKeyRepository
from promptsvc.domain.keys import Role
from promptsvc.services.keys import KeyService
from promptsvc.settings import get_settings
from promptsvc_dev.dev import aws_environment
from promptsvc_dev.template import LocalStack, create_resources, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
BUILD_DIR = ROOT / ".aws-sam" / "build"
EVENTS = ROOT / "events"
HARNESS = Path(__file__).with_name("harness.py")
REGION = "us-east-1"
# CI sets this (scripts/test runs `sam build` first): a missing build then fails instead of skipping.
REQUIRE_BUILD = os.environ.get("PROMPTSVC_REQUIRE_SAM_BUILD") == "1"
# The smoke stack: the Lambda consumer answers with the mock engine.
PARAMETERS = {"InferenceBackend": "mock"}
SMOKE_KEY = "smoke-test-key"
SMOKE_USER = "alice"


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def python312() -> str | None:
    """A Python 3.12 (the functions' runtime): $PROMPTSVC_PYTHON312, python3.12 on PATH, or pyenv's."""
    if os.environ.get("PROMPTSVC_PYTHON312"):
        return os.environ["PROMPTSVC_PYTHON312"]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(
        glob.glob(f"{pyenv_root}/versions/3.12.*/bin/python3.12"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).parents[1].name)],
    )
    if found:
        return found[-1]
    return shutil.which("python3.12")


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _unavailable(reason: str) -> None:
    if REQUIRE_BUILD:
        pytest.fail(f"{reason} (PROMPTSVC_REQUIRE_SAM_BUILD=1: the build is required)")
    pytest.skip(reason)


@dataclass
class Target:
    """Where a function's code, its layers and its interpreter are."""

    name: str
    template_path: Path
    python: list[str]
    code_root: Path  # CodeUri/ContentUri are relative to this

    @property
    def template(self) -> dict[str, Any]:
        return load_template(self.template_path)

    def sys_path(self, function: str) -> list[str]:
        resources = self.template["Resources"]
        props = resources[function]["Properties"]
        glob_props = self.template.get("Globals", {}).get("Function", {})
        paths = [str(self.code_root / props["CodeUri"])]
        for layer in props.get("Layers", glob_props.get("Layers", [])):
            content = resources[layer["Ref"]]["Properties"]["ContentUri"]
            # Lambda mounts a layer at /opt; Python layers put their packages in python/.
            base = self.code_root / content
            paths.append(str(base / "python" if self.name == "built" else base))
        return paths


def source_target() -> Target:
    return Target("source", TEMPLATE, [sys.executable, "-I"], ROOT)


def built_target() -> Target:
    """The `sam build` output; skips (or, when required, fails) if there is none or it is stale."""
    built_template = BUILD_DIR / "template.yaml"
    if not built_template.is_file():
        _unavailable(f"no SAM build in {BUILD_DIR}: run scripts/test, or scripts/sam-build")
    python = python312()
    if python is None:
        _unavailable("no Python 3.12 (the functions' runtime): install one or set PROMPTSVC_PYTHON312")
    # -B: no __pycache__ written, as in Lambda, where the code and layers are read-only.
    target = Target("built", built_template, [str(python), "-I", "-S", "-B"], BUILD_DIR)
    source = load_template(TEMPLATE)["Resources"]
    for logical, resource in target.template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            built = BUILD_DIR / resource["Properties"]["CodeUri"]
            if _digest(built) != _digest(ROOT / source[logical]["Properties"]["CodeUri"]):
                _unavailable(f"the SAM build of {logical} is older than its source: build again")
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            built = BUILD_DIR / resource["Properties"]["ContentUri"] / "python" / "promptsvc"
            if _digest(built) != _digest(ROOT / "layers" / "promptsvc" / "promptsvc"):
                _unavailable(f"the SAM build of {logical} is older than its source: build again")
    return target


# ---------------------------------------------------------------------------------------------
# What the functions talk to: moto, and a stand-in for API Gateway's @connections API


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


class ConnectionsSink:
    """Accepts `POST /@connections/{id}` (what PostToConnection sends) and keeps the frames."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                connection = self.path.rsplit("/", 1)[-1]
                sink.frames.append((urllib.request.unquote(connection), json.loads(body)))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, connection_id: str) -> list[dict[str, Any]]:
        return [frame for connection, frame in self.frames if connection == connection_id]


@pytest.fixture(scope="session")
def connections_sink() -> Iterator[ConnectionsSink]:
    sink = ConnectionsSink()
    yield sink
    sink.server.shutdown()


# ---------------------------------------------------------------------------------------------
# A stack: the template's resources in a fresh moto, and a way to invoke its functions


@dataclass
class Outcome:
    function: str
    responses: list[Any]
    settings_read: list[str]
    aws_calls: list[dict[str, Any]]
    modules: dict[str, str]
    stdlib: list[str]
    handler_callable: bool | None
    error: str | None
    compiled: list[str] = field(default_factory=list)  # modules compiled from source, not bytecode
    stderr: str = ""
    stdout: str = ""  # what Lambda sends to CloudWatch Logs: log lines and EMF metric documents

    def __repr__(self) -> str:
        return f"Outcome({self.function}, error={self.error is not None})"

    def check(self) -> "Outcome":
        assert self.error is None, f"{self.function} failed:\n{self.error}\n{self.stderr[-3000:]}"
        return self


@dataclass
class Stack:
    target: Target
    local: LocalStack
    endpoint: str
    sink: ConnectionsSink
    tmp: Path
    outcomes: list[Outcome] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Stack({self.target.name}, {[o.function for o in self.outcomes]})"

    def functions(self) -> list[str]:
        return self.local.functions()

    def environment(self, function: str) -> dict[str, str]:
        """What the function's process gets: its template environment and the runtime's own."""
        env = self.local.function_environment(function)
        if "WEBSOCKET_ENDPOINT" in env:
            env["WEBSOCKET_ENDPOINT"] = self.sink.url  # the stand-in @connections API
        env.update(aws_environment(self.endpoint))
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": function,
                "LAMBDA_TASK_ROOT": self.target.sys_path(function)[0],
                "TZ": "UTC",
                "LANG": "C.UTF-8",
                "PATH": "/usr/bin:/bin",
                "POWERTOOLS_METRICS_DISABLED": "false",  # EMF goes to stdout, as in Lambda
            }
        )
        return env

    def invoke(self, function: str, *events: dict[str, Any]) -> Outcome:
        resource = self.target.template["Resources"][function]["Properties"]
        glob_props = self.target.template.get("Globals", {}).get("Function", {})
        spec_path = self.tmp / f"{function}-{len(self.outcomes)}.json"
        result_path = spec_path.with_suffix(".out.json")
        tracing = resource.get("Tracing", glob_props.get("Tracing"))
        spec = {
            "sys_path": self.target.sys_path(function),
            "handler": resource["Handler"],
            "function_name": function,
            "timeout": resource.get("Timeout", 30),
            "events": list(events),
            "result": str(result_path),
            "also_import": ["aws_xray_sdk"] if tracing == "Active" else [],
        }
        spec_path.write_text(json.dumps(spec))
        process = subprocess.run(
            [*self.target.python, str(HARNESS), str(spec_path)],
            env=self.environment(function),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.tmp,
        )
        if not result_path.is_file():
            raise AssertionError(f"{function}: the harness wrote no result\n{process.stderr[-5000:]}")
        data = json.loads(result_path.read_text())
        outcome = Outcome(
            function=function,
            responses=data["responses"],
            settings_read=data["settingsRead"],
            aws_calls=data["awsCalls"],
            modules=data["modules"],
            stdlib=data["stdlib"],
            handler_callable=data.get("handlerCallable"),
            error=data.get("error"),
            compiled=data.get("compiled", []),
            stderr=process.stderr,
            stdout=process.stdout,
        )
        self.outcomes.append(outcome)
        return outcome

    def create_key(self, key: str = SMOKE_KEY, user: str = SMOKE_USER, role: Role = Role.USER) -> str:
        KeyService(DynamoKeyRepository(self.local.refs["ApiKeysTable"])).bootstrap(key, user, role)
        return key


def _reset_moto(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()


def make_stack(
    target: Target, endpoint: str, sink: ConnectionsSink, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    _reset_moto(endpoint)
    sink.frames.clear()
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)
    for name, value in aws_environment(endpoint).items():
        monkeypatch.setenv(name, value)
    clients.reset()
    get_settings.cache_clear()
    local = create_resources(target.template_path, REGION, PARAMETERS)
    return Stack(target, local, endpoint, sink, tmp)


@pytest.fixture
def source_stack(
    moto_endpoint: str, connections_sink: ConnectionsSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    yield make_stack(source_target(), moto_endpoint, connections_sink, tmp_path, monkeypatch)
    clients.reset()
    get_settings.cache_clear()


@pytest.fixture
def built_stack(
    moto_endpoint: str, connections_sink: ConnectionsSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    yield make_stack(built_target(), moto_endpoint, connections_sink, tmp_path, monkeypatch)
    clients.reset()
    get_settings.cache_clear()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The built layer's size, unzipped (Lambda allows 250 MB for a function and its layers)."""
    layer = BUILD_DIR / "PromptsvcLayer"
    if not layer.is_dir():
        return
    total = sum(path.stat().st_size for path in layer.rglob("*") if path.is_file())
    ours = layer / "python" / "promptsvc"
    package = sum(path.stat().st_size for path in ours.rglob("*") if path.is_file())
    terminalreporter.write_line(
        f"built layer (.aws-sam/build/PromptsvcLayer): {total / 1e6:.1f} MB unzipped, "
        f"of which the promptsvc package {package / 1e3:.0f} KB"
    )
