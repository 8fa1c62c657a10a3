"""The ECS GPU worker host on moto: concurrency, keep-alive, drain and release."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.clients import client as aws_client
from promptsvc.adapters.prompt_queue import SqsMessages
from promptsvc.consumer.worker import Worker, WorkerOptions
from promptsvc.engines.base import Delta, Engine, EngineEvent, EngineRequest, Finish
from promptsvc.settings import Settings, get_settings
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.integration.helpers import add


class Gauge:
    """An engine that streams the prompt's words, one each `chunk_delay` seconds, and counts
    streams running at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.started = 0
        self.lock = threading.Lock()
        self.chunk_delay = 0.05

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        with self.lock:
            self.active += 1
            self.started += 1
            self.peak = max(self.peak, self.active)
        try:
            for word in request.prompt.split():
                await asyncio.sleep(self.chunk_delay)
                yield Delta(word + " ")
            yield Finish("stop", completion_tokens=len(request.prompt.split()))
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(autouse=True)
def one_lane(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """One queue: these tests count its messages (the two lanes' worker: test_fair_lanes.py)."""
    monkeypatch.setenv("FAST_LANE_PROMPTS_PER_USER", "0")
    get_settings.cache_clear()


@pytest.fixture
def gauge() -> Gauge:
    return Gauge()


class Spy(SqsMessages):
    def __init__(self, queue_url: str, dead_letter_url: str) -> None:
        super().__init__(queue_url, dead_letter_url)
        self.visibility: list[int] = []

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self.visibility.append(seconds)
        super().change_visibility(receipt_handle, seconds)


def make_worker(settings: Settings, engine: Engine | None = None, **options: object) -> tuple[Worker, Spy]:
    """A worker whose runner's mock engine is `engine` (default: the settings')."""
    runner = wiring.prompt_runner(settings, {"mock": engine} if engine else None)
    spy = Spy(settings.prompts_queue_url, settings.prompts_dlq_url)
    opts = WorkerOptions(queue_url=settings.prompts_queue_url, wait_seconds=1, **options)  # type: ignore[arg-type]
    return Worker(runner, spy, opts), spy


def statuses(client: TestClient, key: str, ids: list[str]) -> list[str]:
    return [client.get(f"/prompt-svc/prompt/{i}", headers=auth(key)).json()["prompt"]["status"] for i in ids]


async def run_until(
    worker: Worker, condition: object, *, check_every: float = 0.05, limit: float = 60
) -> None:
    """Run the worker; call worker.stop() once `condition()` holds (or the limit passes)."""

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not await asyncio.to_thread(condition) and loop.time() < deadline:  # type: ignore[arg-type]
            await asyncio.sleep(check_every)
        worker.stop()

    watcher = asyncio.create_task(watch())
    await worker.run(handle_signals=False)
    await watcher


@pytest.fixture
def prompts(client: TestClient, keys: dict[str, str]) -> Iterator[list[str]]:
    yield [add(client, keys["alice"], prompt=f"a b c d {i}")["id"] for i in range(12)]


def test_worker_runs_prompts_concurrently_up_to_its_limit(
    client: TestClient, keys: dict[str, str], settings: Settings, gauge: Gauge, prompts: list[str]
) -> None:
    worker, _ = make_worker(settings, gauge, concurrency=4)

    asyncio.run(run_until(worker, lambda: set(statuses(client, keys["alice"], prompts)) == {"completed"}))

    assert set(statuses(client, keys["alice"], prompts)) == {"completed"}
    assert gauge.peak == 4
    assert worker.peak_inflight <= 4
    assert client.get(f"/prompt-svc/prompt/{prompts[0]}", headers=auth(keys["alice"])).json()["answer"] == (
        "[INST]a b c d 0[/INST] "
    )


def test_worker_keeps_the_message_invisible_while_it_works(
    client: TestClient, keys: dict[str, str], settings: Settings, gauge: Gauge
) -> None:
    gauge.chunk_delay = 1.0  # ~6 s in all, visibility 3 s
    prompt = add(client, keys["alice"], prompt="one two three four five six")
    # lease 3 s: renewed every second, so a renewal has 2 s of slack on a busy machine
    worker, spy = make_worker(settings, gauge, concurrency=2, visibility_seconds=3, lease_margin_seconds=0)

    asyncio.run(run_until(worker, lambda: statuses(client, keys["alice"], [prompt["id"]]) == ["completed"]))

    assert statuses(client, keys["alice"], [prompt["id"]]) == ["completed"]
    assert spy.visibility.count(3) >= 2  # extended again and again while generating
    assert worker.received == 1  # so it never came back to be received twice
    assert gauge.started == 1


def test_stop_stops_receiving_and_lets_in_flight_prompts_finish(
    client: TestClient, keys: dict[str, str], settings: Settings, gauge: Gauge, prompts: list[str],
    local_stack: LocalStack,
) -> None:  # fmt: skip
    gauge.chunk_delay = 0.2
    worker, _ = make_worker(settings, gauge, concurrency=2, drain_seconds=30)

    asyncio.run(run_until(worker, lambda: gauge.started >= 2, check_every=0.01))

    states = statuses(client, keys["alice"], prompts)
    assert states.count("completed") == worker.received == 2
    assert states.count("scheduled") == 10
    assert "running" not in states


def test_past_the_drain_time_unfinished_prompts_are_released_uncounted(
    client: TestClient, keys: dict[str, str], settings: Settings, gauge: Gauge, local_stack: LocalStack
) -> None:
    gauge.chunk_delay = 30  # never finishes in time
    ids = [add(client, keys["alice"], prompt="slow words here")["id"] for _ in range(2)]
    worker, spy = make_worker(settings, gauge, concurrency=2, drain_seconds=0.2)

    asyncio.run(run_until(worker, lambda: gauge.started >= 2, check_every=0.01))

    for prompt_id in ids:
        body = client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(keys["alice"])).json()["prompt"]
        assert body["status"] == "scheduled"
        assert body["runCount"] == 0
    assert spy.visibility.count(0) == 2  # both messages made visible again at once
    gauge.chunk_delay = 0
    again, _ = make_worker(settings, gauge, concurrency=2)
    asyncio.run(run_until(again, lambda: set(statuses(client, keys["alice"], ids)) == {"completed"}))
    assert set(statuses(client, keys["alice"], ids)) == {"completed"}


