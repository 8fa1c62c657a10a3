"""The response cache on DynamoDB: one item per key, expired by the table's TTL."""

import time
from collections.abc import Callable
from typing import Any

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.domain.item_size import check_item_size


class DynamoResponseCache:
    def __init__(self, table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._table_name = table_name
        self._clock = clock

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def get(self, key: str) -> str | None:
        item = self._table.get_item(Key={"cacheKey": key}).get("Item")
        # TTL deletion is lazy (it can take days): an item past its time is a miss.
        if item is None or int(item["expiresAt"]) <= self._clock():
            return None
        return str(item["answer"])

    def put(self, key: str, answer: str, ttl_seconds: int) -> None:
        """Cache the answer; ItemTooLarge (nothing sent) when it is too large for an item."""
        item = {"cacheKey": key, "answer": answer, "expiresAt": int(self._clock()) + int(ttl_seconds)}
        check_item_size(item)
        self._table.put_item(Item=item)
