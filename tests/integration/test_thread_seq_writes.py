"""Fewer writes per event (adapters/thread_event_table.py): a block of seqs for events stored
together, and a writer's events put right after its own last seq without the counter. Each way
keeps the thread's seqs gapless, every event stored once, and the counter usable by the others."""

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from promptsvc.adapters import clients
from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.thread_event_table import DynamoThreadEventLog
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.names import scoped
from promptsvc.domain.thread_events import EventType, PartlyStored, ThreadEvent
from promptsvc.settings import Settings

KEY = scoped("alice", "t")


def delta(text: str) -> ThreadEvent:
    return ThreadEvent("t", "alice", "prm_a", EventType.DELTA, now_rfc3339(), text=text)


@pytest.fixture
def log(settings: Settings) -> DynamoThreadEventLog:
    return DynamoThreadEventLog(settings.thread_events_table)


@pytest.fixture
def calls() -> Iterator[Counter[str]]:
    counter: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counter[model.name] += 1

    clients.register_hook("before-call.dynamodb", count)
    yield counter
    clients.clear_hooks()


def stored(log: DynamoThreadEventLog) -> list[tuple[int, str | None]]:
    return [(e.seq, e.text) for e in log.after(KEY, 0, 1000)]


def counter_of(settings: Settings) -> int:
    item = dynamodb_table(settings.thread_events_table).get_item(
        Key={"threadKey": KEY, "seq": 0}, ConsistentRead=True
    )["Item"]
    return int(item["last"])


def test_events_stored_together_take_one_block_of_seqs(
    log: DynamoThreadEventLog, calls: Counter[str]
) -> None:
    log.append(delta("zero"))
    calls.clear()

    written = log.append_many([delta("a"), delta("b"), delta("c")])

    assert [e.seq for e in written] == [2, 3, 4]
    assert calls == {"UpdateItem": 1, "PutItem": 3}  # not 3 + 3
    assert stored(log) == [(1, "zero"), (2, "a"), (3, "b"), (4, "c")]


def test_a_writers_events_go_right_after_its_own_seq_with_one_write_each(
    log: DynamoThreadEventLog, settings: Settings, calls: Counter[str]
) -> None:
    first = log.append_many([delta("a")])
    calls.clear()

    second = log.append_many([delta("b")], after=first[-1].seq)
    third = log.append_many([delta("c"), delta("d")], after=second[-1].seq)

    assert [e.seq for e in second + third] == [2, 3, 4]
    assert calls == {"PutItem": 3}
    assert counter_of(settings) == 1  # left behind, until the writer's final write
    calls.clear()
    final = log.append_many([delta("end")], after=4, final=True)
    assert calls == {"UpdateItem": 1, "PutItem": 1}
    assert final[0].seq == 5 and counter_of(settings) == 5
    assert log.append(delta("next")).seq == 6  # the counter is right again: no catching up
    assert stored(log) == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "end"), (6, "next")]


def test_a_counted_writer_behind_such_a_writer_catches_up_and_stores_each_event_once(
    log: DynamoThreadEventLog,
) -> None:
    first = log.append_many([delta("a")])
    log.append_many([delta("b"), delta("c")], after=first[-1].seq)  # seqs 2, 3; the counter says 1

    other = DynamoThreadEventLog(log._table_name).append(delta("other"))  # counted: 2 is taken

    assert other.seq == 4
    assert stored(log) == [(1, "a"), (2, "b"), (3, "c"), (4, "other")]
    assert log.append(delta("then")).seq == 5


def test_a_counted_block_that_meets_uncounted_seqs_passes_over_them_and_leaves_no_hole(
    log: DynamoThreadEventLog,
) -> None:
    first = log.append_many([delta("a")])
    log.append_many([delta("b")], after=first[-1].seq)  # seq 2; the counter says 1
    other = DynamoThreadEventLog(log._table_name)

    counted = other.append_many([delta("x"), delta("y")])  # its block is 2-3: 2 is taken
    mine = log.append_many([delta("c")], after=2)  # 3 is taken now: the counter's way

    assert [e.seq for e in counted] == [3, 4] and [e.seq for e in mine] == [5]
    assert stored(log) == [(1, "a"), (2, "b"), (3, "x"), (4, "y"), (5, "c")]  # no gap anywhere