def queue_counts(settings: Settings) -> tuple[int, int]:
    attributes = aws_client("sqs").get_queue_attributes(
        QueueUrl=settings.prompts_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_messages_received_ahead_of_a_slot_go_back_at_once_when_the_worker_stops(
    client: TestClient, keys: dict[str, str], settings: Settings, gauge: Gauge, prompts: list[str]
) -> None:
    gauge.chunk_delay = 0.2
    worker, spy = make_worker(settings, gauge, concurrency=4, drain_seconds=30)  # 4 slots, 1 message ahead

    asyncio.run(run_until(worker, lambda: gauge.started >= 4, check_every=0.01))

    states = statuses(client, keys["alice"], prompts)
    assert states.count("completed") == worker.received == 4
    assert states.count("scheduled") == 8
    assert 0 in spy.visibility  # the message held ahead was given back, not left to time out
    assert queue_counts(settings) == (8, 0)  # every unstarted message is visible again at once


def test_a_message_held_past_half_its_visibility_goes_back_instead_of_starting(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    add(client, keys["alice"])
    worker, spy = make_worker(settings, concurrency=4, visibility_seconds=10)
    raw = aws_client("sqs").receive_message(QueueUrl=settings.prompts_queue_url, VisibilityTimeout=10)[
        "Messages"
    ][0]
    # Received 6 s ago: its visibility ends in 4 s.
    worker._ready.append((raw, time.monotonic() - 6, settings.prompts_queue_url))

    worker._start_ready()

    assert worker.received == 0  # not started: the run's first keep-alive could come too late
    assert spy.visibility == [0]
    assert queue_counts(settings) == (1, 0)
