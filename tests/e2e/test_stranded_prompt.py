"""An accepted prompt is never stranded, even when the API process dies between storing it and
queueing it: the sweeper sends its message, and it runs once.

Two processes share one moto: `promptsvc dev` (its sweeper every 2 s and a 2 s grace, through the
chaos profile's `sweep` knob, and no fault on), and an API process (tests/e2e/crashing_api.py)
killed right after its PutItem."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from promptsvc_dev.dev import free_port

from tests.e2e.conftest import ADMIN_KEY, call, dev_server

CRASHING_API = Path(__file__).with_name("crashing_api.py")


def wait_listening(port: int, process: subprocess.Popen[bytes], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, "the crashing API did not start"
        try:
            httpx.get(f"http://127.0.0.1:{port}/prompt-svc/models", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the crashing API never listened")


def test_a_prompt_whose_api_process_died_before_queueing_it_runs_once(tmp_path: Path) -> None:
    state = tmp_path / "dev.json"
    env = {"PROMPTSVC_CHAOS": "sweep=2", "PROMPTSVC_DEV_STATE": str(state)}
    with dev_server(env=env) as server:
        port = free_port()
        command = [sys.executable, str(CRASHING_API), str(state), str(port)]
        crashing = subprocess.Popen(command, env=os.environ)
        try:
            wait_listening(port, crashing)
            with pytest.raises(httpx.TransportError):  # the process died mid-request
                httpx.post(
                    f"http://127.0.0.1:{port}/prompt-svc/prompt",
                    json={"id": "survivor", "prompt": "outlive your API", "threadId": "crash"},
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                    timeout=30,
                )
            assert crashing.wait(10) == -9
        finally:
            crashing.kill()
        stored = call(server, ADMIN_KEY, "GET", "/prompt-svc/prompt/survivor")
        assert stored.status_code == 200 and stored.json()["prompt"]["status"] == "scheduled"

        deadline = time.monotonic() + 90
        body = stored.json()
        while body["prompt"]["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.5)
            body = call(server, ADMIN_KEY, "GET", "/prompt-svc/prompt/survivor").json()
        events = call(server, ADMIN_KEY, "GET", "/prompt-svc/thread/crash/events").json()["events"]

    assert body["prompt"]["status"] == "completed", body
    assert body["prompt"]["runCount"] == 1 and body["answer"]
    statuses = [e.get("status") for e in events if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "completed"]
