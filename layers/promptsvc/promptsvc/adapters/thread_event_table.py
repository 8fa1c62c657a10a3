"""The thread events table (DynamoDB): partition `threadKey` (owner#threadId: threads are per
user), sort `seq`; TTL `expiresAt`; its stream feeds the WebSocket fan-out.

`seq` comes from an atomic counter: item (threadKey, seq=0) holds the thread's last allocated seq,
and a writer takes the next with `ADD last 1`, which DynamoDB serializes, so allocation never fails
under contention (a hundred prompts writing to one thread each get their own numbers at once); a
writer with several events to store together takes a block of consecutive seqs with `ADD last k`.
Each event is then put at its seq, conditionally (`attribute_not_exists`): a seq is stored once,
by whoever puts it first. Between the two writes a later seq can land first, and a writer that
dies between them leaves a hole; so readers (`after`) return only the gapless run after their
cursor: a fresh hole is a write in flight (they stop before it and look again later); a hole
older than `HOLE_SECONDS` (10 s) is filled with a `gap` event, whose seq is then taken. A writer
that finds a seq of its block taken passes over it to the next (a new block when the block runs
out), so no seq of its block is left a hole: no event is ever dropped, and the seqs a reader sees
have no holes.

A run streams its deltas several times a second, mostly on a thread nobody else writes to at that
moment. So a writer whose last write found nobody else writing (its seqs followed its previous
ones) puts its next events right after its own last seq, without the counter: one write an event,
not two. It cannot leave a hole (its seqs follow its own stored one), and if another writer
already stored that seq, the put fails and the events go the counter's way. The counter then lags
behind: a writer whose counted seqs turn out taken passes over them, moves the counter up to the
last stored seq and counts again (a few more writes, once), and a run's final write moves the
counter past its own seqs (a conditional SET in place of the ADD, applied only if nobody counted
past them: the seqs up to it are then the run's alone). The puts are not batched: BatchWriteItem
cannot be conditional, and TransactWriteItems costs twice the write units (and moto copies the
whole table for each).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from promptsvc.adapters.clients import dynamodb_table, is_throttled
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.errors import DeadlinePassed
from promptsvc.domain.names import unscoped
from promptsvc.domain.thread_events import (
    CLOCK_SLACK_SECONDS,
    HOLE_SECONDS,
    EventType,
    PartlyStored,
    ThreadEvent,
    age_seconds,
    young_holes,
)

if TYPE_CHECKING:
    from promptsvc.domain.ports import Deadline

COUNTER_SEQ = 0  # the counter item's sort key; events start at 1
_PUT_PATIENCE_SECONDS = 5.0  # a throttled event put keeps trying this long (the hole bound is 10 s)
# Blocks per append. Each failure means another writer stored an event at a seq of the block (a
# filler, or a run putting right after its own last seq, past the counter), so the thread moved
# on; a run that keeps winning that race against a counted writer, event after event (a storm
# of back-to-back deltas on one thread), takes as many of them: 8 was seen to run out on a loaded
# machine (tests/integration/test_thread_seq_writes.py), and an append that runs out loses its event.
_ATTEMPTS = 32


def event_to_item(event: ThreadEvent, expires_at: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "threadKey": event.thread_key,
        "threadId": event.threadId,
        "seq": event.seq,
        "userId": event.userId,
        "promptId": event.promptId,
        "type": str(event.type),
        "createdAt": event.createdAt,
        "expiresAt": expires_at,
    }
    for name in ("status", "error", "text"):
        value = getattr(event, name)
        if value:
            item[name] = value
    return item


def item_to_event(item: dict[str, Any]) -> ThreadEvent:
    return ThreadEvent(
        threadId=item["threadId"],
        userId=item["userId"],
        promptId=item["promptId"],
        type=EventType(item["type"]),
        createdAt=item["createdAt"],
        seq=int(item["seq"]),
        status=item.get("status"),
        error=item.get("error"),
        text=item.get("text"),
    )


def is_event_item(item: dict[str, Any]) -> bool:
    """False for the thread's counter item (which the stream also carries)."""
    return int(item.get("seq", COUNTER_SEQ)) != COUNTER_SEQ


