"""The local stack as a subprocess: `promptsvc dev` on free ports, one per test module."""

import queue
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from promptsvc_dev.dev_process import DevNotReady, start_dev

from tests.conftest import ROOT

ADMIN_KEY = "e2e-admin-key"
STARTUP_LIMIT = 60  # generous: the machine is shared; the README's < 10 s is measured, not asserted


@dataclass
class DevServer:
    process: subprocess.Popen[str]
    base_url: str
    output: "queue.Queue[str]"
    ws_url: str = ""  # the WebSocket API: connect to ws_url + "?token=KEY"


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server() as started:
        yield started


@contextmanager
def dev_server(
    mock_chunk_delay: float = 0.05, env: dict[str, str] | None = None, *flags: str
) -> Iterator[DevServer]:
    """`promptsvc dev` on free ports until the block ends (`env`: more environment for it;
    `flags`: more of its flags)."""
    try:
        dev = start_dev(
            *flags, "--mock-chunk-delay", str(mock_chunk_delay), api_key=ADMIN_KEY, env=env, cwd=ROOT,
            startup_seconds=STARTUP_LIMIT,
        )  # fmt: skip
    except DevNotReady as error:
        pytest.fail(str(error))
    try:
        yield DevServer(dev.process, dev.base_url, dev.output, dev.ws_url)
    finally:
        dev.stop()


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
