"""Fair queueing on moto (domain/lanes.py): the add's lane decision in its own transaction, the
lane slot given back on every terminal path, each message settled on its own lane's queue."""

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from msgspec.structs import replace
from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.adapters.clients import client
from promptsvc.adapters.prompt_queue import SqsMessages, SqsPromptQueue, message_body
from promptsvc.adapters.prompt_table import DynamoPromptStore
from promptsvc.consumer.dead_letters import abandon
from promptsvc.consumer.runner import PromptRunner
from promptsvc.consumer.settle import ReceivedMessage, Settlement, settle
from promptsvc.consumer.stranded import requeue_stranded
from promptsvc.consumer.worker import Worker, WorkerOptions
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.lanes import lane_item
from promptsvc.domain.limits import LimitExceeded, in_flight_item
from promptsvc.domain.prompt import NewPrompt, Prompt, create_prompt
from promptsvc.domain.status import Status
from promptsvc.settings import Settings
from promptsvc_dev.sqs_source import SqsEventSource, sqs_event
from promptsvc_dev.template import LocalStack

from tests.conftest import auth

K = 3
MODEL = "huggingface/TheBloke/mistral-7b-instruct-v0.2.Q3_K_S.gguf"  # the catalog's default


def new_prompt(user: str, number: int, key: str = "key-1") -> Prompt:
    new = NewPrompt(
        prompt=f"prompt {number}",
        modelId=MODEL,
        template="{prompt}",
        threadId=f"t{number}",
        maxRetries=0,
        sync=False,
        id=f"p{number:03d}",
    )
    return replace(create_prompt(user, new), keyId=key)


def counter(settings: Settings, item: str) -> int:
    found = clients.dynamodb_table(settings.limits_table).get_item(Key={"key": item}, ConsistentRead=True)
    return int(found.get("Item", {}).get("n", 0))


def depth(url: str) -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.fixture
def store(settings: Settings) -> DynamoPromptStore:
    return DynamoPromptStore(settings.prompts_table, limits_table=settings.limits_table, fast_lane_per_user=K)


def test_an_add_below_the_share_goes_fast_and_at_it_bulk_with_nothing_half_written(
    store: DynamoPromptStore, settings: Settings
) -> None:
    lanes = [store.put_new(new_prompt("alice", n)) for n in range(K + 2)]
    assert [p.lane if p else None for p in lanes] == ["fast"] * K + ["bulk"] * 2
    assert [store.get("alice", f"p{n:03d}").lane for n in range(K + 2)] == ["fast"] * K + ["bulk"] * 2  # type: ignore[union-attr]
    assert counter(settings, lane_item("alice")) == K
    assert counter(settings, in_flight_item("key-1")) == K + 2  # every prompt holds its key's slot
    # Another user has a lane of their own.
    assert store.put_new(new_prompt("bob", 0, key="key-2")).lane == "fast"  # type: ignore[union-attr]

    # A re-add of an existing id writes nothing, whatever lane it would take.
    assert store.put_new(new_prompt("alice", 0)) is None
    assert store.put_new(new_prompt("alice", K + 1)) is None
    assert counter(settings, lane_item("alice")) == K
    assert counter(settings, in_flight_item("key-1")) == K + 2


def test_a_full_in_flight_limit_refuses_before_the_lane_decides(
    store: DynamoPromptStore, settings: Settings
) -> None:
    for n in range(K):
        store.put_new(new_prompt("alice", n), in_flight_limit=K)
    with pytest.raises(LimitExceeded):
        store.put_new(new_prompt("alice", K), in_flight_limit=K)  # both conditions fail: a 429
    assert store.get("alice", f"p{K:03d}") is None
    assert counter(settings, lane_item("alice")) == K
    assert counter(settings, in_flight_item("key-1")) == K


