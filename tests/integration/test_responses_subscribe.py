"""The seed client's last two calls on moto: POST /prompt-svc/types and the responses subscription
(GET /prompt-svc/prompts/{threadId}/responses/subscribe, Server-Sent Events). Live streaming over
a real socket is tests/e2e/test_responses_subscribe.py's."""

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.api.app import create_app
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.thread_events import MAX_SEQ, EventType, ThreadEvent
from promptsvc.settings import Settings, get_settings
from promptsvc_dev.functions import LambdaContext, load_handler_module
from promptsvc_dev.sqs_source import SqsEventSource

from tests.conftest import ROOT, auth
from tests.integration.helpers import add
from tests.integration.test_thread_events import streaming

BOUND = 0.5  # SUBSCRIBE_WAIT_SECONDS here: a subscription that sees no done ends after it


@pytest.fixture
def sse(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    bounded = settings.model_copy(update={"subscribe_wait_seconds": BOUND})
    with TestClient(create_app(bounded), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def patient(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    """The app with a long bound: an answer well before it did not wait for it."""
    bounded = settings.model_copy(update={"subscribe_wait_seconds": 10.0})
    with TestClient(create_app(bounded), raise_server_exceptions=False) as test_client:
        yield test_client


def subscribe(client: TestClient, key: str, thread: str, **params: Any) -> Any:
    headers = auth(key)
    if "last_event_id" in params:
        headers["Last-Event-ID"] = str(params.pop("last_event_id"))
    return client.get(f"/prompt-svc/prompts/{thread}/responses/subscribe", params=params, headers=headers)


def parse(body: str) -> list[tuple[int, dict[str, Any]]]:
    """(id, data) of each event of an SSE body."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((int(fields["id"]), json.loads(fields["data"])))
    return events


def test_prompt_types_are_the_catalogs_text_to_text_and_the_chunk_types(sse: TestClient, keys: dict) -> None:
    response = sse.post("/prompt-svc/types", json={}, headers=auth(keys["alice"]))
    assert response.status_code == 200
    assert response.json() == {"promptTypes": ["Text-to-Text"], "chunkTypes": ["progress", "done"]}
    assert sse.post("/prompt-svc/types", headers=auth(keys["alice"])).status_code == 200  # no body
    refused = sse.post("/prompt-svc/types", json=[1], headers=auth(keys["alice"]))
    assert refused.status_code == 400 and "error" in refused.json()
    assert sse.post("/prompt-svc/types", json={}).status_code == 401


def test_a_completed_prompts_events_are_progress_chunks_then_done_with_the_whole_answer(
    sse: TestClient, keys: dict[str, str], load_consumer: Any
) -> None:
    consumer: SqsEventSource = load_consumer(streaming([f"w{i} " for i in range(12)], delay=0.01))
    prompt = add(sse, keys["alice"], threadId="talk")
    consumer.drain()

    response = subscribe(sse, keys["alice"], "talk", after=0)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse(response.text)
    ids = [seq for seq, _ in events]
    assert ids == sorted(set(ids))
    chunks = [data for _, data in events]
    assert [c["type"] for c in chunks[:-1]] == ["progress"] * (len(chunks) - 1)
    assert chunks[-1] == {"messageId": prompt["id"], "text": "", "type": "done", "status": "completed"}
    assert "".join(c["text"] for c in chunks[:-1]) == "".join(f"w{i} " for i in range(12))
    assert {c["messageId"] for c in chunks} == {prompt["id"]}

    # Last-Event-ID goes on right after the event it names: no repeat, no gap.
    resumed = parse(subscribe(sse, keys["alice"], "talk", last_event_id=ids[1], after=0).text)
    assert resumed == events[2:]
    assert parse(subscribe(sse, keys["alice"], "talk", after=ids[0]).text) == events[1:]


def test_without_a_cursor_a_finished_thread_waits_for_its_next_prompt_within_the_bound(
    sse: TestClient, keys: dict[str, str], consumer: SqsEventSource
) -> None:
    add(sse, keys["alice"], threadId="done-thread")
    consumer.drain()
    started = time.monotonic()
    response = subscribe(sse, keys["alice"], "done-thread")
    assert response.status_code == 200 and response.text == ""
    assert time.monotonic() - started >= BOUND  # it waited out the bound
    never = subscribe(sse, keys["alice"], "no-such-thread-yet")
    assert never.status_code == 200 and never.text == ""


def test_without_a_cursor_the_prompt_being_answered_is_shown_from_its_start(
    sse: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    log = wiring.thread_event_log(settings)
    assert log is not None

    def write(prompt_id: str, kind: EventType, **fields: str) -> None:
        log.append(ThreadEvent("running", "alice", prompt_id, kind, now_rfc3339(), **fields))

    write("old", EventType.DELTA, text="An older answer.")
    write("old", EventType.STATUS, status="completed")
    write("p", EventType.STATUS, status="running")
    write("p", EventType.DELTA, text="Half ")

    events = parse(subscribe(sse, keys["alice"], "running").text)  # p has no done yet: the bound ends it

    assert [data for _, data in events] == [{"messageId": "p", "text": "Half ", "type": "progress"}]
    write("p", EventType.DELTA, text="done.")
    write("p", EventType.STATUS, status="abandoned", error="the engine failed")
    rest = parse(subscribe(sse, keys["alice"], "running", last_event_id=events[-1][0]).text)
    assert [data for _, data in rest] == [
        {"messageId": "p", "text": "done.", "type": "progress"},
        {"messageId": "p", "text": "", "type": "done", "status": "abandoned", "error": "the engine failed"},
    ]


def test_another_users_thread_of_the_same_name_is_not_seen(
    sse: TestClient, keys: dict[str, str], consumer: SqsEventSource
) -> None:
    add(sse, keys["alice"], threadId="shared-name")
    consumer.drain()
    assert parse(subscribe(sse, keys["alice"], "shared-name", after=0).text)
    theirs = subscribe(sse, keys["bob"], "shared-name", after=0)
    assert theirs.status_code == 200 and theirs.text == ""
    named = subscribe(sse, keys["bob"], "shared-name", after=0, userId="alice")  # a user naming another
    assert named.status_code == 200 and named.text == ""
    admin = subscribe(sse, keys["admin"], "shared-name", after=0, userId="alice")
    assert parse(admin.text)[-1][1]["type"] == "done"


def test_a_canceled_prompt_ends_with_a_done_chunk_saying_so(sse: TestClient, keys: dict[str, str]) -> None:
    prompt = add(sse, keys["alice"], threadId="cancel-me")
    assert (
        sse.post(f"/prompt-svc/prompt/{prompt['id']}/cancel", headers=auth(keys["alice"])).status_code == 200
    )
    events = parse(subscribe(sse, keys["alice"], "cancel-me", after=0).text)
    assert [data for _, data in events] == [
        {"messageId": prompt["id"], "text": "", "type": "done", "status": "canceled"}
    ]


@pytest.mark.parametrize(
    ("thread", "params"),
    [
        ("t" * 129, {}),
        ("bad id", {}),
        ("ok", {"after": -1}),
        ("ok", {"after": MAX_SEQ + 1}),
        ("ok", {"after": "x"}),
        ("ok", {"last_event_id": "abc"}),
        ("ok", {"last_event_id": "9" * 19}),
        ("ok", {"last_event_id": "1" * 20}),
        ("ok", {"userId": "no#one"}),
    ],
)
def test_bad_input_is_a_quick_400_json_error(
    patient: TestClient, keys: dict[str, str], thread: str, params: dict[str, Any]
) -> None:
    response = subscribe(patient, keys["alice"], thread, **params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json" and response.json()["error"]


def test_a_subscription_needs_a_key(sse: TestClient) -> None:
    response = sse.get("/prompt-svc/prompts/t/responses/subscribe")
    assert response.status_code == 401 and response.json()["error"]


def test_in_lambda_the_http_api_gets_the_whole_stream_at_once_from_mangum(
    sse: TestClient, keys: dict[str, str], consumer: SqsEventSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed path: API Gateway's HTTP API buffers the function's answer, so the handler
    answers once the stream ends: the chunks up to `done`, or, with none, an empty 200 at the bound."""
    prompt = add(sse, keys["alice"], threadId="lambda-thread")
    consumer.drain()
    monkeypatch.setenv("SUBSCRIBE_WAIT_SECONDS", str(BOUND))
    get_settings.cache_clear()
    api = load_handler_module(ROOT, "api")
    payload = json.loads((ROOT / "events" / "api-get-prompt.json").read_text())
    payload["headers"]["authorization"] = f"Bearer {keys['alice']}"
    payload["headers"]["accept"] = "text/event-stream"

    def invoke(thread: str, query: str) -> dict[str, Any]:
        path = f"/prompt-svc/prompts/{thread}/responses/subscribe"
        event = {**payload, "rawPath": path, "rawQueryString": query}
        event["requestContext"] = {
            **payload["requestContext"],
            "http": {**payload["requestContext"]["http"], "path": path},
        }
        event["pathParameters"] = {"proxy": path.removeprefix("/prompt-svc/")}
        return api.handler(event, LambdaContext(function_name="ApiFunction"))

    answered = invoke("lambda-thread", "after=0")
    assert answered["statusCode"] == 200
    assert answered["headers"]["content-type"].startswith("text/event-stream")
    chunks = [data for _, data in parse(answered["body"])]
    assert chunks[-1] == {"messageId": prompt["id"], "text": "", "type": "done", "status": "completed"}
    started = time.monotonic()
    quiet = invoke("lambda-quiet", "")
    assert quiet["statusCode"] == 200 and quiet["body"] == ""
    assert time.monotonic() - started >= BOUND  # it waited out the bound
