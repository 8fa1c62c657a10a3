"""The local stack as a subprocess: `promptsvc dev` on free ports, one per test module."""

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from promptsvc.local.dev import free_port

from tests.conftest import ROOT

ADMIN_KEY = "e2e-admin-key"
STARTUP_LIMIT = 60  # generous: the machine is shared; the README's < 10 s is measured, not asserted


@dataclass
class DevServer:
    process: subprocess.Popen[str]
    base_url: str
    output: "queue.Queue[str]"
    ws_url: str = ""  # the WebSocket API: connect to ws_url + "?token=KEY"


def _child_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROMPTSVC_", "POWERTOOLS_"))}
    env.pop("ENGINE", None)
    return env


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server() as started:
        yield started


@contextmanager
def dev_server(mock_chunk_delay: float = 0.05, env: dict[str, str] | None = None) -> Iterator[DevServer]:
    """`promptsvc dev` on free ports until the block ends (`env`: more environment for it)."""
    port, ws_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "promptsvc.cli", "dev", "--port", str(port), "--ws-port", str(ws_port),
         "--api-key", ADMIN_KEY, "--mock-chunk-delay", str(mock_chunk_delay)],
        cwd=ROOT, env={**_child_environment(), **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen = []
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if "promptsvc dev is ready" in line:
            break
    else:
        process.kill()
        pytest.fail("promptsvc dev did not become ready:\n" + "".join(seen))
    if process.poll() is not None:
        pytest.fail("promptsvc dev exited:\n" + "".join(seen))
    try:
        yield DevServer(process, f"http://127.0.0.1:{port}", lines, f"ws://127.0.0.1:{ws_port}/")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def call(server: DevServer, key: str, method: str, path: str, body: object = None) -> httpx.Response:
    return httpx.request(
        method, server.base_url + path, headers={"Authorization": f"Bearer {key}"}, json=body, timeout=40
    )


@pytest.fixture(scope="module")
def users(server: DevServer) -> dict[str, str]:
    keys = {}
    for user in ("alice", "bob"):
        response = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": user})
        assert response.status_code == 201, response.text
        keys[user] = response.json()["key"]
    return keys
