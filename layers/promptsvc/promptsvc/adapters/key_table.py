"""The API keys table (DynamoDB), keyed by key id; holds only the SHA-256 of each key's secret.

Listings read the index `byUser` (userId, then `listedAt` = createdAt#keyId, unique, so a position
is exact), which projects the listed fields only, never a hash: a Query for one user's keys, newest
first; a Scan of one page (`Limit`) for every key, user by user. A key stored before `listedAt`
existed is indexed once it is next used (`touch` sets it).
"""

from typing import Any

from botocore.exceptions import ClientError

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.domain.keys import ApiKeyRecord, Role, legacy_prefix
from promptsvc.domain.limits import KeyLimits

BY_USER = "byUser"


def listed_at(record: ApiKeyRecord) -> str:
    return f"{record.created_at}#{record.key_id}"


class DynamoKeyRepository:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def put(self, record: ApiKeyRecord) -> None:
        item: dict[str, Any] = {
            "keyId": record.key_id,
            "secretHash": record.secret_hash,
            "userId": record.user_id,
            "role": str(record.role),
            "createdAt": record.created_at,
            "listedAt": listed_at(record),
            "prefix": record.prefix,
        }
        self._table.put_item(Item={**item, **_settings(record)})

    def get(self, key_id: str) -> ApiKeyRecord | None:
        item = self._table.get_item(Key={"keyId": key_id}).get("Item")
        return _record(item) if item else None

    def delete(self, key_id: str) -> bool:
        result = self._table.delete_item(Key={"keyId": key_id}, ReturnValues="ALL_OLD")
        return "Attributes" in result

    def page(
        self, user_id: str | None, after: str | None, limit: int
    ) -> tuple[list[ApiKeyRecord], str | None]:
        """A position is `userId listedAt` of the last key of the page before."""
        start = _start_key(after)
        read: dict[str, Any] = {"IndexName": BY_USER, "Limit": limit + 1}  # one more: is there a next page
        if user_id is None:  # every key: a page of the index, user by user, each in creation order
            if start is not None:
                read["ExclusiveStartKey"] = start
            response = self._table.scan(**read)
        else:  # one user's keys, newest first
            condition, values = "userId = :u", {":u": user_id}
            if start is not None:
                condition += " AND listedAt < :after"
                values[":after"] = start["listedAt"]
            response = self._table.query(
                KeyConditionExpression=condition,
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
                **read,
            )
        items = response.get("Items", [])[: limit + 1]
        page = items[:limit]
        more = len(items) > limit or "LastEvaluatedKey" in response
        position = f"{page[-1]['userId']} {page[-1]['listedAt']}" if more and page else None
        return [_record(item) for item in page], position

    def rotate(self, key_id: str, old_hash: str, new_hash: str, previous_until: str, prefix: str) -> bool:
        try:
            self._table.update_item(
                Key={"keyId": key_id},
                UpdateExpression="SET secretHash = :new, previousHash = :old, previousUntil = :until, "
                "prefix = :prefix",
                ConditionExpression="secretHash = :old",
                ExpressionAttributeValues={
                    ":new": new_hash,
                    ":old": old_hash,
                    ":until": previous_until,
                    ":prefix": prefix,
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def update(self, record: ApiKeyRecord) -> bool:
        """SET what is given, REMOVE what is back to its default: a rotation or a use of the key at
        the same moment writes other attributes and is kept."""
        fields = _settings(record)
        sets = [f"{name} = :{name}" for name in fields]
        removes = [name for name in ("expiresAt", "allowedModels", "limits") if name not in fields]
        expression = " ".join(
            part
            for part in (
                f"SET {', '.join(sets)}" if sets else "",
                f"REMOVE {', '.join(removes)}" if removes else "",
            )
            if part
        )
        write: dict[str, Any] = {
            "Key": {"keyId": record.key_id},
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(keyId)",
        }
        if fields:
            write["ExpressionAttributeValues"] = {f":{name}": value for name, value in fields.items()}
        try:
            self._table.update_item(**write)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def touch(self, record: ApiKeyRecord, at: str) -> None:
        try:
            self._table.update_item(
                Key={"keyId": record.key_id},
                UpdateExpression="SET lastUsedAt = :at, listedAt = if_not_exists(listedAt, :l)",
                ConditionExpression="attribute_exists(keyId)",  # a revoked key stays gone
                ExpressionAttributeValues={":at": at, ":l": listed_at(record)},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise


def _settings(record: ApiKeyRecord) -> dict[str, Any]:
    """The key's expiry, allow-list and limit overrides as stored; each absent when it is the
    default (never, every model, the deployment's)."""
    item: dict[str, Any] = {}
    if record.expires_at:
        item["expiresAt"] = record.expires_at
    if record.allowed_models is not None:
        item["allowedModels"] = list(record.allowed_models)
    if not record.limits.is_default():  # the overrides set; a missing one is the default
        item["limits"] = {k: v for k, v in record.limits.as_dict().items() if v is not None}
    return item


def _start_key(position: str | None) -> dict[str, str] | None:
    """The index key a position names (the service checked its form)."""
    if position is None:
        return None
    user_id, _, listed = position.partition(" ")
    return {"userId": user_id, "listedAt": listed, "keyId": listed.rpartition("#")[2]}


def _record(item: dict[str, Any]) -> ApiKeyRecord:
    models = item.get("allowedModels")
    return ApiKeyRecord(
        key_id=item["keyId"],
        secret_hash=item.get("secretHash", ""),  # not in the indexes
        user_id=item["userId"],
        role=Role(item["role"]),
        created_at=item.get("createdAt", ""),
        expires_at=item.get("expiresAt", ""),
        allowed_models=None if models is None else tuple(str(m) for m in models),
        previous_hash=item.get("previousHash", ""),
        previous_until=item.get("previousUntil", ""),
        last_used_at=item.get("lastUsedAt", ""),
        prefix=item.get("prefix", legacy_prefix(item["keyId"])),
        limits=KeyLimits.from_dict(item.get("limits")),
    )
