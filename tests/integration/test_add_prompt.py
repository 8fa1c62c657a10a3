"""POST /prompt-svc/prompt through the ASGI app on moto."""

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters import prompt_queue, prompt_table
from promptsvc.api.app import create_app
from promptsvc.consumer.stranded import requeue_stranded
from promptsvc.settings import Settings
from promptsvc_dev.sqs_source import SqsEventSource
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.integration.helpers import queue_depth, queued_bodies, stored_prompts

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
MISTRAL = "huggingface/TheBloke/mistral-7b-instruct-v0.2.Q3_K_S.gguf"
SPEC_FIELDS = {
    "id", "prompt", "modelId", "template", "threadId", "userId", "status", "runCount",
    "maxRetries", "lastRun", "error", "sync", "createdAt", "updatedAt",
}  # fmt: skip
# Beyond the spec: the stored prompt a run came from and the model that answered (routing).
EXTENSION_FIELDS = {"promptConfigId", "promptConfigVersion", "answeredBy"}
# Usage (docs/api.md, "Usage"): 0, 0, "", false until the prompt completes.
USAGE_FIELDS = {"promptTokens", "completionTokens", "finishReason", "usageEstimated"}


def test_async_add_stores_and_enqueues_only_the_id(
    client: TestClient, local_stack: LocalStack, keys: dict[str, str]
) -> None:
    response = client.post(
        "/prompt-svc/prompt", json={"prompt": "What's a banana?"}, headers=auth(keys["alice"])
    )

    assert response.status_code == 200
    body = response.json()
    prompt = body["prompt"]
    assert set(prompt) == SPEC_FIELDS | EXTENSION_FIELDS | USAGE_FIELDS
    assert prompt["promptConfigId"] == prompt["promptConfigVersion"] == prompt["answeredBy"] == ""
    assert body["answer"] == ""
    assert "responseMessage" not in body
    assert prompt["status"] == "scheduled"
    assert prompt["userId"] == "alice"
    assert prompt["modelId"] == MISTRAL
    assert prompt["template"] == "[INST]{prompt}[/INST]"
    assert prompt["maxRetries"] == 10
    assert prompt["runCount"] == 0
    assert prompt["sync"] is False
    assert prompt["id"] and prompt["threadId"]
    assert RFC3339.match(prompt["createdAt"]) and prompt["createdAt"] == prompt["updatedAt"]
    assert queued_bodies(local_stack) == [{"promptId": prompt["id"], "userId": "alice"}]  # ids only, no text
    assert len(stored_prompts(local_stack)) == 1


def test_fields_given_are_kept(client: TestClient, keys: dict[str, str]) -> None:
    body = {
        "id": "my-prompt-1",
        "prompt": "hi",
        "modelId": "Qwen/Qwen2.5-7B-Instruct",
        "threadId": "thread-7",
        "maxRetries": 3,
        "template": "<<{prompt}>>",
    }
    prompt = client.post("/prompt-svc/prompt", json=body, headers=auth(keys["alice"])).json()["prompt"]

    assert {k: prompt[k] for k in body} == body


@pytest.mark.parametrize(
    "extra",
    [
        {"parameters": {"textToText": {"template": "T2T {prompt}"}}},
        {"engineParameters": {"llamaCppParameters": {"template": "T2T {prompt}"}}},
    ],
)
def test_template_from_the_js_client_fields(client: TestClient, keys: dict[str, str], extra: dict) -> None:
    prompt = client.post("/prompt-svc/prompt", json={"prompt": "hi", **extra}, headers=auth(keys["alice"]))

    assert prompt.json()["prompt"]["template"] == "T2T {prompt}"


def test_readding_the_same_body_is_idempotent(
    client: TestClient, local_stack: LocalStack, keys: dict[str, str]
) -> None:
    body = {"id": "same-1", "prompt": "hi", "threadId": "t"}
    first = client.post("/prompt-svc/prompt", json=body, headers=auth(keys["alice"]))
    again = client.post("/prompt-svc/prompt", json=body, headers=auth(keys["alice"]))

    assert again.status_code == 200
    assert again.json()["prompt"] == first.json()["prompt"]
    assert queued_bodies(local_stack) == [{"promptId": "same-1", "userId": "alice"}]


def test_readding_without_a_thread_id_is_idempotent_too(
    client: TestClient, local_stack: LocalStack, keys: dict[str, str]
) -> None:
    """A client retrying after a lost response sends the same body; the thread id the service
    generated the first time is not part of what the client asked for."""
    body = {"id": "same-2", "prompt": "hi"}
    first = client.post("/prompt-svc/prompt", json=body, headers=auth(keys["alice"]))
    again = client.post("/prompt-svc/prompt", json=body, headers=auth(keys["alice"]))

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["prompt"] == first.json()["prompt"]
    assert queued_bodies(local_stack) == [{"promptId": "same-2", "userId": "alice"}]


