"""The thread events table (DynamoDB): partition `threadKey` (owner#threadId: threads are per
user), sort `seq`; TTL `expiresAt`; its stream feeds the WebSocket fan-out.

`seq` comes from an atomic counter: item (threadKey, seq=0) holds the thread's last allocated seq,
and a writer takes the next with `ADD last 1`, which DynamoDB serializes, so allocation never fails
under contention (a hundred prompts writing to one thread each get their own numbers at once).
The event is then put at that seq. Between the two writes a later seq can land first, and a
writer that dies between them leaves a hole; so readers (`after`) return only the gapless run
after their cursor: a fresh hole is a write in flight (they stop before it and look again later);
a hole older than `HOLE_SECONDS` (10 s) is filled with a `gap` event, whose seq is then taken. A writer
that finds its seq taken by a filler allocates another: no event is ever dropped, and the seqs a
reader sees have no holes.
"""

import itertools
import time
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from promptsvc.adapters.clients import dynamodb_table, is_throttled
from promptsvc.domain.clock import now_rfc3339, parse_rfc3339
from promptsvc.domain.errors import DeadlinePassed
from promptsvc.domain.names import unscoped
from promptsvc.domain.ports import Deadline
from promptsvc.domain.thread_events import CLOCK_SLACK_SECONDS, HOLE_SECONDS, EventType, ThreadEvent

COUNTER_SEQ = 0  # the counter item's sort key; events start at 1
_PUT_PATIENCE_SECONDS = 5.0  # a throttled event put keeps trying this long (the hole bound is 10 s)
_ATTEMPTS = 5  # allocations per append (each failure means a filler took the seq: rare)


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
    try:
        moment = parse_rfc3339(created_at)
    except ValueError:
        return float("inf")  # not ours to date: never let it hold a hole open for good
    return (datetime.now(UTC) - moment).total_seconds()


class DynamoThreadEventLog:
    def __init__(
        self, table_name: str, ttl_seconds: int = 86_400, *, hole_seconds: float = HOLE_SECONDS
    ) -> None:
        self._table_name = table_name
        self._ttl = ttl_seconds
        self._hole_seconds = hole_seconds

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def append(self, event: ThreadEvent, *, deadline: Deadline | None = None) -> ThreadEvent:
        """The deadline is checked before each seq is taken, not after: a seq taken in time is
        below any a later claimer of the prompt takes, so its event lands in order however late."""
        key = event.thread_key
        for _ in range(_ATTEMPTS):
            _check(deadline)
            expires = int(time.time()) + self._ttl
            stored = event.with_seq(self._allocate(key, expires))
            if self._put_once(event_to_item(stored, expires)):
                return stored
            self._catch_up_counter(key)  # a gap filler (or a counter lost to TTL) took that seq
        raise RuntimeError(f"could not store an event in thread {event.threadId!r}")

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
        cursor = seqs[0][0] if seqs else 0
        for (above, created_at), (below, _) in itertools.pairwise(seqs):
            if above > below + 1 and _age_seconds(created_at) < self._hole_seconds:
                cursor = below  # below + 1 is still being written (its writer is not gone)
        return cursor

    def recent(self, thread_key: str, limit: int) -> list[ThreadEvent]:
        page = self._table.query(
            KeyConditionExpression=Key("threadKey").eq(thread_key) & Key("seq").gt(COUNTER_SEQ),
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
        )
        return [item_to_event(item) for item in page.get("Items", [])]

    def _allocate(self, thread_key: str, expires: int) -> int:
        result = self._table.update_item(
            Key={"threadKey": thread_key, "seq": COUNTER_SEQ},
            UpdateExpression="ADD #last :one SET expiresAt = :expires",
            ExpressionAttributeNames={"#last": "last"},
            ExpressionAttributeValues={":one": 1, ":expires": expires},
            ReturnValues="UPDATED_NEW",
        )
        return int(result["Attributes"]["last"])

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

    def _fill(self, thread_key: str, seq: int, later: ThreadEvent) -> ThreadEvent:
        """Take a hole's seq with a `gap` event (or read what its late writer stored after all)."""
        owner, thread_id = unscoped(thread_key)
        gap = ThreadEvent(thread_id, owner, "", EventType.GAP, now_rfc3339(), seq=seq)
        if self._put_once(event_to_item(gap, int(time.time()) + self._ttl)):
            return gap
        item = self._table.get_item(Key={"threadKey": thread_key, "seq": seq}, ConsistentRead=True)["Item"]
        return item_to_event(item)
