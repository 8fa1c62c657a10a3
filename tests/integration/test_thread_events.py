"""Thread events: what the consumer writes as it works, and GET /prompt-svc/thread/{id}/events."""

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from msgspec.structs import replace
from promptsvc import wiring
from promptsvc.adapters.clients import client as aws_client
from promptsvc.adapters.thread_event_table import DynamoThreadEventLog
from promptsvc.consumer.runner import Outcome, PromptRunner
from promptsvc.consumer.settle import ReceivedMessage, Settlement, settle
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.thread_events import CLOSE_GRACE_SECONDS, EventType, RemovalCheck, ThreadEvent
from promptsvc.engines import mock
from promptsvc.engines.base import Delta, Engine, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.registry import EngineRegistry
from promptsvc.settings import Settings
from promptsvc_dev.sqs_source import SqsEventSource

from tests.conftest import LoadConsumer, auth
from tests.integration.helpers import EngineOf, add


def events(client: TestClient, key: str, thread: str, after: int = 0, owner: str | None = None) -> list[dict]:
    params: dict[str, object] = {"after": after, **({"userId": owner} if owner else {})}
    response = client.get(f"/prompt-svc/thread/{thread}/events", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["events"]


def streaming(tokens: list[str], delay: float = 0.0) -> dict[str, Engine]:
    """Engines by name: the mock engine streams `tokens`, whatever the prompt."""

    async def stream(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        for token in tokens:
            if delay:
                await asyncio.sleep(delay)
            yield Delta(token)
        yield Finish("stop", completion_tokens=len(tokens))

    return {"mock": EngineOf(stream)}


def test_a_run_writes_scheduled_running_deltas_and_completed_in_seq_order(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer
) -> None:
    consumer = load_consumer(streaming([f"w{i} " for i in range(30)], delay=0.01))
    prompt = add(client, keys["alice"], threadId="talk")

    consumer.drain()

    seen = events(client, keys["alice"], "talk")
    answer = client.get(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"])).json()["answer"]
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    statuses = [e["status"] for e in seen if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "completed"]
    assert (
        seen[0]["status"] == "scheduled"
        and seen[1]["status"] == "running"
        and seen[-1]["status"] == "completed"
    )
    deltas = [e for e in seen if e["type"] == "delta"]
    assert "".join(d["text"] for d in deltas) == answer == "".join(f"w{i} " for i in range(30))
    assert deltas[0]["text"].startswith("w0 ")  # (that it is not held back: tests/unit/test_run_events.py)
    assert len(deltas) < 30  # later tokens are coalesced
    assert all(e["promptId"] == prompt["id"] and e["threadId"] == "talk" and e["createdAt"] for e in seen)


def test_deltas_are_written_at_most_about_four_a_second(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer, settings: Settings
) -> None:
    span: list[float] = []

    async def stream(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        for _ in range(100):
            await asyncio.sleep(0.01)
            span.append(time.monotonic())
            yield Delta("t ")
        yield Finish("stop", completion_tokens=100)

    consumer = load_consumer({"mock": EngineOf(stream)})
    add(client, keys["alice"], threadId="fast")

    consumer.drain()

    deltas = [e for e in events(client, keys["alice"], "fast") if e["type"] == "delta"]
    generation = span[-1] - span[0]  # however long the machine took: the bound scales with it
    assert "".join(d["text"] for d in deltas) == "t " * 100
    assert len(deltas) < 100  # coalesced
    assert (
        len(deltas) <= generation / settings.delta_interval_seconds + 2
    )  # the first, one per interval, the tail


def test_after_returns_exactly_the_events_that_follow(
    client: TestClient, keys: dict[str, str], consumer: SqsEventSource
) -> None:
    add(client, keys["alice"], threadId="replay")
    consumer.drain()
    everything = events(client, keys["alice"], "replay")

    tail = events(client, keys["alice"], "replay", after=2)

    assert tail == everything[2:]
    assert events(client, keys["alice"], "replay", after=everything[-1]["seq"]) == []


def test_a_retry_starts_with_a_reset(client: TestClient, keys: dict[str, str], settings: Settings) -> None:
    prompt = add(client, keys["alice"], threadId="retry")
    attempts = iter([EngineError("503 busy", retryable=True), None])

    async def flaky(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        yield Delta("partial ")
        failure = next(attempts)
        if failure:
            raise failure
        yield Delta("whole answer")
        yield Finish()

    runner = wiring.prompt_runner(settings, {"mock": EngineOf(flaky)})

    asyncio.run(runner.run(prompt["id"], user_id="alice"))
    asyncio.run(runner.run(prompt["id"], user_id="alice"))

    stored = events(client, keys["alice"], "retry")
    kinds = [(e["type"], e.get("status")) for e in stored]
    kinds = [kind for i, kind in enumerate(kinds) if kind != ("delta", None) or kinds[i - 1] != kind]
    assert kinds == [
        ("status", "scheduled"), ("status", "running"), ("delta", None), ("status", "errored"),
        ("reset", None), ("status", "running"), ("delta", None), ("status", "completed"),
    ]  # fmt: skip
    errored = next(e for e in stored if e.get("status") == "errored")
    assert errored["error"] == "503 busy"
    retried = [e["text"] for e in stored[stored.index(errored) :] if e["type"] == "delta"]
    assert "".join(retried) == "partial whole answer"  # however the deltas were coalesced


def test_a_cancel_mid_stream_ends_with_canceled(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer
) -> None:
    prompt = add(client, keys["alice"], threadId="stop")

    async def slow(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        for i in range(100):
            if i == 3:
                client.post(f"/prompt-svc/prompt/{prompt['id']}/cancel", headers=auth(keys["alice"]))
            await asyncio.sleep(0.05)
            yield Delta(f"{i} ")
        yield Finish()

    consumer = load_consumer({"mock": EngineOf(slow)})

    consumer.drain()

    seen = events(client, keys["alice"], "stop")
    assert seen[-1]["type"] == "status" and seen[-1]["status"] == "canceled"
    assert [e.get("status") for e in seen if e["type"] == "status"] == ["scheduled", "running", "canceled"]
    answer = client.get(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"])).json()["answer"]
    assert "".join(e["text"] for e in seen if e["type"] == "delta") == answer


def test_removing_a_running_prompt_stops_its_engine_and_ends_its_events(
    client: TestClient, keys: dict[str, str], load_consumer: LoadConsumer
) -> None:
    """A subscriber of a removed prompt's thread is not left waiting at `running`."""
    prompt = add(client, keys["alice"], threadId="gone")
    chunks: list[int] = []

    async def slow(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        for i in range(100):
            if i == 3:
                client.delete(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"]))
            await asyncio.sleep(0.05)
            chunks.append(i)
            yield Delta(f"{i} ")
        yield Finish()

    consumer = load_consumer({"mock": EngineOf(slow)})

    consumer.drain()

    seen = events(client, keys["alice"], "gone")
    assert [e.get("status") for e in seen if e["type"] == "status"] == ["scheduled", "running", "removed"]
    assert seen[-1]["type"] == "status"
    assert len(chunks) < 100  # the engine was stopped, not run to its end
    assert client.get(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"])).status_code == 404


def test_removing_a_waiting_prompt_writes_its_removed_event(client: TestClient, keys: dict[str, str]) -> None:
    prompt = add(client, keys["alice"], threadId="never-ran")
    client.delete(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"]))

    seen = events(client, keys["alice"], "never-ran")
    assert [(e["type"], e["status"], e["promptId"]) for e in seen] == [("status", "removed", prompt["id"])]


def test_canceling_a_waiting_prompt_writes_its_canceled_event(
    client: TestClient, keys: dict[str, str]
) -> None:
    prompt = add(client, keys["alice"], threadId="never")

    client.post(f"/prompt-svc/prompt/{prompt['id']}/cancel", headers=auth(keys["alice"]))

    seen = events(client, keys["alice"], "never")
    assert [(e["type"], e["status"], e["promptId"]) for e in seen] == [("status", "canceled", prompt["id"])]


def test_others_see_nothing_of_a_users_thread_and_admins_see_it_by_naming_the_user(
    client: TestClient, keys: dict[str, str], consumer: SqsEventSource
) -> None:
    add(client, keys["alice"], threadId="private")
    consumer.drain()

    assert events(client, keys["bob"], "private") == []  # bob's own thread of that name: empty
    assert events(client, keys["admin"], "private") == []  # the admin's own, too
    alices = events(client, keys["alice"], "private")
    assert events(client, keys["admin"], "private", owner="alice") == alices and alices
    peek = client.get("/prompt-svc/thread/private/events?userId=alice", headers=auth(keys["bob"]))
    assert peek.json()["events"] == []  # a user naming another user learns nothing


@pytest.mark.parametrize(
    ("params", "named"), [({"after": -1}, "after"), ({"limit": 0}, "limit"), ({"after": "x"}, "after")]
)
def test_bad_event_queries_are_400(
    client: TestClient, keys: dict[str, str], params: dict, named: str
) -> None:
    response = client.get("/prompt-svc/thread/t/events", params=params, headers=auth(keys["alice"]))

    assert response.status_code == 400
    assert named in response.json()["error"]


def test_concurrent_writers_share_one_gapless_seq_per_thread(settings: Settings) -> None:
    """Two consumers (two logs) writing to one thread take their seqs from its counter."""
    logs = [
        DynamoThreadEventLog(settings.thread_events_table),
        DynamoThreadEventLog(settings.thread_events_table),
    ]
    prompt = Prompt(id="p", prompt="x", modelId="m", template="", threadId="shared", userId="alice")
    stored: list[int] = []
    lock = threading.Lock()
    now = now_rfc3339()

    def write(log: DynamoThreadEventLog, count: int) -> None:
        for i in range(count):
            event = log.append(ThreadEvent("shared", "alice", prompt.id, EventType.DELTA, now, text=str(i)))
            with lock:
                stored.append(event.seq)

    threads = [threading.Thread(target=write, args=(log, 25)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(stored) == list(range(1, 51))
    assert [e.seq for e in logs[0].after("alice#shared", 0, 100)] == list(range(1, 51))


def killed_after_first_delta() -> dict[str, Engine]:
    """Engines by name: the mock engine's process dies once its first delta is stored."""

    async def dies(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        yield Delta("half ")
        await asyncio.sleep(0.3)  # the first delta is stored
        raise mock.ConsumerKilled("the process died")

    return {"mock": EngineOf(dies)}


def removal_check(settings: Settings, wait: float) -> ReceivedMessage:
    """The message a removal queued, once SQS delivers it (it is delayed to the lease's end)."""
    sqs = aws_client("sqs")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for raw in sqs.receive_message(QueueUrl=settings.prompts_queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            if "removal" in raw["Body"]:
                return ReceivedMessage(raw["MessageId"], raw["ReceiptHandle"], raw["Body"])
        time.sleep(0.2)
    raise AssertionError("no removal check was delivered")


def test_a_prompt_removed_while_its_consumer_is_dead_still_ends_with_removed(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """Its consumer died holding the lease, so it will never notice the removal; the check the
    removal queued for the lease's end writes `removed` instead."""
    prompt = add(client, keys["alice"], threadId="orphan")
    runner = wiring.prompt_runner(settings, killed_after_first_delta())
    with pytest.raises(mock.ConsumerKilled):
        asyncio.run(runner.run(prompt["id"], user_id="alice", lease_seconds=2))

    removed = client.delete(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"]))
    before = events(client, keys["alice"], "orphan")
    message = removal_check(settings, wait=10)
    settled = asyncio.run(settle(runner, wiring.queue_messages(settings), message))

    assert removed.status_code < 300
    assert [e.get("status") for e in before] == ["scheduled", "running", None]  # stuck at running
    seen = events(client, keys["alice"], "orphan")
    assert settled is Settlement.DONE
    assert [e.get("status") for e in seen] == ["scheduled", "running", None, "removed"]
    assert seen[-1]["promptId"] == prompt["id"]


def test_a_removal_check_before_the_lease_ends_waits_and_after_a_live_consumer_writes_nothing(
    client: TestClient, keys: dict[str, str], settings: Settings, load_consumer: LoadConsumer
) -> None:
    consumer = load_consumer(streaming([f"{i} " for i in range(100)], delay=0.05))
    prompt = add(client, keys["alice"], threadId="watched")
    runner = wiring.prompt_runner(settings)
    check = RemovalCheck("alice", prompt["id"], "watched", after_seq=0, lease_until_ms=0)

    def remove_soon() -> None:
        time.sleep(1.0)
        client.delete(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"]))

    remover = threading.Thread(target=remove_soon)
    remover.start()
    consumer.drain()  # the live consumer notices the removal and writes `removed` itself
    remover.join()
    early = asyncio.run(runner.close_removed(replace(check, lease_until_ms=int(time.time() * 1000) + 60_000)))
    late = asyncio.run(runner.close_removed(check))

    assert early.outcome is Outcome.BUSY and 59 <= early.retry_after <= 61
    assert late.outcome is Outcome.SKIPPED
    statuses = [e.get("status") for e in events(client, keys["alice"], "watched") if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "removed"]  # one closing event, the consumer's


class SlowDeltaLog(DynamoThreadEventLog):
    """The thread events table, with each write of deltas held up `hold` seconds."""

    def __init__(self, table_name: str, hold: float) -> None:
        super().__init__(table_name)
        self.hold = hold

    def append_many(self, events: Sequence[ThreadEvent], **options: Any) -> list[ThreadEvent]:
        if any(event.type is EventType.DELTA for event in events):
            time.sleep(self.hold)
        return super().append_many(events, **options)


def test_a_run_whose_events_land_past_its_lease_fence_neither_stores_them_nor_completes(
    client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write held up past a lease that could not be renewed (a throttled table, a starved
    thread) would land among the events of the run that reclaims the prompt: it is not made, and
    the run does not complete with an answer its thread never showed. The next run starts the
    answer over."""
    prompt = add(client, keys["alice"], threadId="fenced")
    log = SlowDeltaLog(settings.thread_events_table, hold=4)  # past the 3 s lease's fence
    repository = wiring.prompt_store(settings)
    real_renew = repository.renew_lease

    def throttled(prompt: Prompt, lease_until_ms: int) -> bool:
        raise ClientError({"Error": {"Code": "ThrottlingException"}}, "UpdateItem")

    monkeypatch.setattr(repository, "renew_lease", throttled)
    engines = EngineRegistry(settings.engines, streaming(["whole ", "answer"]))
    fenced = PromptRunner(repository, wiring.catalog_source(settings).get, engines, events=log, cancel_poll=5)

    result = asyncio.run(fenced.run(prompt["id"], user_id="alice", lease_seconds=3))
    time.sleep(1)  # the lease is over (the run took the 4 s its delta was held up)
    log.hold = 0
    monkeypatch.setattr(repository, "renew_lease", real_renew)
    again = asyncio.run(fenced.run(prompt["id"], user_id="alice"))

    assert result.outcome is Outcome.BUSY
    assert again.outcome is Outcome.COMPLETED
    seen = events(client, keys["alice"], "fenced")
    kinds = [(e["type"], e.get("status") or e.get("text")) for e in seen]
    assert kinds[:2] == [("status", "scheduled"), ("status", "running")]
    assert ("reset", None) in kinds and kinds[-1] == ("status", "completed")
    before_reset = kinds[: kinds.index(("reset", None))]
    assert not [kind for kind in before_reset if kind[0] == "delta"]  # the late deltas were never stored
    body = client.get(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"])).json()
    assert body["answer"] == "whole answer" and body["prompt"]["runCount"] == 2


def test_a_run_keeps_its_lease_while_its_last_deltas_are_written(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """The lease is renewed for as long as the run lasts, not only while the engine streams: slow
    writes after the generation do not cost the run its lease."""
    prompt = add(client, keys["alice"], threadId="kept")
    log = SlowDeltaLog(settings.thread_events_table, hold=5)  # longer than the whole 4 s lease
    engines = EngineRegistry(settings.engines, streaming(["whole ", "answer"]))
    repository = wiring.prompt_store(settings)
    runner = PromptRunner(repository, wiring.catalog_source(settings).get, engines, events=log, cancel_poll=5)

    result = asyncio.run(runner.run(prompt["id"], user_id="alice", lease_seconds=4))

    assert result.outcome is Outcome.COMPLETED
    seen = events(client, keys["alice"], "kept")
    assert "".join(e["text"] for e in seen if e["type"] == "delta") == "whole answer"
    assert seen[-1]["status"] == "completed"


class DiesBeforeClosing(DynamoThreadEventLog):
    """The thread events table, in a process that dies as it is about to store a closing event."""

    def append_many(self, events: Sequence[ThreadEvent], **options: Any) -> list[ThreadEvent]:
        if any(event.type is EventType.STATUS and event.status == "completed" for event in events):
            raise mock.ConsumerKilled("died between completing the prompt and its closing event")
        return super().append_many(events, **options)


def die_between_finish_and_closing(settings: Settings, engines: dict[str, Engine], prompt_id: str) -> None:
    """Run alice's prompt to its finish with a consumer killed before its closing event is stored."""
    dying = PromptRunner(
        wiring.prompt_store(settings),
        wiring.catalog_source(settings).get,
        EngineRegistry(settings.engines, engines),
        events=DiesBeforeClosing(settings.thread_events_table),
    )
    with pytest.raises(mock.ConsumerKilled):
        asyncio.run(dying.run(prompt_id, user_id="alice"))


def test_a_consumer_that_dies_between_completing_and_its_closing_event_is_repaired_once(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """The crash between the two writes of a finish (the prompt's status, then its thread's closing
    event): the redelivered message finds the prompt completed without the event and, once the
    finishing consumer cannot still be writing it, stores it; never a second one."""
    prompt = add(client, keys["alice"], threadId="half-closed")
    engines = streaming(["the ", "answer"])
    repository = wiring.prompt_store(settings)
    catalog = wiring.catalog_source(settings).get
    die_between_finish_and_closing(settings, engines, prompt["id"])
    log = DynamoThreadEventLog(settings.thread_events_table)
    clock = [time.time()]
    redelivered = PromptRunner(
        repository, catalog, EngineRegistry(settings.engines, engines), events=log, clock=lambda: clock[0]
    )

    at_once = asyncio.run(redelivered.run(prompt["id"], user_id="alice"))
    clock[0] += CLOSE_GRACE_SECONDS + 1  # past the grace the finishing consumer has to write it
    later = asyncio.run(redelivered.run(prompt["id"], user_id="alice"))
    again = asyncio.run(redelivered.run(prompt["id"], user_id="alice"))

    assert at_once.outcome is Outcome.BUSY and 1 <= at_once.retry_after <= CLOSE_GRACE_SECONDS
    assert later.outcome is Outcome.SKIPPED and again.outcome is Outcome.SKIPPED
    body = client.get(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"])).json()
    assert body["prompt"]["status"] == "completed" and body["prompt"]["runCount"] == 1
    statuses = [
        e.get("status") for e in events(client, keys["alice"], "half-closed") if e["type"] == "status"
    ]
    assert statuses == ["scheduled", "running", "completed"]  # repaired, exactly once


class HoldsErrored(DynamoThreadEventLog):
    """The thread events table, where a run's `errored` event is held back (a slow or throttled
    write): the run stores the prompt's status, then its event lands later, here when `release`d."""

    def __init__(self, table_name: str) -> None:
        super().__init__(table_name)
        self.held: list[ThreadEvent] = []

    def append_many(self, events: Sequence[ThreadEvent], **options: Any) -> list[ThreadEvent]:
        if any(event.type is EventType.STATUS and event.status == "errored" for event in events):
            self.held = self.held or list(events)
            raise mock.ConsumerKilled("the errored event is still on its way")
        return super().append_many(events, **options)

    def release(self) -> None:
        DynamoThreadEventLog.append_many(self, self.held)


def test_a_prompt_removed_before_its_failed_runs_errored_event_lands_still_ends_with_removed(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """A failed run stores `errored` on the prompt, then writes the thread's `errored` event. A
    removal in between must not write `removed` before that event: the thread would end with
    `errored`, and a subscriber wait for a retry that never comes. The removal leaves its check
    for the end of the run's closing write instead, which writes `removed` last."""
    prompt = add(client, keys["alice"], threadId="late", maxRetries=3)

    async def fails(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        raise EngineError("the engine is down", retryable=True)
        yield Finish()  # an async generator

    log = HoldsErrored(settings.thread_events_table)
    runner = PromptRunner(
        wiring.prompt_store(settings),
        wiring.catalog_source(settings).get,
        EngineRegistry(settings.engines, {"mock": EngineOf(fails)}),
        events=log,
    )
    with contextlib.suppress(mock.ConsumerKilled):
        asyncio.run(runner.run(prompt["id"], user_id="alice"))
    before = [e.get("status") for e in events(client, keys["alice"], "late")]

    removed = client.delete(f"/prompt-svc/prompt/{prompt['id']}", headers=auth(keys["alice"]))
    right_after = [e.get("status") for e in events(client, keys["alice"], "late")]
    log.release()  # the run's `errored` event lands after the removal
    delayed = aws_client("sqs").get_queue_attributes(
        QueueUrl=settings.prompts_queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]["ApproximateNumberOfMessagesDelayed"]
    # What the check does once delivered (the removal delayed it past the run's closing write).
    check = RemovalCheck("alice", prompt["id"], "late", after_seq=2, lease_until_ms=0)
    closed = asyncio.run(wiring.prompt_runner(settings).close_removed(check))

    assert removed.status_code < 300
    assert before == ["scheduled", "running"] and log.held
    assert right_after == before  # no `removed` yet: the run's event may still come
    assert int(delayed) >= 1  # the removal's check, due once the run can write no more
    assert closed.outcome is Outcome.SKIPPED
    assert [e.get("status") for e in events(client, keys["alice"], "late")] == [
        "scheduled",
        "running",
        "errored",
        "removed",
    ]