def test_same_id_with_another_body_is_a_conflict(
    client: TestClient, local_stack: LocalStack, keys: dict[str, str]
) -> None:
    client.post("/prompt-svc/prompt", json={"id": "dup-1", "prompt": "hi"}, headers=auth(keys["alice"]))
    other = {"id": "dup-1", "prompt": "something else"}

    response = client.post("/prompt-svc/prompt", json=other, headers=auth(keys["alice"]))

    assert response.status_code == 409
    assert "dup-1" in response.json()["error"]
    assert queue_depth(local_stack) == 1
    assert prompt_of(local_stack, "dup-1")["prompt"] == "hi"


def test_ids_and_threads_are_per_user(
    client: TestClient, local_stack: LocalStack, keys: dict[str, str], consumer: SqsEventSource
) -> None:
    """Two users pick the same prompt id and thread id: each gets their own prompt and thread,
    numbered from 1, and neither can see, block or learn anything of the other's."""
    first = {"id": "dup-1", "threadId": "t-shared", "prompt": "alice's"}
    assert client.post("/prompt-svc/prompt", json=first, headers=auth(keys["alice"])).status_code == 200
    consumer.drain()
    second = {"id": "dup-1", "threadId": "t-shared", "prompt": "bob's"}

    response = client.post("/prompt-svc/prompt", json=second, headers=auth(keys["bob"]))
    consumer.drain()

    assert response.status_code == 200 and response.json()["prompt"]["prompt"] == "bob's"
    for user, text in (("alice", "alice's"), ("bob", "bob's")):
        mine = client.get("/prompt-svc/prompt/dup-1", headers=auth(keys[user])).json()["prompt"]
        assert (mine["prompt"], mine["userId"], mine["status"]) == (text, user, "completed")
        events = client.get("/prompt-svc/thread/t-shared/events", headers=auth(keys[user])).json()
        assert [e["seq"] for e in events["events"]] == list(range(1, len(events["events"]) + 1))
        assert {e["promptId"] for e in events["events"]} == {"dup-1"}
        assert "".join(e.get("text", "") for e in events["events"]).count(text) >= 1
    # An admin reads either, naming the user.
    bobs = client.get("/prompt-svc/prompt/dup-1?userId=bob", headers=auth(keys["admin"]))
    assert bobs.json()["prompt"]["prompt"] == "bob's"
    # A user naming another user learns nothing.
    peek = client.get("/prompt-svc/prompt/dup-1?userId=alice", headers=auth(keys["bob"]))
    assert peek.status_code == 404


def prompt_of(stack: LocalStack, prompt_id: str) -> dict:
    (item,) = [i for i in stored_prompts(stack) if i["id"]["S"] == prompt_id]
    return {k: next(iter(v.values())) for k, v in item.items()}


