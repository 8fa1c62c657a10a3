"""The registry table (DynamoDB): prompt entities and their versions in one table.

- entity:  promptId=<id>, sk="prompt", ownerId=<user>, ...; the `byOwner` index (ownerId, promptId)
  holds entities only, so a user's list is one index partition in id (= creation) order;
- version: promptId=<id>, sk="version#<versionId>", no ownerId, so versions stay out of the index.

The prompt and metadata are stored as canonical JSON strings: DynamoDB numbers come back as
Decimal and it has no float type, and a string round-trips the client's JSON exactly. Writes that
touch an entity and a version go in one transaction, so a version never exists without its entity
pointing at (or past) it, and an update is conditional on the entity's revision.
"""

import json
from collections.abc import Callable
from typing import Any

import ulid
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from promptsvc.adapters.clients import client, dynamodb_table
from promptsvc.adapters.pages import items, pages
from promptsvc.domain.prompt_settings import PromptSettings
from promptsvc.domain.registry import (
    Page,
    PageRequest,
    RegistryPrompt,
    RegistryVersion,
    canonical_json,
    prompt_json,
)

ENTITY_SK = "prompt"
VERSION_PREFIX = "version#"
OWNER_INDEX = "byOwner"
_LOWEST = str(ulid.ULID.from_int(0))
_HIGHEST = str(ulid.ULID.from_int(2**128 - 1))

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Why a write was refused in a transaction: a condition, or a concurrent transaction on an item.
_LOST_RACE = {"ConditionalCheckFailed", "TransactionConflict"}


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def entity_item(prompt: RegistryPrompt) -> dict[str, Any]:
    return {
        "promptId": prompt.id,
        "sk": ENTITY_SK,
        "ownerId": prompt.owner,
        "displayName": prompt.display_name,
        "path": prompt.path,
        "description": prompt.description,
        "metadata": canonical_json(prompt.metadata),
        "prompt": prompt_json(prompt.prompt),
        "versionId": prompt.version_id,
        "created": prompt.created,
        "updated": prompt.updated,
        "createdById": prompt.created_by_id,
        "updatedById": prompt.updated_by_id,
        "revision": prompt.revision,
    }


def item_to_entity(item: dict[str, Any]) -> RegistryPrompt:
    return RegistryPrompt(
        id=item["promptId"],
        owner=item["ownerId"],
        display_name=item["displayName"],
        path=item["path"],
        description=item.get("description"),
        metadata=json.loads(item["metadata"]),
        prompt=PromptSettings.model_validate_json(item["prompt"]),
        version_id=item["versionId"],
        created=item["created"],
        updated=item["updated"],
        created_by_id=item["createdById"],
        updated_by_id=item["updatedById"],
        revision=_int(item.get("revision")),
    )


def version_item(version: RegistryVersion) -> dict[str, Any]:
    return {
        "promptId": version.prompt_id,
        "sk": VERSION_PREFIX + version.id,
        "versionId": version.id,
        "prompt": prompt_json(version.prompt),
        "description": version.description,
        "metadata": canonical_json(version.metadata),
        "createdById": version.created_by_id,
        "updatedById": version.updated_by_id,
        "timestamp": version.timestamp,
    }


def item_to_version(item: dict[str, Any]) -> RegistryVersion:
    version_id = item["versionId"]
    prompt = PromptSettings.model_validate_json(item["prompt"])
    return RegistryVersion(
        id=version_id,
        prompt_id=item["promptId"],
        prompt=prompt.model_copy(update={"version": version_id}),
        description=item.get("description"),
        metadata=json.loads(item["metadata"]),
        created_by_id=item["createdById"],
        updated_by_id=item["updatedById"],
        timestamp=item["timestamp"],
    )


def _typed(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items()}


def _lost_race(error: ClientError) -> bool:
    code = error.response["Error"]["Code"]
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = error.response.get("CancellationReasons") or []
    if any(r.get("Code") in _LOST_RACE for r in reasons):
        return True
    # Some clients and emulators leave the reasons out; the message still lists them.
    message = error.response["Error"].get("Message", "")
    return any(code in message for code in _LOST_RACE)


def _neighbour(ulid_text: str, step: int) -> str | None:
    """The ULID just before (-1) or after (+1) `ulid_text`, None past either end."""
    value = int(ulid.ULID.from_str(ulid_text)) + step
    if value < 0 or value >= 2**128:
        return None
    return str(ulid.ULID.from_int(value))


