"""Answers too large for a DynamoDB item (the claim check in the answers bucket), the maximum answer,
and the item size check that refuses a write DynamoDB would refuse before it is sent (moto applies
the other fields of an UpdateItem it refuses; DynamoDB refuses all of it)."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.adapters.answer_bodies import S3AnswerBodies
from promptsvc.domain.answers import DEFAULT_MAX_ANSWER_BYTES
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.errors import ItemTooLarge
from promptsvc.domain.prompt import MAX_PROMPT_BYTES
from promptsvc.domain.status import Status
from promptsvc.engines.base import Delta, Engine, EngineEvent, EngineRequest, Finish
from promptsvc.settings import Settings, get_settings
from promptsvc_dev.sqs_source import SqsEventSource
from promptsvc_dev.template import LocalStack

from tests.conftest import LoadConsumer, auth
from tests.integration.helpers import EngineOf, add, queue_depth, stored_prompts

# 250 KB of UTF-8 (some characters 2 or 3 bytes), cut on a character boundary
LARGE_PROMPT = (
    ("A large prompt, echoed back: ünïcödé € " * 7000).encode()[: 250 * 1024].decode(errors="ignore")
)


def consumer_with(
    load_consumer: LoadConsumer,
    monkeypatch: pytest.MonkeyPatch,
    engines: dict[str, Engine] | None = None,
    **env: str,
) -> SqsEventSource:
    """The consumer handler loaded with these settings besides the template's (and `engines`)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return load_consumer(engines)


@pytest.fixture
def echoing_consumer(load_consumer: LoadConsumer, monkeypatch: pytest.MonkeyPatch) -> SqsEventSource:
    """The mock engine echoes the whole rendered prompt (not cut at 8 KB)."""
    return consumer_with(load_consumer, monkeypatch, MOCK_MAX_ANSWER_CHARS=str(2 * MAX_PROMPT_BYTES))