@pytest.fixture
def running_consumer(consumer: SqsEventSource) -> Iterator[SqsEventSource]:
    consumer.wait_seconds = 0
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if not consumer.poll_once(wait_seconds=0):
                stop.wait(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield consumer
    stop.set()
    thread.join(5)


def test_sync_add_waits_for_the_answer(
    client: TestClient, keys: dict[str, str], running_consumer: SqsEventSource
) -> None:
    response = client.post(
        "/prompt-svc/prompt", json={"prompt": "What's a banana?", "sync": True}, headers=auth(keys["alice"])
    )

    assert response.status_code == 200
    body = response.json()
    assert body["prompt"]["status"] == "completed"
    assert body["prompt"]["runCount"] == 1
    assert RFC3339.match(body["prompt"]["lastRun"])
    assert body["answer"] == "[INST]What's a banana?[/INST]"
    message = body["responseMessage"]
    assert message["text"] == body["answer"]
    assert message["threadId"] == body["prompt"]["threadId"]
    assert message["userId"] == "alice"
    assert message["id"] and message["createdAt"] and message["updatedAt"]


def test_sync_add_that_times_out_is_202_with_the_prompt_as_it_stands(
    local_stack: LocalStack, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_WAIT_SECONDS", "0.3")
    with TestClient(create_app(Settings())) as client:  # no consumer runs
        response = client.post(
            "/prompt-svc/prompt", json={"prompt": "hi", "sync": True}, headers=auth(keys["alice"])
        )

    assert response.status_code == 202
    assert response.json()["prompt"]["status"] == "scheduled"
    assert "responseMessage" not in response.json()


BAD_INPUT = [
    (b'{"prompt": "hi"', 400, "invalid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"prompt": 5}', 400, "prompt"),
    (b'{"prompt": "hi", "sync": "yes"}', 400, "sync"),
    (b'{"prompt": "hi", "maxRetries": "5"}', 400, "maxRetries"),
    (b'{"prompt": "hi", "maxRetries": -1}', 400, "maxRetries"),
    (b'{"prompt": "hi", "maxRetries": 101}', 400, "maxRetries"),
    (b'{"prompt": ""}', 400, "prompt"),
    (b'{"prompt": "   "}', 400, "prompt"),
    (b"{}", 400, "prompt"),
    (b'{"prompt": "hi", "modelId": "no/such-model"}', 400, MISTRAL),
    (b'{"prompt": "hi", "id": "has#hash"}', 400, "id"),
    (b'{"prompt": "hi", "threadId": ""}', 400, "threadId"),
    (b'{"prompt": "' + b"x" * (256 * 1024 + 1) + b'"}', 413, "256 KB"),
    (b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413, "larger than"),
]


@pytest.mark.parametrize(("raw", "status", "named"), BAD_INPUT, ids=[f"{s}-{n}" for _, s, n in BAD_INPUT])
def test_bad_input_is_a_clear_error_and_nothing_is_stored_or_enqueued(
    client: TestClient, local_stack: LocalStack, keys: dict[str, str], raw: bytes, status: int, named: str
) -> None:
    response = client.post(
        "/prompt-svc/prompt", content=raw, headers={**auth(keys["alice"]), "content-type": "application/json"}
    )

    assert response.status_code == status
    assert named in response.json()["error"]
    assert stored_prompts(local_stack) == []
    assert queue_depth(local_stack) == 0


def test_body_without_content_type_is_read_as_json(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post("/prompt-svc/prompt", content=b'{"prompt": "hi"}', headers=auth(keys["alice"]))

    assert response.status_code == 200


def test_a_send_that_fails_after_the_put_strands_nothing(
    client: TestClient,
    local_stack: LocalStack,
    keys: dict[str, str],
    consumer: SqsEventSource,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The put lands, the send fails (as if the function died between the two): the prompt is
    accepted, the sweeper queues it once its grace has passed, and it runs exactly once."""
    real_send = prompt_queue.SqsPromptQueue.send

    def broken_send(self: object, prompt_id: str, user_id: str, lane: str = "") -> None:
        raise ConnectionError("sqs unreachable")

    monkeypatch.setattr(prompt_queue.SqsPromptQueue, "send", broken_send)
    response = client.post("/prompt-svc/prompt", json={"prompt": "hi"}, headers=auth(keys["alice"]))
    monkeypatch.setattr(prompt_queue.SqsPromptQueue, "send", real_send)

    assert response.status_code == 200
    prompt = response.json()["prompt"]
    assert prompt["status"] == "scheduled" and queue_depth(local_stack) == 0
    repository = wiring.prompt_store(settings)
    queue = prompt_queue.SqsPromptQueue(settings.prompts_queue_url)

    early = requeue_stranded(repository, queue, grace_seconds=300)
    assert (early.found, early.requeued) == (0, 0)  # within its grace: maybe a send in flight
    later = datetime.now(UTC) + timedelta(seconds=301)
    assert requeue_stranded(repository, queue, grace_seconds=300, now=later).requeued == 1
    assert requeue_stranded(repository, queue, grace_seconds=300, now=later).requeued == 0  # once a period

    assert consumer.drain() == 1
    done = client.get(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"])).json()["prompt"]
    assert (done["status"], done["runCount"]) == ("completed", 1)


def test_a_requeued_prompt_whose_message_was_not_lost_still_runs_once(
    client: TestClient,
    local_stack: LocalStack,
    keys: dict[str, str],
    consumer: SqsEventSource,
    settings: Settings,
) -> None:
    prompt = client.post("/prompt-svc/prompt", json={"prompt": "hi"}, headers=auth(keys["alice"])).json()
    repository = wiring.prompt_store(settings)
    queue = prompt_queue.SqsPromptQueue(settings.prompts_queue_url)
    later = datetime.now(UTC) + timedelta(seconds=301)
    assert requeue_stranded(repository, queue, grace_seconds=300, now=later).requeued == 1
    assert queue_depth(local_stack) == 2  # the original message and the sweeper's

    consumer.drain()  # the copy delivered while the first runs is kept until its lease ends
    done = client.get(f"/prompt-svc/prompt/{prompt['prompt']['id']}", headers=auth(keys["alice"]))
    assert (done.json()["prompt"]["status"], done.json()["prompt"]["runCount"]) == ("completed", 1)


def test_an_internal_error_is_a_500_without_a_stack_trace(
    client: TestClient, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_put(self: object, prompt: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(prompt_table.DynamoPromptStore, "put_new", broken_put)

    response = client.post("/prompt-svc/prompt", json={"prompt": "hi"}, headers=auth(keys["alice"]))

    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
