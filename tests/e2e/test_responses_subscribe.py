"""The responses subscription (Server-Sent Events) over a real socket, read by a plain SSE reader
(httpx, line by line) from `promptsvc dev`: events stream live, carry `id:` lines, resume with
Last-Event-ID with no repeat and no gap, end at the bound, and keep tenants apart."""

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevServer, call, dev_server

pytestmark = pytest.mark.e2e

CHUNK_DELAY = 0.6  # the mock engine's: its 4 chunks take 2.4 s, so a live stream shows them coming
BOUND = 3.0  # SUBSCRIBE_WAIT_SECONDS of this server


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:  # the `users` fixture's server too
    with dev_server(mock_chunk_delay=CHUNK_DELAY, env={"SUBSCRIBE_WAIT_SECONDS": str(BOUND)}) as started:
        yield started


class Subscription:
    """A plain SSE reader: `(id, data)` per event, as the lines arrive."""

    def __init__(self, server: DevServer, key: str, thread: str, **params: Any) -> None:
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        if "last_event_id" in params:
            headers["Last-Event-ID"] = str(params.pop("last_event_id"))
        self._client = httpx.Client(timeout=30)
        url = f"{server.base_url}/prompt-svc/prompts/{thread}/responses/subscribe"
        self._context = self._client.stream("GET", url, params=params, headers=headers)
        self.response = self._context.__enter__()  # the headers are in: the subscription is open
        self._lines = self.response.iter_lines()

    def events(self) -> Iterator[tuple[int, dict[str, Any]]]:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                yield int(fields["id"]), json.loads(fields["data"])
                fields = {}

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self._client.close()


def read_all(server: DevServer, key: str, thread: str, **params: Any) -> list[tuple[int, dict[str, Any]]]:
    subscription = Subscription(server, key, thread, **params)
    try:
        assert subscription.response.status_code == 200
        assert subscription.response.headers["content-type"].startswith("text/event-stream")
        return list(subscription.events())
    finally:
        subscription.close()


def add(server: DevServer, key: str, thread: str, prompt: str) -> str:
    response = call(server, key, "POST", "/prompt-svc/prompt", {"prompt": prompt, "threadId": thread})
    assert response.status_code == 200, response.text
    return str(response.json()["prompt"]["id"])


def status(server: DevServer, key: str, prompt_id: str) -> str:
    return str(call(server, key, "GET", f"/prompt-svc/prompt/{prompt_id}").json()["prompt"]["status"])


def test_chunks_stream_live_with_ids_and_a_resumed_subscription_goes_on_with_no_repeat_and_no_gap(
    server: DevServer, users: dict[str, str]
) -> None:
    alice = users["alice"]
    subscription = Subscription(server, alice, "live")  # the thread does not exist yet
    prompt_id = add(server, alice, "live", "Tell me everything about bananas, slowly.")
    events = subscription.events()
    first = next(events)
    status_then = status(server, alice, prompt_id)
    subscription.close()  # the connection drops after the first chunk

    assert first[1]["type"] == "progress" and first[1]["messageId"] == prompt_id and first[1]["text"]
    assert status_then == "running"  # the first chunk came while the answer was being generated
    rest = read_all(server, alice, "live", last_event_id=first[0])  # as an EventSource reconnects
    assert rest[-1][1] == {"messageId": prompt_id, "text": "", "type": "done", "status": "completed"}
    resumed = [first, *rest]
    ids = [seq for seq, _ in resumed]
    assert ids == sorted(set(ids))  # no repeat
    assert resumed == read_all(server, alice, "live", after=0)  # no gap: the whole thread's chunks
    answer = call(server, alice, "GET", f"/prompt-svc/prompt/{prompt_id}").json()["answer"]
    assert "".join(data["text"] for _, data in resumed) == answer


def test_a_thread_with_no_prompt_ends_empty_at_the_bound(server: DevServer, users: dict[str, str]) -> None:
    started = time.monotonic()
    assert read_all(server, users["alice"], "quiet") == []
    assert time.monotonic() - started >= BOUND  # it waited out the bound (a hang fails on the read timeout)


def test_another_users_thread_of_the_same_name_is_invisible(server: DevServer, users: dict[str, str]) -> None:
    alice, bob = users["alice"], users["bob"]
    bobs: list[list[tuple[int, dict[str, Any]]]] = []
    watching = Subscription(server, bob, "same-name")  # bob follows his thread of that name, live
    reader = threading.Thread(target=lambda: bobs.append(list(watching.events())))
    reader.start()
    prompt_id = add(server, alice, "same-name", "Alice's own question.")
    alices = read_all(server, alice, "same-name", after=0)
    reader.join(timeout=BOUND + 10)
    watching.close()

    assert alices[-1][1]["type"] == "done" and alices[-1][1]["messageId"] == prompt_id
    assert bobs == [[]]  # nothing of alice's, live
    assert read_all(server, bob, "same-name", after=0) == []  # nor stored
    assert read_all(server, bob, "same-name", after=0, userId="alice") == []  # nor by naming her


@pytest.mark.parametrize(
    ("thread", "headers", "params"),
    [
        ("t" * 129, {}, {}),  # over the 128 characters names may have
        ("spaced out", {}, {}),
        ("ok", {"Last-Event-ID": "seven"}, {}),
        ("ok", {"Last-Event-ID": "9" * 19}, {}),  # past 2^63 - 1
        ("ok", {}, {"after": "-1"}),
    ],
)
def test_bad_input_is_a_quick_400_json_error(
    server: DevServer, users: dict[str, str], thread: str, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = httpx.get(
        f"{server.base_url}/prompt-svc/prompts/{thread}/responses/subscribe",
        params=params,
        headers={"Authorization": f"Bearer {users['alice']}", **headers},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json" and response.json()["error"]