def test_a_writer_that_finds_its_next_seq_taken_goes_the_counters_way(log: DynamoThreadEventLog) -> None:
    mine = log.append_many([delta("mine")])
    DynamoThreadEventLog(log._table_name).append(delta("theirs"))  # seq 2

    written = log.append_many([delta("a"), delta("b")], after=mine[-1].seq)

    assert [e.seq for e in written] == [3, 4]
    assert stored(log) == [(1, "mine"), (2, "theirs"), (3, "a"), (4, "b")]


def test_a_final_write_after_someone_counted_past_it_takes_counted_seqs(
    log: DynamoThreadEventLog, settings: Settings
) -> None:
    mine = log.append_many([delta("mine")])
    DynamoThreadEventLog(log._table_name).append(delta("theirs"))

    final = log.append_many([delta("end")], after=mine[-1].seq, final=True)

    assert final[0].seq == 3 and counter_of(settings) == 3
    assert stored(log) == [(1, "mine"), (2, "theirs"), (3, "end")]


def test_writers_after_their_own_seqs_and_counted_writers_at_once_share_one_gapless_sequence(
    log: DynamoThreadEventLog, settings: Settings
) -> None:
    """Two runs streaming without the counter while two others count, on one thread: every event
    once, seqs 1..n with no hole (so no gap was filled), in each writer's own order."""
    per_writer, results = 20, {}
    start = threading.Barrier(4)

    def streaming(name: str) -> None:
        writer = DynamoThreadEventLog(settings.thread_events_table)
        start.wait(10)
        last = writer.append_many([delta(f"{name}-0")])[-1].seq
        for i in range(1, per_writer):
            final = i == per_writer - 1
            last = writer.append_many([delta(f"{name}-{i}")], after=last, final=final)[-1].seq
        results[name] = True

    def counted(name: str) -> None:
        writer = DynamoThreadEventLog(settings.thread_events_table)
        start.wait(10)
        for i in range(per_writer):
            writer.append(delta(f"{name}-{i}"))
        results[name] = True

    threads = [threading.Thread(target=streaming, args=(f"s{n}",)) for n in range(2)]
    threads += [threading.Thread(target=counted, args=(f"c{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(results) == 4
    events = log.after(KEY, 0, 1000)
    assert [e.seq for e in events] == list(range(1, 4 * per_writer + 1))
    assert all(e.type is EventType.DELTA for e in events)  # no hole was ever filled
    texts = [e.text or "" for e in events]
    assert sorted(texts) == sorted(f"{w}-{i}" for w in ("s0", "s1", "c0", "c1") for i in range(per_writer))
    for writer in ("s0", "s1", "c0", "c1"):
        own = [int(t.split("-")[1]) for t in texts if t.startswith(f"{writer}-")]
        assert own == sorted(own)  # each writer's events in its own order
    items = dynamodb_table(settings.thread_events_table).query(
        KeyConditionExpression=Key("threadKey").eq(KEY), ConsistentRead=True
    )["Items"]
    assert len(items) == 4 * per_writer + 1  # the events and the counter, nothing else
    assert log.append(delta("after all")).seq == 4 * per_writer + 1  # the counter is usable


def test_a_write_that_fails_part_way_says_which_events_were_stored(
    log: DynamoThreadEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    puts = {"n": 0}
    real_put = log._put_once

    def put_once(item: dict[str, Any]) -> bool:
        puts["n"] += 1
        if puts["n"] == 2:
            raise ClientError({"Error": {"Code": "InternalServerError"}}, "PutItem")
        return real_put(item)

    monkeypatch.setattr(log, "_put_once", put_once)

    with pytest.raises(PartlyStored) as failed:
        log.append_many([delta("a"), delta("b"), delta("c")])

    assert [(e.seq, e.text) for e in failed.value.stored] == [(1, "a")]
    assert isinstance(failed.value.__cause__, ClientError)