def test_concurrent_adds_put_exactly_the_share_in_the_fast_lane(
    store: DynamoPromptStore, settings: Settings
) -> None:
    results: list[Prompt | None] = []
    go = threading.Barrier(12)

    def add(number: int) -> None:
        go.wait()
        results.append(store.put_new(new_prompt("alice", number)))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lanes = sorted(p.lane for p in results if p is not None)
    assert lanes == ["bulk"] * (12 - K) + ["fast"] * K
    assert counter(settings, lane_item("alice")) == K


def test_every_terminal_path_gives_the_lane_slot_back_once(
    store: DynamoPromptStore, settings: Settings
) -> None:
    now = now_rfc3339()
    prompts = [store.put_new(new_prompt("alice", n)) for n in range(K + 1)]
    assert [p.lane for p in prompts if p] == ["fast"] * K + ["bulk"]
    completed, canceled, removed, bulk = prompts  # type: ignore[misc]
    assert completed and canceled and removed and bulk

    running = store.claim(completed, now, 0)
    assert running is not None
    assert store.transition(running, Status.COMPLETED, updatedAt=now, answer="a") is not None
    assert store.transition(running, Status.COMPLETED, updatedAt=now, answer="a") is None  # a duplicate
    assert counter(settings, lane_item("alice")) == K - 1
    assert store.transition(canceled, Status.CANCELED, updatedAt=now) is not None
    assert counter(settings, lane_item("alice")) == K - 2
    assert store.delete("alice", removed.id) is not None
    assert counter(settings, lane_item("alice")) == K - 3 == 0
    assert store.transition(bulk, Status.CANCELED, updatedAt=now) is not None  # held no lane slot
    assert counter(settings, lane_item("alice")) == 0
    assert counter(settings, in_flight_item("key-1")) == 0

    # The dead-letter sweeper's abandon, and the crash limit's (a failure's end: abandoned).
    dead, crashed = (store.put_new(new_prompt("alice", n)) for n in (10, 11))
    assert dead and crashed and counter(settings, lane_item("alice")) == 2
    assert abandon(store, "alice", dead.id, deliveries=200)
    assert store.transition(crashed, Status.ABANDONED, updatedAt=now, error="crashed") is not None
    assert counter(settings, lane_item("alice")) == 0


def test_the_sweeper_requeues_a_stranded_prompt_on_its_own_lane(
    store: DynamoPromptStore, settings: Settings
) -> None:
    prompts = [store.put_new(new_prompt("alice", n)) for n in range(K + 1)]  # nothing sent: stranded
    queue = wiring.prompt_queue(settings)
    later = datetime.now(UTC) + timedelta(seconds=301)
    assert requeue_stranded(store, queue, grace_seconds=300, now=later).requeued == K + 1
    assert depth(settings.prompts_queue_url) == K
    assert depth(settings.prompts_bulk_queue_url) == 1
    bulk = client("sqs").receive_message(QueueUrl=settings.prompts_bulk_queue_url, AttributeNames=["All"])
    (message,) = bulk["Messages"]
    assert json.loads(message["Body"])["promptId"] == prompts[-1].id  # type: ignore[union-attr]
    assert message["Attributes"]["MessageGroupId"] == "alice"  # a fair queue's group: the user


def test_over_its_share_a_user_gets_bulk_lane_prompts_that_still_complete(
    client: TestClient, keys: dict[str, str], settings: Settings, consumer: SqsEventSource
) -> None:
    share = settings.fast_lane_prompts_per_user
    assert share > 0 and settings.prompts_bulk_queue_url  # the template turns lanes on
    ids = []
    for n in range(share + 3):
        response = client.post("/prompt-svc/prompt", json={"prompt": f"p{n}"}, headers=auth(keys["alice"]))
        assert response.status_code == 200, response.text
        assert "lane" not in response.json()["prompt"]  # internal
        ids.append(response.json()["prompt"]["id"])
    assert depth(settings.prompts_queue_url) == share
    assert depth(settings.prompts_bulk_queue_url) == 3
    assert consumer.drain() == share + 3
    for prompt_id in ids:
        got = client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(keys["alice"])).json()["prompt"]
        assert got["status"] == "completed"
    assert counter(settings, lane_item("alice")) == 0
    assert depth(settings.prompts_queue_url) == depth(settings.prompts_bulk_queue_url) == 0


