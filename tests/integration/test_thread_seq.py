"""Seqs from a thread's counter (adapters/thread_event_table.py): writers take their seq from an
atomic counter, then store the event at it, so events can land out of order, and a writer that
stops in between leaves a hole. Readers and the fan-out still see every event once, in seq order.
"""

import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key
from msgspec.structs import replace
from promptsvc import wiring
from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.thread_event_table import DynamoThreadEventLog
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.connections import Connection
from promptsvc.domain.errors import DeadlinePassed
from promptsvc.domain.keys import Role
from promptsvc.domain.names import scoped
from promptsvc.domain.thread_events import EventType, ThreadEvent
from promptsvc.services.fanout import Fanout, Outcome
from promptsvc.settings import Settings

KEY = scoped("alice", "t")
WAIT = 10.0  # seconds a test waits for another thread before it fails


def delta(text: str, thread: str = "t") -> ThreadEvent:
    return ThreadEvent(thread, "alice", "prm_a", EventType.DELTA, now_rfc3339(), text=text)


class Client:
    """A fake Management API: records the frames posted to each connection."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def post(self, connection_id: str, payload: dict[str, Any]) -> None:
        self.frames[connection_id].append(payload)


class StalledWriter(DynamoThreadEventLog):
    """A writer that stops after taking its seq from the counter and before storing its event
    (a slow or crashed consumer), until released; `allocated` is set once it has its seq."""

    def __init__(self, table_name: str) -> None:
        super().__init__(table_name)
        self.allocated = threading.Event()
        self.release = threading.Event()
        self.stored: list[ThreadEvent] = []

    def _put_once(self, item: dict[str, Any]) -> bool:
        if not self.allocated.is_set():  # only the first put stalls
            self.allocated.set()
            assert self.release.wait(WAIT)
        return super()._put_once(item)

    def start(self, event: ThreadEvent) -> threading.Thread:
        thread = threading.Thread(target=lambda: self.stored.append(self.append(event)))
        thread.start()
        assert self.allocated.wait(WAIT)
        return thread

    def finish(self, thread: threading.Thread) -> ThreadEvent:
        self.release.set()
        thread.join(WAIT)
        (stored,) = self.stored
        return stored


class Watched:
    """The log as the fan-out sees it: `missing` is set once a read after the cursor found
    `missing_seq` not stored yet."""

    def __init__(self, log: DynamoThreadEventLog, missing_seq: int) -> None:
        self._log = log
        self._missing_seq = missing_seq
        self.missing = threading.Event()

    def after(self, thread_key: str, after_seq: int, limit: int) -> list[ThreadEvent]:
        events = self._log.after(thread_key, after_seq, limit)
        if after_seq == self._missing_seq - 1 and not events:
            self.missing.set()
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


@pytest.fixture
def log(settings: Settings) -> DynamoThreadEventLog:
    return DynamoThreadEventLog(settings.thread_events_table)


@pytest.fixture
def store(settings: Settings) -> Any:
    return wiring.connection_store(settings)


def subscribe_alice(store: Any, connection_id: str = "conn-a") -> None:
    store.subscribe(Connection(connection_id, "alice", Role.USER, 2_000_000_000), KEY, 0)


def items_of(table_name: str, thread_key: str) -> list[dict[str, Any]]:
    """Every item of the thread's partition (the counter included), read consistently."""
    return dynamodb_table(table_name).query(
        KeyConditionExpression=Key("threadKey").eq(thread_key), ConsistentRead=True
    )["Items"]


