"""Get, cancel, remove and the consumer core: conditional writes keep every fault to one answer."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from fastapi.testclient import TestClient
from promptsvc.adapters.clients import client as aws_client
from promptsvc.adapters.prompt_queue import message_body
from promptsvc.consumer.runner import Outcome, PromptRunner, RunResult
from promptsvc.engines.base import Delta, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.registry import FACTORIES
from promptsvc.settings import Settings
from promptsvc_dev.sqs_source import SqsEventSource
from promptsvc_dev.template import LocalStack

from tests.conftest import LoadConsumer, auth
from tests.integration.helpers import EngineOf, add, queue_depth


def get(client: TestClient, key: str, prompt_id: str) -> dict:
    response = client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_async_prompt_is_answered_by_the_consumer(
    client: TestClient, keys: dict[str, str], consumer: SqsEventSource, local_stack: LocalStack
) -> None:
    prompt = add(client, keys["alice"], prompt="What's a banana?")

    assert consumer.drain() == 1

    body = get(client, keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "completed"
    assert body["prompt"]["runCount"] == 1
    assert body["answer"] == "[INST]What's a banana?[/INST]"
    assert body["responseMessage"]["text"] == body["answer"]
    assert queue_depth(local_stack) == 0


def test_a_duplicate_delivery_after_the_answer_does_nothing(
    client: TestClient, keys: dict[str, str], consumer: SqsEventSource, local_stack: LocalStack
) -> None:
    prompt = add(client, keys["alice"])
    consumer.drain()
    queue_url = local_stack.refs["PromptsQueue"]
    aws_client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=message_body(prompt["id"], prompt["userId"])
    )

    assert consumer.drain() == 1

    body = get(client, keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "completed"
    assert body["prompt"]["runCount"] == 1
    assert queue_depth(local_stack) == 0


def test_a_duplicate_delivered_while_running_is_kept_until_the_lease_ends(
    client: TestClient,
    keys: dict[str, str],
    load_consumer: LoadConsumer,
    local_stack: LocalStack,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prompt = add(client, keys["alice"])
    queue_url = local_stack.refs["PromptsQueue"]
    aws_client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=message_body(prompt["id"], prompt["userId"])
    )
    settings_engine = FACTORIES["mock"](settings.engines)
    original_run = PromptRunner.run
    outcomes: list[Outcome] = []

    calls: list[int] = []

    async def recorded(self: PromptRunner, *args: object, **kwargs: object) -> RunResult:
        calls.append(len(calls))
        if len(calls) == 2:
            # The copy arrives once the first has claimed the prompt. (Claims racing in the same
            # instant are DynamoDB's to settle; moto's in-process conditional writes are not atomic
            # across threads, so this test does not race them.)
            while get(client, keys["alice"], prompt["id"])["prompt"]["status"] != "running":
                await asyncio.sleep(0.01)
        result = await original_run(self, *args, **kwargs)
        outcomes.append(result.outcome)
        return result

    async def held(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        # The engine answers only once the other copy has been handled, so that copy finds the
        # prompt running whatever the machine's speed.
        while not outcomes:
            await asyncio.sleep(0.01)
        async for event in settings_engine.stream(request):
            yield event

    monkeypatch.setattr(PromptRunner, "run", recorded)
    consumer = load_consumer({"mock": EngineOf(held)})

    assert consumer.poll_once(wait_seconds=0) == 2  # both copies in one batch, run concurrently

    body = get(client, keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "completed"
    assert body["prompt"]["runCount"] == 1
    assert outcomes == [Outcome.BUSY, Outcome.COMPLETED]
    assert queue_depth(local_stack) == 1  # the copy comes back after the lease, then is deleted


def test_a_canceled_prompt_is_never_run(
    client: TestClient, keys: dict[str, str], consumer: SqsEventSource
) -> None:
    prompt = add(client, keys["alice"])

    canceled = client.post(f"/prompt-svc/prompt/{prompt['id']}/cancel", headers=auth(keys["alice"]))
    consumer.drain()

    assert canceled.status_code == 200 and canceled.json()["prompt"]["status"] == "canceled"
    body = get(client, keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "canceled"
    assert body["prompt"]["runCount"] == 0
    assert body["answer"] == ""


def test_cancel_is_idempotent_and_a_finished_prompt_cannot_be_canceled(
    client: TestClient, keys: dict[str, str], consumer: SqsEventSource
) -> None:
    first = add(client, keys["alice"])
    second = add(client, keys["alice"])
    client.post(f"/prompt-svc/prompt/{first['id']}/cancel", headers=auth(keys["alice"]))
    consumer.drain()

    again = client.post(f"/prompt-svc/prompt/{first['id']}/cancel", headers=auth(keys["alice"]))
    late = client.post(f"/prompt-svc/prompt/{second['id']}/cancel", headers=auth(keys["alice"]))

    assert again.status_code == 200 and again.json()["prompt"]["status"] == "canceled"
    assert late.status_code == 409 and "completed" in late.json()["error"]
    assert get(client, keys["alice"], second["id"])["prompt"]["status"] == "completed"


@pytest.mark.parametrize("how", ["delete", "remove"])
def test_a_removed_prompt_is_never_run(
    client: TestClient, keys: dict[str, str], consumer: SqsEventSource, local_stack: LocalStack, how: str
) -> None:
    prompt = add(client, keys["alice"])
    if how == "delete":
        response = client.delete(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"]))
    else:
        response = client.post(
            "/prompt-svc/remove", json={"promptId": prompt["id"]}, headers=auth(keys["alice"])
        )

    consumer.drain()

    assert response.status_code == 200
    assert client.get(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"])).status_code == 404
    assert aws_client("dynamodb").scan(TableName=local_stack.refs["PromptsTable"])["Items"] == []
    assert queue_depth(local_stack) == 0


def test_missing_prompt_is_404(client: TestClient, keys: dict[str, str]) -> None:
    for response in [
        client.get("/prompt-svc/prompt/nope", headers=auth(keys["alice"])),
        client.post("/prompt-svc/prompt/nope/cancel", headers=auth(keys["alice"])),
        client.delete("/prompt-svc/prompt/nope", headers=auth(keys["alice"])),
    ]:
        assert response.status_code == 404
        assert "nope" in response.json()["error"]


class FailingEngine:
    def __init__(self, error: EngineError) -> None:
        self.error = error

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        raise self.error
        yield  # pragma: no cover - makes this an async generator


def test_a_retryable_engine_failure_leaves_the_prompt_errored_and_the_message_queued(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer, local_stack: LocalStack
) -> None:
    prompt = add(client, keys["alice"])
    consumer = load_consumer({"mock": FailingEngine(EngineError("503 busy", retryable=True))})

    consumer.poll_once(wait_seconds=0)

    body = get(client, keys["alice"], prompt["id"])["prompt"]
    assert body["status"] == "errored"
    assert body["error"] == "503 busy"
    assert body["runCount"] == 1
    assert queue_depth(local_stack) == 1  # reported as a batch item failure: SQS delivers it again


def test_a_permanent_engine_failure_abandons_the_prompt(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer, local_stack: LocalStack
) -> None:
    prompt = add(client, keys["alice"])
    consumer = load_consumer({"mock": FailingEngine(EngineError("400 bad", retryable=False))})

    consumer.drain()

    body = get(client, keys["alice"], prompt["id"])["prompt"]
    assert body["status"] == "abandoned"
    assert body["error"] == "400 bad"
    assert queue_depth(local_stack) == 0


def test_a_prompt_with_no_retries_left_is_abandoned(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer
) -> None:
    prompt = add(client, keys["alice"], maxRetries=0)
    consumer = load_consumer({"mock": FailingEngine(EngineError("503", retryable=True))})

    consumer.drain()

    assert get(client, keys["alice"], prompt["id"])["prompt"]["status"] == "abandoned"


def test_a_cancel_during_generation_stops_it_and_keeps_the_partial_answer(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer
) -> None:
    prompt = add(client, keys["alice"])
    produced: list[str] = []

    async def slow_stream(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        for i in range(200):
            if i == 2:
                client.post(f"/prompt-svc/prompt/{prompt['id']}/cancel", headers=auth(keys["alice"]))
            await asyncio.sleep(0.05)
            produced.append(f"t{i} ")
            yield Delta(f"t{i} ")
        yield Finish()

    consumer = load_consumer({"mock": EngineOf(slow_stream)})

    consumer.drain()

    body = get(client, keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "canceled"
    assert 2 <= len(produced) < 200  # the stream was stopped, not run to its end
    assert body["answer"] == "".join(produced)
    assert "responseMessage" not in body


def test_the_records_of_a_batch_run_concurrently(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer
) -> None:
    ids = [add(client, keys["alice"], prompt=f"p{i}")["id"] for i in range(5)]
    active = {"now": 0, "peak": 0}
    all_in = asyncio.Event()

    async def overlapping(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        active["now"] += 1
        active["peak"] = max(active["peak"], active["now"])
        if active["now"] == 5:
            all_in.set()
        with contextlib.suppress(TimeoutError):  # run one after another, they would never all be in
            await asyncio.wait_for(all_in.wait(), 10)
        active["now"] -= 1
        yield Delta(request.prompt)
        yield Finish()

    consumer = load_consumer({"mock": EngineOf(overlapping)})

    assert consumer.poll_once(wait_seconds=0) == 5  # one batch

    assert active["peak"] == 5
    assert {get(client, keys["alice"], i)["prompt"]["status"] for i in ids} == {"completed"}
