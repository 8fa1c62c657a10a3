"""The limits table (DynamoDB): one counter `n` per item, keyed `key` (domain/limits.py names the
items: a key's minute, day or in-flight counter); `expiresAt` is the table's TTL attribute, so old
windows go away by themselves.

A take is one UpdateItem `ADD n :one` conditional on `attribute_not_exists(n) OR n < :limit`:
DynamoDB evaluates the condition and applies the update atomically, item by item, so however many
function instances take at once, at most `limit` succeed. A write that meets a prompt's ending
transaction on the in-flight counter is tried again (adapters/conflicts.py).
"""

from typing import Any

from botocore.exceptions import ClientError

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.conflicts import retry_conflicts


def counter_update(item: str, amount: int, expires_at: int | None = None) -> dict[str, Any]:
    """The UpdateItem arguments that add `amount` to an item's counter (and set its expiry)."""
    update = "ADD n :amount"
    values: dict[str, Any] = {":amount": amount}
    if expires_at is not None:
        update += " SET expiresAt = :expires"
        values[":expires"] = expires_at
    return {"Key": {"key": item}, "UpdateExpression": update, "ExpressionAttributeValues": values}


class DynamoLimitCounters:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def table_name(self) -> str:
        return self._table_name

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def take(self, item: str, limit: int, expires_at: int | None = None) -> bool:
        write = counter_update(item, 1, expires_at)
        write["ExpressionAttributeValues"][":limit"] = limit
        try:
            retry_conflicts(
                lambda: self._table.update_item(
                    ConditionExpression="attribute_not_exists(n) OR n < :limit", **write
                )
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def below(self, item: str, limit: int) -> bool:
        found = self._table.get_item(Key={"key": item}, ConsistentRead=True).get("Item")
        return found is None or int(found.get("n", 0)) < limit
