"""The API keys table (DynamoDB), keyed by key id; holds only the SHA-256 of each key's secret."""

from typing import Any

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.domain.keys import ApiKeyRecord, Role


class DynamoKeyRepository:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def put(self, record: ApiKeyRecord) -> None:
        self._table.put_item(
            Item={
                "keyId": record.key_id,
                "secretHash": record.secret_hash,
                "userId": record.user_id,
                "role": str(record.role),
                "createdAt": record.created_at,
            }
        )

    def get(self, key_id: str) -> ApiKeyRecord | None:
        item = self._table.get_item(Key={"keyId": key_id}).get("Item")
        if not item:
            return None
        return ApiKeyRecord(
            key_id=item["keyId"],
            secret_hash=item["secretHash"],
            user_id=item["userId"],
            role=Role(item["role"]),
            created_at=item.get("createdAt", ""),
        )

    def delete(self, key_id: str) -> bool:
        result = self._table.delete_item(Key={"keyId": key_id}, ReturnValues="ALL_OLD")
        return "Attributes" in result