@pytest.fixture
def queue_calls() -> Iterator[list[tuple[str, str]]]:
    """The SQS calls made from now on, as (operation, queue URL)."""
    calls: list[tuple[str, str]] = []

    def note(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, str(params.get("QueueUrl", ""))))

    clients.register_hook("provide-client-params.sqs.*", note)
    yield calls
    clients.clear_hooks()


def test_a_lambda_record_from_the_bulk_queue_settles_on_the_bulk_queue(
    store: DynamoPromptStore, settings: Settings, queue_calls: list[tuple[str, str]]
) -> None:
    from promptsvc_dev.functions import load_handler_module

    from tests.conftest import ROOT

    prompt = store.put_new(new_prompt("alice", 0))
    assert prompt is not None
    busy = store.claim(
        prompt, now_rfc3339(), int((datetime.now(UTC) + timedelta(minutes=5)).timestamp() * 1000)
    )
    assert busy is not None  # another consumer holds it: the record is kept (its visibility set)
    sqs = client("sqs")
    bulk = settings.prompts_bulk_queue_url
    sqs.send_message(QueueUrl=bulk, MessageBody=message_body(prompt.id, "alice"))
    messages = sqs.receive_message(QueueUrl=bulk, AttributeNames=["All"])["Messages"]
    arn = sqs.get_queue_attributes(QueueUrl=bulk, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    consumer = load_handler_module(ROOT, "consumer")
    queue_calls.clear()
    from promptsvc_dev.functions import LambdaContext

    answer = consumer.lambda_handler(
        sqs_event(messages, arn, "us-east-1"), LambdaContext("ConsumerFunction", 60_000)
    )
    assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == [messages[0]["MessageId"]]
    visibility = [url for name, url in queue_calls if name == "ChangeMessageVisibility"]
    assert visibility == [bulk]


def test_settling_a_bulk_message_retries_and_deletes_it_on_the_bulk_queue(settings: Settings) -> None:
    messages = wiring.queue_messages(settings)
    bulk = settings.prompts_bulk_queue_url
    sqs = client("sqs")
    sqs.send_message(QueueUrl=bulk, MessageBody=message_body("p1", "alice"))
    (raw,) = sqs.receive_message(QueueUrl=bulk)["Messages"]
    lane = messages.of_queue(bulk)
    assert lane.queue_url == bulk and messages.of_queue(settings.prompts_queue_url) is messages
    lane.change_visibility(raw["ReceiptHandle"], 0)  # a retry's backoff: on its own queue
    (again,) = sqs.receive_message(QueueUrl=bulk)["Messages"]
    lane.delete(again["ReceiptHandle"])
    assert depth(bulk) == 0


def test_the_worker_reads_both_lanes_and_deletes_each_message_from_its_own_queue(
    store: DynamoPromptStore, settings: Settings
) -> None:
    queue = wiring.prompt_queue(settings)
    for n in range(K + 4):
        prompt = store.put_new(new_prompt("alice", n))
        assert prompt is not None
        queue.send(prompt.id, prompt.userId, prompt.lane)
    assert depth(settings.prompts_bulk_queue_url) == 4

    async def run() -> Worker:
        options = WorkerOptions(
            queue_url=settings.prompts_queue_url,
            bulk_queue_url=settings.prompts_bulk_queue_url,
            concurrency=4,
            wait_seconds=0,
            drain_seconds=10,
        )
        worker = Worker(wiring.prompt_runner(settings), wiring.queue_messages(settings), options)
        running = asyncio.create_task(worker.run(handle_signals=False))
        for _ in range(400):
            if worker.settled.get("done", 0) >= K + 4:
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await running
        return worker

    worker = asyncio.run(run())
    assert worker.settled == {"done": K + 4}
    assert all(store.get("alice", f"p{n:03d}").status is Status.COMPLETED for n in range(K + 4))  # type: ignore[union-attr]
    assert depth(settings.prompts_queue_url) == depth(settings.prompts_bulk_queue_url) == 0
    assert counter(settings, lane_item("alice")) == 0


def test_the_worker_refuses_messages_that_cannot_settle_on_its_bulk_lane(settings: Settings) -> None:
    options = WorkerOptions(
        queue_url=settings.prompts_queue_url, bulk_queue_url=settings.prompts_bulk_queue_url
    )
    with pytest.raises(ValueError, match="both lanes"):
        Worker(
            PromptRunner.__new__(PromptRunner),
            SqsMessages(settings.prompts_queue_url, settings.prompts_dlq_url),
            options,
        )


def test_settle_keeps_a_busy_bulk_message_on_the_bulk_queue(
    store: DynamoPromptStore, settings: Settings, queue_calls: list[tuple[str, str]]
) -> None:
    prompt = store.put_new(new_prompt("alice", 0))
    assert prompt is not None
    lease = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp() * 1000)
    assert store.claim(prompt, now_rfc3339(), lease) is not None
    bulk = settings.prompts_bulk_queue_url
    client("sqs").send_message(QueueUrl=bulk, MessageBody=message_body(prompt.id, "alice"))
    (raw,) = client("sqs").receive_message(QueueUrl=bulk)["Messages"]
    message = ReceivedMessage(raw["MessageId"], raw["ReceiptHandle"], raw["Body"])
    queue_calls.clear()
    lane = wiring.queue_messages(settings).of_queue(bulk)
    assert asyncio.run(settle(wiring.prompt_runner(settings), lane, message)) is Settlement.KEPT
    assert [url for name, url in queue_calls if name == "ChangeMessageVisibility"] == [bulk]