def _condition_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _check(deadline: Deadline | None) -> None:
    until = deadline() if deadline is not None else None
    if until is not None and time.time() >= until:
        raise DeadlinePassed("the writer's deadline passed before the event was stored")


def _age_seconds(created_at: str) -> float:
    return age_seconds(created_at, datetime.now(UTC))


class _EventWrites:
    """Storing events at their seqs, as the module's docstring tells: from the thread's counter,
    in blocks, or right after a writer's own last seq."""

    def __init__(self, table_name: str, ttl_seconds: int = 86_400) -> None:
        self._table_name = table_name
        self._ttl = ttl_seconds

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def append(self, event: ThreadEvent, *, deadline: Deadline | None = None) -> ThreadEvent:
        """One event: two writes (the counter, the put)."""
        return self.append_many([event], deadline=deadline)[0]

    def append_many(
        self,
        events: Sequence[ThreadEvent],
        *,
        deadline: Deadline | None = None,
        after: int | None = None,
        final: bool = False,
    ) -> list[ThreadEvent]:
        """Store events of one thread in order, at consecutive seqs: a block taken with one counter
        update (`ADD last k`, k + 1 writes), or, with `after` (the writer's own last seq, when its
        last write found nobody else writing), the seqs right after it, put without the counter (k
        writes). A seq found taken sends the events from it on the counter's way. The writer's
        `final` write brings the counter up to it (see the module's docstring). The deadline is
        checked before seqs are taken, not after: a seq taken in time is below any a later
        claimer of the prompt takes, so its event lands in order however late. A failure once
        some are stored is PartlyStored (which)."""
        pending = list(events)
        if not pending:
            return []
        if any(event.thread_key != pending[0].thread_key for event in pending):
            raise ValueError("append_many stores events of one thread")
        stored: list[ThreadEvent] = []
        try:
            if after is not None:
                pending = self._append_after(pending, stored, after, final, deadline)
            for _ in range(_ATTEMPTS):
                if not pending:
                    return stored
                pending = self._append_block(pending, stored, deadline)
            if not pending:
                return stored
            raise RuntimeError(f"could not store an event in thread {pending[0].threadId!r}")
        except Exception as error:
            if stored:
                raise PartlyStored(stored) from error
            raise

    def last_seq(self, thread_key: str) -> int:
        """The thread's last stored seq (0 when it has none), read consistently."""
        page = self._table.query(
            KeyConditionExpression=Key("threadKey").eq(thread_key) & Key("seq").gt(COUNTER_SEQ),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="seq",
        )
        items = page.get("Items", [])
        return int(items[0]["seq"]) if items else 0

    def _allocate(self, thread_key: str, expires: int, count: int = 1) -> int:
        """Take `count` seqs; the last of them."""
        result = self._table.update_item(
            Key={"threadKey": thread_key, "seq": COUNTER_SEQ},
            UpdateExpression="ADD #last :count SET expiresAt = :expires",
            ExpressionAttributeNames={"#last": "last"},
            ExpressionAttributeValues={":count": count, ":expires": expires},
            ReturnValues="UPDATED_NEW",
        )
        return int(result["Attributes"]["last"])

    def _append_block(
        self, events: list[ThreadEvent], stored: list[ThreadEvent], deadline: Deadline | None
    ) -> list[ThreadEvent]:
        """Take a block of seqs from the counter and put the events there in order, passing over
        seqs found taken (a gap filler's, or those of a writer putting past a lagging counter),
        so no seq of the block is left a hole; the events left when the block runs out."""
        key = events[0].thread_key
        _check(deadline)
        expires = int(time.time()) + self._ttl
        last = self._allocate(key, expires, len(events))
        rest = self._put_in(events, stored, last - len(events) + 1, last, expires)
        if rest:
            self._catch_up_counter(key)  # so its next block starts past the seqs found taken
        return rest

    def _append_after(
        self,
        events: list[ThreadEvent],
        stored: list[ThreadEvent],
        after: int,
        final: bool,
        deadline: Deadline | None,
    ) -> list[ThreadEvent]:
        """Put the events at `after + 1`, ... without the counter, up to a seq found taken (a
        `final` write first moves the counter to its last seq, if nobody took a seq past `after`
        from it, and so has those seqs to itself); the events left, for the counter's way."""
        key = events[0].thread_key
        _check(deadline)
        expires = int(time.time()) + self._ttl
        if not final:
            rest = self._put_in(events, stored, after + 1, None, expires)
            if rest:
                self._catch_up_counter(key)  # it lags behind this writer's seqs
            return rest
        last = after + len(events)
        if not self._move_counter(key, after, last, expires):
            return events  # the counter is past `after`: it hands out what follows
        return self._put_in(events, stored, after + 1, last, expires)

    def _put_in(
        self, events: list[ThreadEvent], stored: list[ThreadEvent], first: int, last: int | None, expires: int
    ) -> list[ThreadEvent]:
        """Put the events in order at seqs from `first` (each stored one added to `stored`). Up to
        `last` (seqs the writer holds), a seq found taken is passed over; with no `last`, the
        first one found taken ends the run. The events left."""
        seq = first
        for index, event in enumerate(events):
            while True:
                if last is not None and seq > last:
                    return events[index:]
                placed = event.with_seq(seq)
                seq += 1
                if self._put_once(event_to_item(placed, expires)):
                    stored.append(placed)
                    break
                if last is None:
                    return events[index:]
        return []

    def _move_counter(self, thread_key: str, after: int, last: int, expires: int) -> bool:
        """Set the counter to `last` if it has not passed `after` (then `after + 1` to `last`
        are this writer's); False if it has."""
        try:
            self._table.update_item(
                Key={"threadKey": thread_key, "seq": COUNTER_SEQ},
                UpdateExpression="SET #last = :last, expiresAt = :expires",
                ConditionExpression="attribute_not_exists(#last) OR #last <= :after",
                ExpressionAttributeNames={"#last": "last"},
                ExpressionAttributeValues={":last": last, ":after": after, ":expires": expires},
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def _put_once(self, item: dict[str, Any]) -> bool:
        """Put the event at its seq; False if the seq is taken. The seq is ours once allocated, so
        a throttled put is retried (past the SDK's own retries) for up to `_PUT_PATIENCE_SECONDS`,
        well inside the hole bound: a busy table delays an event, it does not lose it."""
        give_up_at = time.monotonic() + _PUT_PATIENCE_SECONDS
        for attempt in itertools.count():
            try:
                self._table.put_item(Item=item, ConditionExpression=Attr("seq").not_exists())
            except ClientError as error:
                if _condition_failed(error):
                    return False
                if not is_throttled(error) or time.monotonic() > give_up_at:
                    raise
                time.sleep(min(1.0, 0.05 * 2**attempt))
                continue
            return True
        raise AssertionError("unreachable")

    def _catch_up_counter(self, thread_key: str) -> None:
        """Move the counter past the last stored seq (never back)."""
        last = self.last_seq(thread_key)
        try:
            self._table.update_item(
                Key={"threadKey": thread_key, "seq": COUNTER_SEQ},
                UpdateExpression="SET #last = :last",
                ConditionExpression="attribute_not_exists(#last) OR #last < :last",
                ExpressionAttributeNames={"#last": "last"},
                ExpressionAttributeValues={":last": last},
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise


class DynamoThreadEventLog(_EventWrites):
    def __init__(
        self, table_name: str, ttl_seconds: int = 86_400, *, hole_seconds: float = HOLE_SECONDS
    ) -> None:
        super().__init__(table_name, ttl_seconds)
        self._hole_seconds = hole_seconds

    def after(self, thread_key: str, after_seq: int, limit: int) -> list[ThreadEvent]:
        """The gapless run of events after `after_seq` (at most `limit`): it stops before a seq
        still being written, and fills one whose writer is gone (`HOLE_SECONDS`) with a gap."""
        page = self._table.query(
            KeyConditionExpression=Key("threadKey").eq(thread_key) & Key("seq").gt(after_seq),
            ScanIndexForward=True,
            Limit=limit,
            ConsistentRead=True,
        )
        events: list[ThreadEvent] = []
        expected = after_seq + 1
        for item in page.get("Items", []):
            event = item_to_event(item)
            while event.seq > expected:
                age = _age_seconds(event.createdAt)
                if age < self._hole_seconds:
                    return events  # `expected` is still being written: look again later
                if (after_seq == 0 and not events) or age >= self._ttl - CLOCK_SLACK_SECONDS:
                    # Below the thread's oldest stored event, or older than the events' TTL: the
                    # missing seqs expired (history), nothing to fill.
                    expected = event.seq
                    break
                events.append(self._fill(thread_key, expected, event))
                expected += 1
                if len(events) >= limit:
                    return events
            events.append(event)
            expected += 1
        return events[:limit]

    def live_cursor(self, thread_key: str, window: int = 100) -> int:
        """Where a live-only subscription starts: the last stored seq, unless a lower seq is still
        being written (a hole younger than `HOLE_SECONDS` among the last `window` events): then
        just below it, so that event, stored after the subscribe, is not skipped. (Below the oldest
        stored event nothing is looked for: there, events the TTL deleted look like holes.)"""
        page = self._table.query(
            KeyConditionExpression=Key("threadKey").eq(thread_key) & Key("seq").gt(COUNTER_SEQ),
            ScanIndexForward=False,
            Limit=window,
            ConsistentRead=True,
            ProjectionExpression="#seq, #createdAt",
            ExpressionAttributeNames={"#seq": "seq", "#createdAt": "createdAt"},
        )
        seqs = [(int(item["seq"]), item["createdAt"]) for item in page.get("Items", [])]
        holes = young_holes(seqs, datetime.now(UTC), self._hole_seconds)
        return holes[-1] if holes else (seqs[0][0] if seqs else 0)  # below the lowest write in flight

    def recent(self, thread_key: str, limit: int, before_seq: int | None = None) -> list[ThreadEvent]:
        if before_seq is not None and before_seq <= COUNTER_SEQ + 1:
            return []  # nothing comes before the first event
        seqs = Key("seq").gt(COUNTER_SEQ)
        if before_seq is not None:
            seqs = Key("seq").between(COUNTER_SEQ + 1, before_seq - 1)
        page = self._table.query(
            KeyConditionExpression=Key("threadKey").eq(thread_key) & seqs,
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
        )
        return [item_to_event(item) for item in page.get("Items", [])]

    def _fill(self, thread_key: str, seq: int, later: ThreadEvent) -> ThreadEvent:
        """Take a hole's seq with a `gap` event (or read what its late writer stored after all)."""
        gap = _gap(thread_key, seq)
        if self._put_once(event_to_item(gap, int(time.time()) + self._ttl)):
            return gap
        item = self._table.get_item(Key={"threadKey": thread_key, "seq": seq}, ConsistentRead=True)["Item"]
        return item_to_event(item)


def _gap(thread_key: str, seq: int) -> ThreadEvent:
    """The `gap` event that takes a seq whose event never landed."""
    owner, thread_id = unscoped(thread_key)
    return ThreadEvent(thread_id, owner, "", EventType.GAP, now_rfc3339(), seq=seq)