def test_an_event_stored_before_an_earlier_seq_is_delivered_in_order_once_that_seq_lands(
    settings: Settings, store: Any, log: DynamoThreadEventLog
) -> None:
    client = Client()
    watched = Watched(log, missing_seq=2)
    fanout = Fanout(store, client, watched)
    subscribe_alice(store)
    one = log.append(delta("one"))
    assert fanout.publish(one).outcomes == {"conn-a": Outcome.DELIVERED}
    writer = StalledWriter(settings.thread_events_table)
    running = writer.start(delta("two"))  # takes seq 2, not stored yet

    three = log.append(delta("three"))  # seq 3, stored before seq 2

    assert three.seq == 3
    assert [e.seq for e in log.after(KEY, 0, 10)] == [1]  # the run stops before the seq in flight
    outcomes: list[dict[str, Outcome]] = []
    publishing = threading.Thread(target=lambda: outcomes.append(fanout.publish(three).outcomes))
    publishing.start()  # the stream's record of 3 comes first
    assert watched.missing.wait(WAIT)  # the fan-out looked for 2 and waits for it
    assert [f["seq"] for f in client.frames["conn-a"]] == [1]  # 3 does not overtake it
    assert store.subscription(KEY, "conn-a").last_seq == 1
    two = writer.finish(running)
    publishing.join(WAIT)
    assert two.seq == 2
    assert outcomes == [{"conn-a": Outcome.DELIVERED}]  # 2, then 3
    assert fanout.publish(two).outcomes == {"conn-a": Outcome.DUPLICATE}  # the record of 2, later
    assert [(f["seq"], f["text"]) for f in client.frames["conn-a"]] == [(1, "one"), (2, "two"), (3, "three")]
    assert [(e.seq, e.text) for e in log.after(KEY, 0, 10)] == [(1, "one"), (2, "two"), (3, "three")]


def test_a_hole_whose_writer_is_gone_is_filled_with_a_gap_and_its_late_writer_gets_a_new_seq(
    settings: Settings, store: Any, log: DynamoThreadEventLog
) -> None:
    table = settings.thread_events_table
    reader = DynamoThreadEventLog(table, hole_seconds=0)  # every hole is old enough to fill
    client = Client()
    fanout = Fanout(store, client, reader, claim_wait_seconds=0)
    subscribe_alice(store)
    log.append(delta("one"))
    writer = StalledWriter(table)
    running = writer.start(delta("two"))  # takes seq 2 and stops: the counter moved, no item
    log.append(delta("three"))
    assert [e.seq for e in log.after(KEY, 0, 10)] == [1]  # a fresh hole is waited for

    events = reader.after(KEY, 0, 10)

    assert [(e.seq, e.type, e.text) for e in events] == [
        (1, EventType.DELTA, "one"),
        (2, EventType.GAP, None),
        (3, EventType.DELTA, "three"),
    ]
    gap = events[1]
    assert (gap.threadId, gap.userId, gap.thread_key) == ("t", "alice", KEY)
    assert [e.seq for e in log.after(KEY, 0, 10)] == [1, 2, 3]  # the gap is stored: every reader sees it
    assert fanout.replay(store.subscription(KEY, "conn-a")).last_seq == 3
    assert [(f["seq"], f["type"]) for f in client.frames["conn-a"]] == [
        (1, "delta"),
        (2, "gap"),
        (3, "delta"),
    ]

    late = writer.finish(running)  # seq 2 is taken by the gap: the writer allocates another

    assert (late.seq, late.text) == (4, "two")
    assert fanout.publish(late).outcomes == {"conn-a": Outcome.DELIVERED}
    assert [(e.seq, e.type, e.text) for e in log.after(KEY, 0, 10)] == [
        (1, EventType.DELTA, "one"),
        (2, EventType.GAP, None),
        (3, EventType.DELTA, "three"),
        (4, EventType.DELTA, "two"),
    ]
    assert [i.get("text") for i in items_of(table, KEY)].count("two") == 1  # stored once
    assert [f["seq"] for f in client.frames["conn-a"]] == [1, 2, 3, 4]
    assert log.append(delta("five")).seq == 5