def answering(answer: str, chunks: int = 4) -> dict[str, Engine]:
    """Engines by name: the mock engine answers `answer` in `chunks` deltas, whatever the prompt."""

    async def stream(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        size = -(-len(answer) // chunks)
        for start in range(0, len(answer), size):
            yield Delta(answer[start : start + size])
        yield Finish("stop")

    return {"mock": EngineOf(stream)}


@pytest.fixture
def aws_calls() -> Iterator[list[str]]:
    """The AWS operations sent from now on (botocore's before-call event), as 'service.Operation'."""
    calls: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        calls.append(event_name.removeprefix("before-call."))

    clients.register_hook("before-call", record)
    yield calls
    clients.clear_hooks()


def get(client: TestClient, key: str, prompt_id: str) -> dict[str, Any]:
    response = client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def thread_events(client: TestClient, key: str, thread: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        response = client.get(
            f"/prompt-svc/thread/{thread}/events", params={"after": len(seen)}, headers=auth(key)
        )
        assert response.status_code == 200, response.text
        page = response.json()["events"]
        if not page:
            return seen
        seen.extend(page)


def item_of(stack: LocalStack, prompt_id: str) -> dict[str, Any]:
    (item,) = [i for i in stored_prompts(stack) if i["id"]["S"] == prompt_id]
    return item


def body_in_bucket(stack: LocalStack, key: str) -> str:
    bucket = stack.refs["AnswersBucket"]
    return str(clients.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def test_a_250_kb_prompt_echoed_completes_with_its_whole_answer_kept_in_the_bucket(
    client: TestClient, keys: dict[str, str], echoing_consumer: SqsEventSource, local_stack: LocalStack
) -> None:
    assert 240 * 1024 < len(LARGE_PROMPT.encode()) <= MAX_PROMPT_BYTES
    prompt = add(client, keys["alice"], prompt=LARGE_PROMPT, threadId="big")

    assert echoing_consumer.drain() == 1

    body = get(client, keys["alice"], prompt["id"])
    expected = f"[INST]{LARGE_PROMPT}[/INST]"  # the mock engine echoes the rendered prompt
    assert body["prompt"]["status"] == "completed"
    assert body["prompt"]["runCount"] == 1
    assert body["answer"] == expected
    assert body["responseMessage"]["text"] == expected
    # The item holds the pointer, not the body; the bucket holds the body.
    item = item_of(local_stack, prompt["id"])
    assert item["answer"]["S"] == ""
    assert item["answerRef"]["S"] == f"alice/{prompt['id']}/1"
    assert body_in_bucket(local_stack, item["answerRef"]["S"]) == expected
    # The thread's deltas are the whole answer, in events a DynamoDB item holds; the closing status
    # event does not carry the answer.
    events = thread_events(client, keys["alice"], "big")
    deltas = [e["text"] for e in events if e["type"] == "delta"]
    assert "".join(deltas) == expected
    assert max(len(d.encode()) for d in deltas) <= 64 * 1024
    assert events[-1] == {**events[-1], "type": "status", "status": "completed"}
    assert "text" not in events[-1]
    assert queue_depth(local_stack) == 0


def test_a_1_mib_answer_is_returned_whole_by_get_and_by_an_idempotent_sync_re_add(
    client: TestClient,
    keys: dict[str, str],
    load_consumer: LoadConsumer,
    local_stack: LocalStack,
    aws_calls: list[str],
) -> None:
    answer = "é" * (DEFAULT_MAX_ANSWER_BYTES // 2)  # exactly the maximum: 1 MiB of UTF-8, 512 Ki chars
    consumer = load_consumer(answering(answer))
    prompt = add(client, keys["alice"], prompt="write a lot", id="long-one")

    consumer.drain()

    body = get(client, keys["alice"], "long-one")
    assert body["prompt"]["status"] == "completed"
    assert body["answer"] == answer and body["responseMessage"]["text"] == answer
    again = client.post(
        "/prompt-svc/prompt",
        json={"prompt": "write a lot", "id": "long-one", "sync": True},
        headers=auth(keys["alice"]),
    )
    assert again.status_code == 200, again.text
    assert again.json()["answer"] == answer and again.json()["prompt"]["runCount"] == 1
    # A list page shows the prompt; list items carry no answer (the prompt schema has none), so
    # listing reads no bodies from the bucket.
    aws_calls.clear()
    listed = client.post("/prompt-svc/prompts", json={"query": {}}, headers=auth(keys["alice"]))
    assert listed.status_code == 200, listed.text
    (shown,) = listed.json()["prompts"]
    assert (shown["id"], shown["status"]) == (prompt["id"], "completed")
    assert "answer" not in shown
    assert not [call for call in aws_calls if call.startswith("s3.")]


def test_an_answer_over_the_maximum_abandons_the_prompt_with_an_error_saying_so(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer, local_stack: LocalStack
) -> None:
    consumer = load_consumer(answering("x" * (DEFAULT_MAX_ANSWER_BYTES + 1)))
    prompt = add(client, keys["alice"], prompt="write too much", threadId="huge", maxRetries=5)

    consumer.drain()

    body = get(client, keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "abandoned"
    assert body["prompt"]["runCount"] == 1  # final: not retried
    assert f"exceeded the maximum answer size of {DEFAULT_MAX_ANSWER_BYTES} bytes" in body["prompt"]["error"]
    assert body["answer"] == ""
    assert "responseMessage" not in body
    last = thread_events(client, keys["alice"], "huge")[-1]
    assert (last["type"], last["status"]) == ("status", "abandoned")
    assert "exceeded the maximum" in last["error"]
    assert queue_depth(local_stack) == 0


def test_without_an_answers_bucket_an_answer_too_large_for_the_item_abandons_the_prompt(
    client: TestClient,
    keys: dict[str, str],
    local_stack: LocalStack,
    load_consumer: LoadConsumer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = consumer_with(load_consumer, monkeypatch, answering("y" * (500 * 1024)), ANSWERS_BUCKET="")
    prompt = add(client, keys["alice"], prompt="hi")

    consumer.drain()

    body = get(client, keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "abandoned"
    assert "too large for the prompt's item and no answers bucket is configured" in body["prompt"]["error"]
    assert item_of(local_stack, prompt["id"])["answer"]["S"] == ""


def test_a_write_dynamodb_would_refuse_is_refused_by_the_size_check_before_it_is_sent(
    client: TestClient,
    keys: dict[str, str],
    settings: Settings,
    local_stack: LocalStack,
    aws_calls: list[str],
) -> None:
    prompt = add(client, keys["alice"], prompt=LARGE_PROMPT)
    repository = wiring.prompt_store(settings)
    claimed = repository.claim_waiting(prompt["id"], "alice", now_rfc3339(), 2**42).claimed
    assert claimed is not None
    before = item_of(local_stack, prompt["id"])
    aws_calls.clear()

    with pytest.raises(ItemTooLarge):
        repository.transition(
            claimed,
            Status.COMPLETED,
            run_count=claimed.runCount,
            answer="z" * (200 * 1024),
            updatedAt=now_rfc3339(),
        )
    with pytest.raises(ItemTooLarge):
        repository.update_if(claimed, Status.RUNNING, answer="z" * (200 * 1024))

    assert [call for call in aws_calls if call.startswith("dynamodb.")] == []
    assert item_of(local_stack, prompt["id"]) == before  # DynamoDB's outcome: nothing changed
    assert before["status"]["S"] == "running"


def test_a_new_prompt_too_large_for_an_item_is_a_413_and_nothing_is_stored(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack, aws_calls: list[str]
) -> None:
    aws_calls.clear()
    response = client.post(
        "/prompt-svc/prompt",
        # each within its own bound (the prompt 256 KB, the body 1 MB), together over 400 KB
        json={"prompt": LARGE_PROMPT, "template": "[INST]{prompt}[/INST]" + "t" * (200 * 1024)},
        headers=auth(keys["alice"]),
    )

    assert response.status_code == 413, response.text
    assert "DynamoDB" in response.json()["error"]
    assert "dynamodb.PutItem" not in aws_calls
    assert stored_prompts(local_stack) == [] and queue_depth(local_stack) == 0


def test_the_answers_bucket_is_made_as_the_template_declares_it(
    local_stack: LocalStack, settings: Settings
) -> None:
    s3 = clients.client("s3")
    bucket = local_stack.refs["AnswersBucket"]
    assert settings.answers_bucket == bucket  # the functions' ANSWERS_BUCKET
    (encryption,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert encryption["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    blocked = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert set(blocked.values()) == {True} and len(blocked) == 4
    (expiry,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert expiry["Expiration"]["Days"] == settings.prompt_retention_days == 30


def test_an_answers_bucket_that_cannot_be_written_is_a_retryable_failure(
    client: TestClient,
    keys: dict[str, str],
    load_consumer: LoadConsumer,
    local_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unavailable(self: S3AnswerBodies, key: str, text: str) -> None:
        raise ConnectionError("S3 is unreachable")

    monkeypatch.setattr(S3AnswerBodies, "put", unavailable)
    consumer = load_consumer(answering("w" * (500 * 1024)))
    prompt = add(client, keys["alice"], prompt="hi")

    consumer.drain()

    body = get(client, keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "errored"  # retried after its backoff: the message is kept
    assert body["prompt"]["error"] == "could not store the answer: ConnectionError"
    assert item_of(local_stack, prompt["id"])["answer"]["S"] == ""
    assert queue_depth(local_stack) == 1
