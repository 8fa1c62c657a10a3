"""The prompts table's item format (DynamoDB). An item holds the prompt plus derived keys:

- `pk` = userId#id, the table's key: prompt ids are per user (domain.names);
- `sk` = createdAt#id: the sort key of every index but one, a unique time-ordered position;
- `userThread` = userId#threadId and `userStatus` = userId#status: a user's thread or status is one
  index partition, so filtering by them reads only the matching items;
- `updatedAt` itself sorts `byUserUpdated` (a user's prompts by their last change), so it needs no
  derived attribute that every lifecycle write would have to keep up (ties are the reader's care);
- `expiresAt`: epoch seconds, set once a prompt is terminal (the table's TTL attribute).

Every composite key is built by `domain.names.composite`, here and nowhere else in the adapters.
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec

from promptsvc.domain.names import SEPARATOR, composite
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.status import Status

PROMPT_FIELDS = Prompt.__struct_fields__
SORT_ATTRIBUTE = "sk"
_PAST_SEPARATOR = chr(ord(SEPARATOR) + 1)  # after `createdAt#` and any id: `createdAt$`


class Index(msgspec.Struct, frozen=True):
    """A global secondary index of the table, sorted by a time field of the prompt: `sk`
    (createdAt#id, unique) or the field itself (`updatedAt`: prompts may tie)."""

    name: str
    partition: tuple[str, ...]  # the prompt fields whose values, joined, make the partition key
    key_attribute: str
    sort_field: str = "createdAt"  # the prompt field it orders by
    sort_attribute: str = SORT_ATTRIBUTE

    @property
    def unique_sort(self) -> bool:
        """Its sort key is unique (createdAt#id): no two prompts tie."""
        return self.sort_attribute == SORT_ATTRIBUTE

    def key_of(self, fields: Mapping[str, Any]) -> str:
        return composite(*(fields[name] for name in self.partition))

    def sort_value(self, value: str, prompt_id: str) -> str:
        """The sort attribute of the prompt at position (`value` of the sort field, id)."""
        return composite(value, prompt_id) if self.unique_sort else value

    def sort_bounds(self, low: str | None, high: str | None) -> tuple[str | None, str | None]:
        """Inclusive bounds of the sort attribute holding exactly the prompts whose sort field is
        within [low, high] (stored times: fixed width, so `t#id` starts with `t` and sorts below
        `t$`, and any other time differs within the width)."""
        if not self.unique_sort:
            return low, high
        return low, None if high is None else high + _PAST_SEPARATOR


# Most selective first: the read plan takes the first (of those sorting by the order it reads)
# whose partitions are few.
INDEXES: tuple[Index, ...] = (
    Index("byUserThread", ("userId", "threadId"), "userThread"),
    Index("byUserStatus", ("userId", "status"), "userStatus"),
    Index("byThread", ("threadId",), "threadId"),
    Index("byStatus", ("status",), "status"),
    Index("byUser", ("userId",), "userId"),
    Index("byUserUpdated", ("userId",), "userId", sort_field="updatedAt", sort_attribute="updatedAt"),
)


def table_key(user_id: str, prompt_id: str) -> dict[str, str]:
    return {"pk": composite(user_id, prompt_id)}


def derived_keys(fields: Mapping[str, Any]) -> dict[str, str]:
    """The key attributes an item derives from its prompt's fields (all of them, or the ones a
    status change touches when `fields` holds only userId and status)."""
    keys: dict[str, str] = {}
    if "id" in fields:
        keys["pk"] = composite(fields["userId"], fields["id"])
        keys[SORT_ATTRIBUTE] = composite(fields["createdAt"], fields["id"])
    for index in INDEXES:
        if len(index.partition) > 1 and all(name in fields for name in index.partition):
            keys[index.key_attribute] = index.key_of(fields)
    return keys


def to_item(prompt: Prompt) -> dict[str, Any]:
    item: dict[str, Any] = {name: getattr(prompt, name) for name in PROMPT_FIELDS}
    item["status"] = str(prompt.status)
    item.update(derived_keys(item))
    return item


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def to_prompt(item: Mapping[str, Any]) -> Prompt:
    data = {name: _plain(item[name]) for name in PROMPT_FIELDS if name in item}
    data["status"] = Status(data["status"])
    return Prompt(**data)
