"""A hundred prompts on one thread, against `promptsvc dev` as a subprocess (issue: events were
lost under contention and a cancel that hit it answered 500 with no `canceled` event).

Every event must be stored exactly once with gapless seqs, a WebSocket subscriber must receive
all of them in order, a cancel made in the middle must answer at once and be in the events, and
each completed prompt's deltas must replay to its stored answer. Waits are bounded; nothing
asserts timing.
"""

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import DevServer, call, dev_server

pytestmark = pytest.mark.e2e

PROMPTS = 100
THREAD = "busy-thread"
DRAIN_LIMIT = 300.0  # seconds: generous, the machine is shared


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(mock_chunk_delay=0.5) as started:
        yield started


def all_events(server: DevServer, key: str, thread_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = call(server, key, "GET", f"/prompt-svc/thread/{thread_id}/events?after={after}&limit=1000")
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["events"]
        if body["after"] == after:
            return events
        after = body["after"]


def replayed_answer(events: list[dict[str, Any]], prompt_id: str) -> str:
    text: list[str] = []
    for event in events:
        if event["promptId"] != prompt_id:
            continue
        if event["type"] == "reset":
            text = []
        elif event["type"] == "delta":
            text.append(event["text"])
    return "".join(text)


def test_a_hundred_prompts_on_one_thread_lose_no_event(server: DevServer, users: dict[str, str]) -> None:
    key = users["alice"]
    with connect(server.ws_url + f"?token={key}", open_timeout=30, close_timeout=5) as socket:
        socket.send(json.dumps({"action": "subscribe", "threadId": THREAD, "after": 0}))
        assert json.loads(socket.recv(timeout=30))["type"] == "subscribed"
        # Read frames as they come (a client that stops reading stops answering pings, too).
        streamed: list[dict[str, Any]] = []
        reader = threading.Thread(target=collect, args=(socket, streamed), daemon=True)
        reader.start()

        def add(i: int) -> str:
            body = {"prompt": f"prompt number {i} on a busy thread", "threadId": THREAD, "id": f"busy-{i}"}
            response = call(server, key, "POST", "/prompt-svc/prompt", body)
            assert response.status_code == 200, response.text
            return response.json()["prompt"]["id"]

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(add, range(PROMPTS)))
        # A cancel in the thick of it answers at once (200 or, if it already finished, 409).
        canceled = call(server, key, "POST", f"/prompt-svc/prompt/{ids[-1]}/cancel")
        assert canceled.status_code in (200, 409), canceled.text

        prompts = wait_all_terminal(server, key, ids)
        events = all_events(server, key, THREAD)
        deadline = time.monotonic() + 120
        while len(streamed) < len(events) and time.monotonic() < deadline and reader.is_alive():
            time.sleep(0.5)

    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["seq"] for e in streamed] == [e["seq"] for e in events]  # each once, in order
    for prompt_id, prompt in prompts.items():
        statuses = [e["status"] for e in events if e["promptId"] == prompt_id and e["type"] == "status"]
        assert statuses[-1] == prompt["status"], (prompt_id, statuses)
        if prompt["status"] == "completed":
            assert statuses[:2] == ["scheduled", "running"]
            answer = call(server, key, "GET", f"/prompt-svc/prompt/{prompt_id}").json()["answer"]
            assert replayed_answer(events, prompt_id) == answer
    if canceled.status_code == 200:
        assert prompts[ids[-1]]["status"] == "canceled"


def wait_all_terminal(server: DevServer, key: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + DRAIN_LIMIT
    done: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for prompt_id in [i for i in ids if i not in done]:
            prompt = call(server, key, "GET", f"/prompt-svc/prompt/{prompt_id}").json()["prompt"]
            if prompt["status"] in ("completed", "canceled", "abandoned"):
                done[prompt_id] = prompt
        if len(done) == len(ids):
            return done
        time.sleep(1)
    raise AssertionError(f"{len(ids) - len(done)} prompts not terminal after {DRAIN_LIMIT} s")


def collect(socket: Any, into: list[dict[str, Any]]) -> None:
    """Every event frame until the socket closes."""
    try:
        while True:
            frame = json.loads(socket.recv())
            if "seq" in frame:
                into.append(frame)
    except Exception:  # closed at the end of the test
        return