class DynamoRegistryRepository:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        try:
            client("dynamodb").transact_write_items(TransactItems=items)
        except ClientError as error:
            if _lost_race(error):
                return False
            raise
        return True

    def _put(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None) -> dict:
        put: dict[str, Any] = {
            "TableName": self._table_name,
            "Item": _typed(item),
            "ConditionExpression": condition,
        }
        if values:
            put["ExpressionAttributeValues"] = _typed(values)
        return {"Put": put}

    def create(self, prompt: RegistryPrompt, version: RegistryVersion) -> bool:
        return self._transact(
            [
                self._put(entity_item(prompt), "attribute_not_exists(promptId)"),
                self._put(version_item(version), "attribute_not_exists(promptId)"),
            ]
        )

    def get(self, prompt_id: str) -> RegistryPrompt | None:
        item = self._table.get_item(Key={"promptId": prompt_id, "sk": ENTITY_SK}, ConsistentRead=True).get(
            "Item"
        )
        return item_to_entity(item) if item else None

    def replace(
        self, prompt: RegistryPrompt, expected_revision: int, version: RegistryVersion | None
    ) -> bool:
        writes = [
            self._put(
                entity_item(prompt),
                "revision = :seen AND ownerId = :owner",
                {":seen": expected_revision, ":owner": prompt.owner},
            )
        ]
        if version is not None:
            writes.append(self._put(version_item(version), "attribute_not_exists(promptId)"))
        return self._transact(writes)

    def delete(self, prompt_id: str, owner: str) -> bool:
        """The entity goes first, so nobody sees a prompt without its versions; versions left by a
        crash half-way are unreachable (every version read checks the entity) and harmless."""
        try:
            self._table.delete_item(
                Key={"promptId": prompt_id, "sk": ENTITY_SK},
                ConditionExpression=Attr("ownerId").eq(owner),
            )
        except ClientError as error:
            if _lost_race(error):
                return False
            raise
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("promptId").eq(prompt_id) & Key("sk").begins_with(VERSION_PREFIX),
            "ProjectionExpression": "promptId, sk",
        }
        with self._table.batch_writer() as batch:  # retries unprocessed items itself
            for key in items(self._table.query, kwargs):
                batch.delete_item(Key={"promptId": key["promptId"], "sk": key["sk"]})
        return True

    def get_version(self, prompt_id: str, version_id: str) -> RegistryVersion | None:
        item = self._table.get_item(
            Key={"promptId": prompt_id, "sk": VERSION_PREFIX + version_id}, ConsistentRead=True
        ).get("Item")
        return item_to_version(item) if item else None

    def page_by_owner(self, owner: str, page: PageRequest) -> Page[RegistryPrompt]:
        return self._page(Key("ownerId").eq(owner), "promptId", "", page, item_to_entity, index=OWNER_INDEX)

    def page_versions(self, prompt_id: str, page: PageRequest) -> Page[RegistryVersion]:
        return self._page(Key("promptId").eq(prompt_id), "sk", VERSION_PREFIX, page, item_to_version)

    def _page(
        self,
        partition: Any,
        sort_attribute: str,
        prefix: str,
        page: PageRequest,
        decode: Callable[[dict[str, Any]], Any],
        *,
        index: str | None = None,
    ) -> Page[Any]:
        """One newest-first page of a partition whose sort keys are `prefix` + ULID.

        The cursor is a key condition (a BETWEEN on the sort key, exclusive of the cursor's own
        id), so a page reads only what it returns plus one item that tells whether there is more.
        `ending_before` reads upwards from the cursor and reverses, so it returns the items just
        newer than the cursor, and `has_more` says whether there are newer ones still.
        """
        low, high, newest_first = _LOWEST, _HIGHEST, True
        if page.starting_after is not None:
            high = _neighbour(page.starting_after, -1)  # type: ignore[assignment]
        elif page.ending_before is not None:
            low, newest_first = _neighbour(page.ending_before, +1), False  # type: ignore[assignment]
        if low is None or high is None:
            return Page([], False)
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": partition & Key(sort_attribute).between(prefix + low, prefix + high),
            "ScanIndexForward": not newest_first,
        }
        if index is not None:
            kwargs["IndexName"] = index
        wanted = page.limit + 1
        found: list[dict[str, Any]] = []
        for result in pages(self._table.query, {**kwargs, "Limit": wanted}, lambda: wanted - len(found)):
            found.extend(result.get("Items", []))
            if len(found) >= wanted:
                break
        decoded = [decode(item) for item in found[: page.limit]]
        if not newest_first:
            decoded.reverse()
        return Page(decoded, len(found) > page.limit)
