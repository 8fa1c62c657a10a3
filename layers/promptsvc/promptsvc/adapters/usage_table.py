"""The usage counters on DynamoDB (the UsageTable): one item per user, UTC day and model.

Key: `userId` (HASH) and `sk` = `day#modelId` (RANGE), so a user's days are one Query on a key
range. The item also holds `day` and `userModel` (`userId#modelId`), the keys of the `byDay`
index: every user's counters of a day are one Query there (an admin's all-users read: one Query a
day, at most `MAX_USAGE_DAYS`). A completion adds to its item with one UpdateItem `ADD`: atomic
however many consumers add at once, and it makes the item on its first use.
"""

from typing import Any

from boto3.dynamodb.conditions import Key

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.pages import items
from promptsvc.domain.usage import COUNTERS, UsageCount, UsageRow

BY_DAY = "byDay"
_PAST_DAY = "$"  # sorts right after "#": `day$` bounds every `day#model` of the day


def usage_update(user_id: str, day: str, model_id: str, count: UsageCount) -> dict[str, Any]:
    """The UpdateItem arguments that add `count` to (user, day, model)'s item (also a transaction's
    `Update`, with its table's name: a completion counts in its own write, adapters/prompt_table.py)."""
    return {
        "Key": {"userId": user_id, "sk": f"{day}#{model_id}"},
        "UpdateExpression": "ADD "
        + ", ".join(f"#{name} :{name}" for name in COUNTERS)
        + " SET #day = :day, modelId = :model, userModel = :userModel",
        "ExpressionAttributeNames": {"#day": "day", **{f"#{name}": name for name in COUNTERS}},
        "ExpressionAttributeValues": {
            ":day": day,
            ":model": model_id,
            ":userModel": f"{user_id}#{model_id}",
            **{f":{name}": value for name, value in count.as_dict().items()},
        },
    }


class DynamoUsageTable:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def add(self, user_id: str, day: str, model_id: str, count: UsageCount) -> None:
        self._table.update_item(**usage_update(user_id, day, model_id, count))

    def of_user(self, user_id: str, first_day: str, last_day: str) -> list[UsageRow]:
        condition = Key("userId").eq(user_id) & Key("sk").between(first_day, last_day + _PAST_DAY)
        return [_row(item) for item in items(self._table.query, {"KeyConditionExpression": condition})]

    def of_day(self, day: str) -> list[UsageRow]:
        query = {"IndexName": BY_DAY, "KeyConditionExpression": Key("day").eq(day)}
        return [_row(item) for item in items(self._table.query, query)]


def _row(item: dict[str, Any]) -> UsageRow:
    count = UsageCount(**{name: int(item.get(name, 0)) for name in COUNTERS})
    return UsageRow(str(item["userId"]), str(item["day"]), str(item["modelId"]), count)
