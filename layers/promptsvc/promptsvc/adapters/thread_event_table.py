"""The thread events table (DynamoDB): partition `threadId`, sort `seq`; TTL `expiresAt`; its
stream feeds the WebSocket fan-out.

`seq` is allocated without a counter item: a writer puts `last + 1` on the condition that no
event has that seq yet, and on a conflict (another consumer wrote to the same thread) reads the
thread's last seq again and retries. So seqs are strictly increasing and gap-free per thread, and
the common case costs one write. The last seq per thread is remembered between writes.
"""

import time
from collections import OrderedDict
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.domain.thread_events import EventType, ThreadEvent

_ATTEMPTS = 20
_REMEMBERED_THREADS = 1024


def event_to_item(event: ThreadEvent, expires_at: int) -> dict[str, Any]:
    item: dict[str, Any] = {
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


class DynamoThreadEventLog:
    def __init__(self, table_name: str, ttl_seconds: int = 86_400) -> None:
        self._table_name = table_name
        self._ttl = ttl_seconds
        self._last: OrderedDict[str, int] = OrderedDict()

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def append(self, event: ThreadEvent) -> ThreadEvent:
        last = self._last.get(event.threadId)
        if last is None:
            last = self._read_last(event.threadId)
        expires = int(time.time()) + self._ttl
        for _ in range(_ATTEMPTS):
            stored = event.with_seq(last + 1)
            try:
                self._table.put_item(
                    Item=event_to_item(stored, expires), ConditionExpression=Attr("seq").not_exists()
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                last = self._read_last(event.threadId)
                continue
            self._remember(event.threadId, stored.seq)
            return stored
        raise RuntimeError(f"could not allocate a seq in thread {event.threadId!r}: too much contention")

    def after(self, thread_id: str, after_seq: int, limit: int) -> list[ThreadEvent]:
        page = self._table.query(
            KeyConditionExpression=Key("threadId").eq(thread_id) & Key("seq").gt(after_seq),
            ScanIndexForward=True,
            Limit=limit,
            ConsistentRead=True,
        )
        return [item_to_event(item) for item in page.get("Items", [])]

    def last_seq(self, thread_id: str) -> int:
        """The thread's last stored seq (0 when it has none), read consistently."""
        return self._read_last(thread_id)

    def _read_last(self, thread_id: str) -> int:
        page = self._table.query(
            KeyConditionExpression=Key("threadId").eq(thread_id),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="seq",
        )
        items = page.get("Items", [])
        return int(items[0]["seq"]) if items else 0

    def _remember(self, thread_id: str, seq: int) -> None:
        self._last[thread_id] = seq
        self._last.move_to_end(thread_id)
        while len(self._last) > _REMEMBERED_THREADS:
            self._last.popitem(last=False)
