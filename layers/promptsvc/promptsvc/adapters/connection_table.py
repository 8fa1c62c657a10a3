"""The WebSocket connections table (partition `connectionId`) and the subscriptions table
(partition `threadId`, sort `connectionId`, index `byConnection`), both with TTL `expiresAt`.

A subscription's `lastSeq` is the per-(thread, connection) cursor of the fan-out: it only ever
moves by a conditional update from the value its writer read (`advance`), which is what makes a
delivery happen once however many processes try it.
"""

from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.pages import items
from promptsvc.domain.connections import Connection, Subscription
from promptsvc.domain.keys import Role

BY_CONNECTION = "byConnection"


class DynamoConnectionStore:
    def __init__(self, connections_table: str, subscriptions_table: str) -> None:
        self._connections_name = connections_table
        self._subscriptions_name = subscriptions_table

    @property
    def _connections(self) -> Any:
        return dynamodb_table(self._connections_name)

    @property
    def _subscriptions(self) -> Any:
        return dynamodb_table(self._subscriptions_name)

    # connections

    def put_connection(self, connection: Connection) -> None:
        self._connections.put_item(
            Item={
                "connectionId": connection.connection_id,
                "userId": connection.user_id,
                "role": str(connection.role),
                "expiresAt": connection.expires_at,
                "keyId": connection.key_id,
                "secretTag": connection.secret_tag,
            }
        )

    def get_connection(self, connection_id: str) -> Connection | None:
        item = self._connections.get_item(Key={"connectionId": connection_id}, ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            return None
        return Connection(
            connection_id=item["connectionId"],
            user_id=item["userId"],
            role=Role(item["role"]),
            expires_at=int(item["expiresAt"]),
            key_id=item.get("keyId", ""),
            secret_tag=item.get("secretTag", ""),
        )

    def delete_connection(self, connection_id: str) -> None:
        self._connections.delete_item(Key={"connectionId": connection_id})

    # subscriptions

    def subscribe(self, connection: Connection, thread_id: str, last_seq: int) -> Subscription:
        subscription = Subscription(
            thread_id=thread_id,
            connection_id=connection.connection_id,
            user_id=connection.user_id,
            role=connection.role,
            last_seq=last_seq,
        )
        self._subscriptions.put_item(
            Item={
                "threadId": thread_id,
                "connectionId": connection.connection_id,
                "userId": connection.user_id,
                "role": str(connection.role),
                "lastSeq": last_seq,
                "expiresAt": connection.expires_at,
            }
        )
        return subscription

    def unsubscribe(self, thread_id: str, connection_id: str) -> None:
        self._subscriptions.delete_item(Key={"threadId": thread_id, "connectionId": connection_id})

    def subscription(self, thread_id: str, connection_id: str) -> Subscription | None:
        item = self._subscriptions.get_item(
            Key={"threadId": thread_id, "connectionId": connection_id}, ConsistentRead=True
        ).get("Item")
        return None if item is None else _subscription(item)

    def subscribers(self, thread_id: str) -> list[Subscription]:
        query = {"KeyConditionExpression": Key("threadId").eq(thread_id), "ConsistentRead": True}
        return [_subscription(item) for item in items(self._subscriptions.query, query)]

    def threads_of(self, connection_id: str) -> list[str]:
        query = {"IndexName": BY_CONNECTION, "KeyConditionExpression": Key("connectionId").eq(connection_id)}
        return [item["threadId"] for item in items(self._subscriptions.query, query)]

    def claim(
        self, thread_id: str, connection_id: str, last_seq: int, seq: int, now_ms: int, hold_ms: int
    ) -> bool:
        """Take the right to post `seq` (the cursor at `last_seq`, no live claim): posts of one
        subscription happen one at a time, so they reach the client in seq order."""
        free = Attr("claimUntil").not_exists() | Attr("claimUntil").lt(now_ms)
        return self._conditional(
            thread_id,
            connection_id,
            "SET claimSeq = :seq, claimUntil = :until",
            Attr("lastSeq").eq(last_seq) & free,
            {":seq": seq, ":until": now_ms + hold_ms},
        )

    def commit(self, thread_id: str, connection_id: str, seq: int) -> bool:
        """`seq` was posted: move the cursor to it and drop the claim."""
        return self._conditional(
            thread_id, connection_id, "SET lastSeq = :seq REMOVE claimSeq, claimUntil",
            Attr("claimSeq").eq(seq), {":seq": seq},
        )  # fmt: skip

    def unclaim(self, thread_id: str, connection_id: str, seq: int) -> bool:
        """The post of `seq` failed: drop the claim, the cursor stays."""
        return self._conditional(
            thread_id, connection_id, "REMOVE claimSeq, claimUntil", Attr("claimSeq").eq(seq), None
        )

    def _conditional(
        self, thread_id: str, connection_id: str, update: str, condition: Any, values: dict[str, Any] | None
    ) -> bool:
        kwargs: dict[str, Any] = {
            "Key": {"threadId": thread_id, "connectionId": connection_id},
            "UpdateExpression": update,
            "ConditionExpression": condition,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._subscriptions.update_item(**kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _subscription(item: dict[str, Any]) -> Subscription:
    return Subscription(
        thread_id=item["threadId"],
        connection_id=item["connectionId"],
        user_id=item["userId"],
        role=Role(item["role"]),
        last_seq=int(item["lastSeq"]),
    )
