"""The response cache on DynamoDB: one item per key, expired by the table's TTL. An item holds the
answer and, when the engine reported them, its `promptTokens` and `completionTokens`."""

import time
from collections.abc import Callable
from typing import Any

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.domain.item_size import check_item_size
from promptsvc.domain.response_cache import CachedAnswer


class DynamoResponseCache:
    def __init__(self, table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._table_name = table_name
        self._clock = clock

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def get(self, key: str) -> CachedAnswer | None:
        item = self._table.get_item(Key={"cacheKey": key}).get("Item")
        # TTL deletion is lazy (it can take days): an item past its time is a miss.
        if item is None or int(item["expiresAt"]) <= self._clock():
            return None
        return CachedAnswer(
            str(item["answer"]), _count(item, "promptTokens"), _count(item, "completionTokens")
        )

    def put(self, key: str, answer: CachedAnswer, ttl_seconds: int) -> None:
        """Cache the answer; ItemTooLarge (nothing sent) when it is too large for an item."""
        item: dict[str, Any] = {
            "cacheKey": key,
            "answer": answer.answer,
            "expiresAt": int(self._clock()) + int(ttl_seconds),
        }
        for name, value in (
            ("promptTokens", answer.prompt_tokens),
            ("completionTokens", answer.completion_tokens),
        ):
            if value is not None:
                item[name] = value
        check_item_size(item)
        self._table.put_item(Item=item)


def _count(item: dict[str, Any], name: str) -> int | None:
    return int(item[name]) if name in item else None