def test_a_queue_without_a_bulk_lane_sends_every_prompt_to_the_fast_lane(settings: Settings) -> None:
    one = SqsPromptQueue(settings.prompts_queue_url)
    one.send("p1", "alice", "bulk")
    assert depth(settings.prompts_queue_url) == 1 and depth(settings.prompts_bulk_queue_url) == 0


def test_lanes_are_off_with_a_share_of_zero(settings: Settings, local_stack: LocalStack) -> None:
    off = DynamoPromptStore(settings.prompts_table, limits_table=settings.limits_table, fast_lane_per_user=0)
    stored = off.put_new(new_prompt("carol", 0))
    assert stored is not None and stored.lane == ""
    assert counter(settings, lane_item("carol")) == 0


def test_a_warm_add_costs_two_calls_in_the_fast_lane_and_three_in_the_bulk_lane(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    calls: list[str] = []

    def note(model: Any, **_: Any) -> None:
        calls.append(f"{model.service_model.service_name}.{model.name}")

    def add(number: int) -> list[str]:
        calls.clear()
        response = client.post(
            "/prompt-svc/prompt", json={"prompt": f"p{number}"}, headers=auth(keys["alice"])
        )
        assert response.status_code == 200, response.text
        return sorted(calls)

    add(0)  # the key's first use: read and cached
    clients.register_hook("before-call", note)
    try:
        fast = [add(n) for n in range(1, settings.fast_lane_prompts_per_user)]
        bulk = add(settings.fast_lane_prompts_per_user)
    finally:
        clients.clear_hooks()
    assert all(one == ["dynamodb.TransactWriteItems", "sqs.SendMessage"] for one in fast), fast
    assert bulk == ["dynamodb.TransactWriteItems", "dynamodb.TransactWriteItems", "sqs.SendMessage"]
