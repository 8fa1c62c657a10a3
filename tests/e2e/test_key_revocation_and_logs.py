"""End to end, over real sockets against `promptsvc dev`: a revoked key stops its open WebSocket
connections, and no key secret (nor its hash) reaches any output of the process.

The server runs with `KEY_CACHE_SECONDS=0` (every function looks a key up each time: the cache
bound already passed, without sleeping), Powertools at DEBUG, and uvicorn's access log on (through
a launcher that sets it on uvicorn's `Config`, since `promptsvc dev` logs warnings only).
"""

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from promptsvc.domain.keys import hash_secret, parse_key
from promptsvc.services.subscriptions import REVOKED
from promptsvc_dev.dev import free_port
from promptsvc_dev.dev_process import child_environment
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_KEY, STARTUP_LIMIT, DevServer, call

pytestmark = pytest.mark.e2e

WAIT = 20.0
READY = "promptsvc dev is ready"
LAUNCHER = """
import runpy, sys, uvicorn
_init = uvicorn.Config.__init__
def _with_access_log(self, *args, **kwargs):
    kwargs.update(log_level="info", access_log=True)
    _init(self, *args, **kwargs)
uvicorn.Config.__init__ = _with_access_log
sys.argv = ["promptsvc", *sys.argv[1:]]
runpy.run_module("promptsvc_dev.cli", run_name="__main__")
"""
_readers: dict[str, threading.Thread] = {}  # the thread reading each server's output, by base URL


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    port, ws_port = free_port(), free_port()
    env = child_environment({"KEY_CACHE_SECONDS": "0", "POWERTOOLS_LOG_LEVEL": "DEBUG"})
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "dev", "--port", str(port), "--ws-port", str(ws_port),
         "--api-key", ADMIN_KEY, "--mock-chunk-delay", "0.02"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    _readers[f"http://127.0.0.1:{port}"] = reader
    seen: list[str] = []
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline and process.poll() is None and not any(READY in s for s in seen):
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
    if not any(READY in s for s in seen):
        process.kill()
        pytest.fail("promptsvc dev did not become ready:\n" + "".join(seen))
    try:
        yield DevServer(process, f"http://127.0.0.1:{port}", lines, f"ws://127.0.0.1:{ws_port}/")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def new_key(server: DevServer, user: str) -> dict[str, str]:
    response = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": user})
    assert response.status_code == 201, response.text
    return response.json()


def open_socket(server: DevServer, key: str) -> ClientConnection:
    return connect(server.ws_url + f"?token={key}", open_timeout=WAIT, close_timeout=5)


def frame(socket: ClientConnection) -> dict[str, Any]:
    return json.loads(socket.recv(timeout=WAIT))


def closed_without_frames(socket: ClientConnection) -> list[dict[str, Any]]:
    """The frames that came before the server closed the socket (it must close within WAIT)."""
    received = []
    try:
        while True:
            received.append(json.loads(socket.recv(timeout=WAIT)))
    except ConnectionClosed:
        return received


def revoke(server: DevServer, made: dict[str, str]) -> None:
    response = call(server, made["key"], "DELETE", f"/prompt-svc/keys/{made['keyId']}")
    assert response.status_code == 200, response.text


def test_a_revoked_key_stops_its_open_connections_and_no_key_is_ever_logged(server: DevServer) -> None:
    first, second = new_key(server, "rita"), new_key(server, "rita")
    wrong = f"psk_{first['keyId']}_{'x' * 43}"
    added = call(
        server, first["key"], "POST", "/prompt-svc/prompt", {"prompt": "hi", "threadId": "rt", "sync": True}
    )
    assert added.status_code == 200, added.text
    for header in (f"Token {first['key']}", f"Bearer {first['key']}x", f"Bearer {wrong}"):
        response = httpx.post(
            server.base_url + "/prompt-svc/prompts", json={}, headers={"Authorization": header}
        )
        assert response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, wrong)
    assert refused.value.response.status_code == 401

    with open_socket(server, first["key"]) as acting, open_socket(server, first["key"]) as following:
        acting.send(json.dumps({"action": "ping"}))
        assert frame(acting) == {"type": "pong"}
        following.send(json.dumps({"action": "subscribe", "threadId": "live"}))
        assert frame(following) == {"type": "subscribed", "threadId": "live", "after": 0}

        revoke(server, first)
        acting.send(json.dumps({"action": "subscribe", "threadId": "rt", "after": 0}))
        refused_frames = closed_without_frames(acting)
        # an event on the followed thread, by the same user's other key
        live = call(server, second["key"], "POST", "/prompt-svc/prompt", {"prompt": "x", "threadId": "live"})
        assert live.status_code == 200, live.text
        followed = closed_without_frames(following)

    assert refused_frames == [{"type": "error", "action": "subscribe", "error": REVOKED}]
    assert followed == []  # closed before any event of the new prompt reached it
    assert call(server, first["key"], "GET", "/prompt-svc/models").status_code == 401
    with pytest.raises(InvalidStatus) as revoked:
        open_socket(server, first["key"])
    assert revoked.value.response.status_code == 401

    server.process.terminate()
    server.process.wait(30)
    _readers[server.base_url].join(10)  # every line the process wrote is in the queue
    output = list(server.output.queue)
    assert any('"POST /prompt-svc/prompt HTTP/1.1" 200' in line for line in output)  # the access log is on
    assert any("connect refused" in line for line in output)  # and Powertools' JSON logs
    # the ready banner shows the operator's own bootstrap key once, on purpose: any other line is a log
    banner = [line for line in output if line.split() == ["admin", "key", ADMIN_KEY]]
    assert len(banner) == 1
    # and in the export line it prints for the SDK and the CLI (issue 12), once
    exports = [line for line in output if line.strip() == f"export PROMPTSVC_API_KEY={ADMIN_KEY}"]
    assert len(exports) == 1
    after_banner = [line for line in output if line not in banner + exports]
    secrets = [ADMIN_KEY]
    for key in (first["key"], second["key"], wrong):
        secret = parse_key(key).secret
        secrets += [key, secret, hash_secret(secret)]
    leaked = [(secret, line[:200]) for secret in secrets for line in after_banner if secret in line]
    assert leaked == []