def test_fifty_concurrent_writers_to_one_thread_get_gapless_seqs_and_each_event_is_stored_once(
    settings: Settings,
) -> None:
    table = settings.thread_events_table
    writers, per_writer = 50, 2
    start = threading.Barrier(writers)
    stored: list[ThreadEvent] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        log = DynamoThreadEventLog(table)  # one per writer, as separate consumers have
        try:
            start.wait(WAIT)
            for i in range(per_writer):
                event = log.append(delta(f"w{n}-{i}"))
                with lock:
                    stored.append(event)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    total = writers * per_writer
    expected_texts = sorted(f"w{n}-{i}" for n in range(writers) for i in range(per_writer))
    assert errors == []
    assert sorted(e.seq for e in stored) == list(range(1, total + 1))
    read = DynamoThreadEventLog(table).after(KEY, 0, total + 10)
    assert [e.seq for e in read] == list(range(1, total + 1))
    assert all(e.type is EventType.DELTA for e in read)  # no hole was filled
    assert sorted(e.text or "" for e in read) == expected_texts
    assert {e.seq: e.text for e in read} == {e.seq: e.text for e in stored}
    items = items_of(table, KEY)
    assert len(items) == total + 1  # the events and the counter, nothing else
    (counter,) = [i for i in items if int(i["seq"]) == 0]
    assert int(counter["last"]) == total


def test_a_live_subscribe_while_an_earlier_seq_is_in_flight_misses_none_of_the_events_stored_after_it(
    settings: Settings, store: Any, log: DynamoThreadEventLog
) -> None:
    """A live-only subscription starts after the gapless run, not after the highest stored seq: an
    event whose seq was taken before the subscribe but stored after it still reaches it."""
    client = Client()
    fanout = Fanout(store, client, log, claim_wait_seconds=0)
    service = wiring.subscription_service(settings, poster=client)
    store.put_connection(Connection("conn-a", "alice", Role.USER, 2_000_000_000))
    log.append(delta("one"))
    writer = StalledWriter(settings.thread_events_table)
    running = writer.start(delta("two"))  # seq 2 taken, not stored yet
    three = log.append(delta("three"))

    service.subscribe("conn-a", "t", None)
    two = writer.finish(running)  # stored after the subscribe
    for event in (three, two, three):  # the stream: 3, then 2, then the retry of 3 if it failed
        fanout.publish(event)

    subscribed, *events = client.frames["conn-a"]
    assert subscribed["type"] == "subscribed" and subscribed["after"] < two.seq
    assert [e["seq"] for e in events] == list(range(subscribed["after"] + 1, 4))
    assert store.subscription(KEY, "conn-a").last_seq == 3


def test_resuming_inside_history_the_ttl_expired_skips_it_without_writing_gaps(settings: Settings) -> None:
    """A client resuming with an old `after` whose following events the TTL deleted gets the events
    still stored, numbered as they were: the expired seqs are history, not holes to fill (filling
    them would write one `gap` per expired event)."""
    log = DynamoThreadEventLog(settings.thread_events_table, ttl_seconds=86_400)
    two_days_ago = now_rfc3339(datetime.now(UTC) - timedelta(days=2))
    for i in range(1, 9):
        log.append(replace(delta(f"d{i}"), createdAt=two_days_ago if i <= 6 else now_rfc3339()))
    table = dynamodb_table(settings.thread_events_table)
    for seq in (2, 3, 4, 5):
        table.delete_item(Key={"threadKey": KEY, "seq": seq})  # what the TTL does, eventually

    resumed = log.after(KEY, 1, 100)

    assert [(e.seq, e.text) for e in resumed] == [(6, "d6"), (7, "d7"), (8, "d8")]
    stored = table.query(KeyConditionExpression=Key("threadKey").eq(KEY))["Items"]
    assert not [item for item in stored if item.get("type") == "gap"]


def test_no_seq_is_taken_past_the_writers_deadline(settings: Settings) -> None:
    log = DynamoThreadEventLog(settings.thread_events_table)
    log.append(delta("in time"), deadline=lambda: time.time() + 60)

    with pytest.raises(DeadlinePassed):
        log.append(delta("too late"), deadline=lambda: time.time() - 1)
    after = log.append(delta("no deadline"))

    assert [(e.seq, e.text) for e in log.after(KEY, 0, 10)] == [(1, "in time"), (2, "no deadline")]
    assert after.seq == 2  # no seq was spent on the late one: no hole for readers to fill
