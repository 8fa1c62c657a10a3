"""End to end: thread streams over a real WebSocket against `promptsvc dev` as a subprocess.

A prompt added over HTTP runs in the consumer, its events go to the events table, its stream to
the stream function, and the stream function posts them to the local WebSocket API's
`@connections`, which sends them to the client. Every wait is bounded; nothing asserts timing.
"""

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.conftest import DevServer, call, dev_server

pytestmark = pytest.mark.e2e

WAIT = 20.0  # for any one frame: generous, the machine is shared
CHUNKS = 60  # with 0.05 s a chunk, a run streams for about 3 s: time to cancel it mid-stream
PROMPT = "Tell me everything about bananas, their history, their botany and their trade. " * 4


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(mock_chunk_delay=0.05, env={"MOCK_CHUNKS": str(CHUNKS)}) as started:
        yield started


def open_socket(server: DevServer, key: str) -> ClientConnection:
    return connect(server.ws_url + f"?token={key}", open_timeout=WAIT, close_timeout=5)


def frames(socket: ClientConnection, until: Callable[[dict[str, Any]], bool], limit: int = 500) -> list[dict]:
    """Frames until (and with) the first one `until` accepts."""
    received = []
    for _ in range(limit):
        frame = json.loads(socket.recv(timeout=WAIT))
        received.append(frame)
        if until(frame):
            return received
    raise AssertionError(f"no closing frame in {limit}: {received[-3:]}")


def is_status(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("type") == "status" and frame.get("status") in statuses


def nothing_more(socket: ClientConnection) -> None:
    """The next frame answers a ping: nothing was queued before it (frames of a connection keep
    their order, and the gateway handles a connection's messages one after the other)."""
    socket.send(json.dumps({"action": "ping"}))
    assert json.loads(socket.recv(timeout=WAIT)) == {"type": "pong"}


def subscribe(socket: ClientConnection, thread_id: str, after: int | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"action": "subscribe", "threadId": thread_id}
    if after is not None:
        request["after"] = after
    socket.send(json.dumps(request))
    return json.loads(socket.recv(timeout=WAIT))


def add(server: DevServer, key: str, thread_id: str) -> str:
    response = call(server, key, "POST", "/prompt-svc/prompt", {"prompt": PROMPT, "threadId": thread_id})
    assert response.status_code in (200, 201, 202), response.text
    return response.json()["prompt"]["id"]


def assert_in_seq_order(events: list[dict[str, Any]], first: int) -> None:
    assert [e["seq"] for e in events] == list(range(first, first + len(events)))


def test_a_subscriber_sees_the_run_in_order(server: DevServer, users: dict[str, str]) -> None:
    with open_socket(server, users["alice"]) as socket:
        assert subscribe(socket, "streams-run") == {
            "type": "subscribed",
            "threadId": "streams-run",
            "after": 0,
        }
        prompt_id = add(server, users["alice"], "streams-run")
        events = frames(socket, is_status("completed", "abandoned", "canceled"))
        nothing_more(socket)

    assert_in_seq_order(events, 1)
    assert {e["promptId"] for e in events} == {prompt_id}
    assert [e["status"] for e in events if e["type"] == "status"] == ["scheduled", "running", "completed"]
    deltas = [e for e in events if e["type"] == "delta"]
    assert events[0]["status"] == "scheduled" and events[1]["status"] == "running"
    assert events[-1]["status"] == "completed" and deltas == events[2:-1]
    stored = call(server, users["alice"], "GET", f"/prompt-svc/prompt/{prompt_id}").json()
    assert "".join(d["text"] for d in deltas) == stored["answer"]
    assert stored["answer"]


def test_a_reconnect_gets_exactly_the_missed_events(server: DevServer, users: dict[str, str]) -> None:
    with open_socket(server, users["alice"]) as socket:
        subscribe(socket, "streams-replay")
        add(server, users["alice"], "streams-replay")
        seen = frames(socket, is_status("completed"))
    missed_after = 2  # the client saw scheduled and running, then lost its connection

    with open_socket(server, users["alice"]) as socket:
        answer = subscribe(socket, "streams-replay", after=missed_after)
        assert answer == {"type": "subscribed", "threadId": "streams-replay", "after": missed_after}
        replayed = frames(socket, is_status("completed"))
        nothing_more(socket)

    assert replayed == seen[missed_after:]


def test_another_user_with_the_same_thread_id_sees_nothing_of_it(
    server: DevServer, users: dict[str, str]
) -> None:
    """Thread ids are per user: bob subscribing to "streams-private" follows his own thread of that
    name, from seq 0, and alice's events never reach him; he cannot name her thread either."""
    with open_socket(server, users["alice"]) as alice:
        subscribe(alice, "streams-private")
        add(server, users["alice"], "streams-private")
        frames(alice, is_status("completed"))

        with open_socket(server, users["bob"]) as bob:
            own = subscribe(bob, "streams-private", after=0)
            assert own == {"type": "subscribed", "threadId": "streams-private", "after": 0}
            bob.send(json.dumps({"action": "subscribe", "threadId": "streams-private", "userId": "alice"}))
            refused = json.loads(bob.recv(timeout=WAIT))
            assert refused["type"] == "error" and refused["action"] == "subscribe"
            add(server, users["alice"], "streams-private")  # more events in her thread: none for bob
            frames(alice, is_status("completed"))
            nothing_more(bob)


def test_an_unknown_key_cannot_connect(server: DevServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, "not-a-key")
    assert refused.value.response.status_code == 401


def test_a_cancel_mid_stream_ends_with_canceled(server: DevServer, users: dict[str, str]) -> None:
    with open_socket(server, users["alice"]) as socket:
        subscribe(socket, "streams-cancel")
        prompt_id = add(server, users["alice"], "streams-cancel")
        started = frames(socket, lambda frame: frame.get("type") == "delta")
        canceled = call(server, users["alice"], "POST", f"/prompt-svc/prompt/{prompt_id}/cancel")
        assert canceled.status_code == 200, canceled.text
        rest = frames(socket, is_status("completed", "canceled", "abandoned"))
        nothing_more(socket)

    events = started + rest
    assert_in_seq_order(events, 1)
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "canceled"]
