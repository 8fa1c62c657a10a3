"""The prompts table (DynamoDB). Items hold the prompt plus derived keys:

- `pk` = userId#id, the table's key: prompt ids are per user (domain.names);
- `sk` = createdAt#id: the sort key of every index, a unique time-ordered position;
- `userThread` = userId#threadId and `userStatus` = userId#status: a user's thread or status is one
  index partition, so filtering by them reads only the matching items;
- `expiresAt`: epoch seconds, set once a prompt is terminal (the table's TTL attribute).
"""

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.pages import pages
from promptsvc.domain.item_size import check_item_size
from promptsvc.domain.names import scoped
from promptsvc.domain.prompt import Prompt, RunState
from promptsvc.domain.query import SORT_ATTRIBUTE, Index
from promptsvc.domain.status import Status, is_terminal, sources_for

_PROMPT_FIELDS = tuple(Prompt.__dataclass_fields__)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def item_to_dict(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in item.items()}


def dict_to_prompt(item: dict[str, Any]) -> Prompt:
    data = {k: _plain(item[k]) for k in _PROMPT_FIELDS if k in item}
    data["status"] = Status(data["status"])
    return Prompt(**data)


_BATCH_GET = 100


def _key(user_id: str, prompt_id: str) -> dict[str, str]:
    return {"pk": scoped(user_id, prompt_id)}


def _condition_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class DynamoPromptRepository:
    def __init__(self, table_name: str, retention_days: int = 30) -> None:
        self._table_name = table_name
        self._retention = timedelta(days=retention_days)

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def to_item(self, prompt: Prompt) -> dict[str, Any]:
        item: dict[str, Any] = {k: getattr(prompt, k) for k in _PROMPT_FIELDS}
        item["status"] = str(prompt.status)
        item["pk"] = scoped(prompt.userId, prompt.id)
        item[SORT_ATTRIBUTE] = prompt.sort_key
        item["userThread"] = f"{prompt.userId}#{prompt.threadId}"
        item["userStatus"] = f"{prompt.userId}#{prompt.status}"
        return item

    def put_new(self, prompt: Prompt) -> Prompt | None:
        item = self.to_item(prompt)
        check_item_size(item)  # ItemTooLarge instead of a write DynamoDB would refuse
        try:
            self._table.put_item(Item=item, ConditionExpression=Attr("pk").not_exists())
        except ClientError as error:
            if _condition_failed(error):
                return None
            raise
        return prompt

    def get(self, user_id: str, prompt_id: str) -> Prompt | None:
        item = self._table.get_item(Key=_key(user_id, prompt_id), ConsistentRead=True).get("Item")
        return dict_to_prompt(item) if item else None

    def delete(self, user_id: str, prompt_id: str) -> Prompt | None:
        result = self._table.delete_item(Key=_key(user_id, prompt_id), ReturnValues="ALL_OLD")
        item = result.get("Attributes")
        return dict_to_prompt(item) if item else None

    def run_state(self, user_id: str, prompt_id: str) -> RunState | None:
        item = self._table.get_item(
            Key=_key(user_id, prompt_id),
            ConsistentRead=True,
            ProjectionExpression="#status, runCount",
            ExpressionAttributeNames={"#status": "status"},
        ).get("Item")
        return RunState(Status(item["status"]), int(item["runCount"])) if item else None

    def waiting_since(self, cutoff: str, limit: int) -> list[Prompt]:
        """The byStatus index's `scheduled` partition, oldest first, up to `cutoff`."""
        kwargs: dict[str, Any] = {
            "IndexName": "byStatus",
            "KeyConditionExpression": Key("status").eq(str(Status.SCHEDULED))
            & Key(SORT_ATTRIBUTE).lt(cutoff),
            "FilterExpression": Attr("updatedAt").lt(cutoff)
            & (Attr("requeuedAt").not_exists() | Attr("requeuedAt").lt(cutoff)),
            "ScanIndexForward": True,
            "Limit": max(limit, 100),
        }
        found: list[Prompt] = []
        for page in itertools.islice(
            pages(self._table.query, kwargs), 10
        ):  # a bounded read, whatever the backlog
            found.extend(dict_to_prompt(item) for item in page.get("Items", []))
            if len(found) >= limit:
                break
        return found[:limit]

    def mark_requeued(self, prompt: Prompt, now: str, cutoff: str) -> bool:
        condition = (
            "#status = :scheduled AND runCount = :runs "
            "AND (attribute_not_exists(requeuedAt) OR requeuedAt < :cutoff)"
        )
        values = {
            ":scheduled": str(Status.SCHEDULED),
            ":runs": prompt.runCount,
            ":cutoff": cutoff,
            ":now": now,
        }
        updated = self._update(prompt, "SET requeuedAt = :now", condition, {"#status": "status"}, values)
        return updated is not None

    def transition(
        self, prompt: Prompt, target: Status, *, run_count: int | None = None, **fields: Any
    ) -> Prompt | None:
        """Conditional status change; None when the stored prompt may not make this move."""
        self._check_grown(prompt, fields)
        now = fields.pop("updatedAt")
        values: dict[str, Any] = {
            ":target": str(target),
            ":userStatus": f"{prompt.userId}#{target}",
            ":now": now,
        }
        sets = ["#status = :target", "userStatus = :userStatus", "updatedAt = :now"]
        for i, value in enumerate(fields.values()):
            sets.append(f"#f{i} = :f{i}")
            values[f":f{i}"] = value
        names = {"#status": "status", **{f"#f{i}": name for i, name in enumerate(fields)}}
        if is_terminal(target):
            sets.append("expiresAt = :expires")
            values[":expires"] = int((datetime.now(UTC) + self._retention).timestamp())
        sources = sorted(sources_for(target))
        condition = " OR ".join(f"#status = :src{i}" for i in range(len(sources)))
        values.update({f":src{i}": str(s) for i, s in enumerate(sources)})
        condition = f"attribute_exists(pk) AND ({condition})"
        if run_count is not None:
            condition += " AND runCount = :runCount"
            values[":runCount"] = run_count
        return self._update(prompt, "SET " + ", ".join(sets), condition, names, values)

    def claim(self, prompt: Prompt, now: str, lease_until_ms: int) -> Prompt | None:
        """Start a run of the prompt *as it was read*: running, runCount+1, lastRun, a lease.

        Conditional on status and runCount being unchanged since the read, so of two consumers
        holding the same message only one wins. Claiming a `running` prompt (its lease expired:
        its consumer died) also counts a crash.
        """
        return self._start_run(
            prompt.id,
            prompt.userId,
            now,
            lease_until_ms,
            "#status = :seen AND runCount = :runs",
            {":seen": str(prompt.status), ":runs": prompt.runCount},
            count_crash=prompt.status is Status.RUNNING,
        )

    def claim_waiting(self, prompt_id: str, user_id: str, now: str, lease_until_ms: int) -> Prompt | None:
        """Claim a scheduled or errored prompt in one conditional write, without reading it first."""
        return self._start_run(
            prompt_id,
            user_id,
            now,
            lease_until_ms,
            "(#status = :scheduled OR #status = :errored) AND userId = :user",
            {":scheduled": str(Status.SCHEDULED), ":errored": str(Status.ERRORED), ":user": user_id},
        )

    def _start_run(
        self,
        prompt_id: str,
        user_id: str,
        now: str,
        lease_until_ms: int,
        condition: str,
        condition_values: dict[str, Any],
        *,
        count_crash: bool = False,
    ) -> Prompt | None:
        """What every claim writes: running, runCount+1, lastRun, the lease (and a crash)."""
        values: dict[str, Any] = {
            ":running": str(Status.RUNNING),
            ":userStatus": f"{user_id}#{Status.RUNNING}",
            ":now": now,
            ":one": 1,
            ":lease": lease_until_ms,
            **condition_values,
        }
        update = (
            "SET #status = :running, userStatus = :userStatus, lastRun = :now, updatedAt = :now, "
            "leaseUntil = :lease ADD runCount :one"
        )
        if count_crash:
            update += ", crashCount :one"
        return self._update((user_id, prompt_id), update, condition, {"#status": "status"}, values)

    def renew_lease(self, prompt: Prompt, lease_until_ms: int) -> bool:
        """Extend the lease of the run `prompt` describes; False once that run is over."""
        return self.update_if(prompt, Status.RUNNING, leaseUntil=lease_until_ms) is not None

    def release(self, prompt: Prompt, now: str) -> bool:
        """Give an unfinished run back (a draining consumer): scheduled again, the run uncounted."""
        values: dict[str, Any] = {
            ":scheduled": str(Status.SCHEDULED),
            ":userStatus": f"{prompt.userId}#{Status.SCHEDULED}",
            ":now": now,
            ":running": str(Status.RUNNING),
            ":runs": prompt.runCount,
            ":previous": prompt.runCount - 1,
            ":zero": 0,
        }
        update = (
            "SET #status = :scheduled, userStatus = :userStatus, updatedAt = :now, "
            "runCount = :previous, leaseUntil = :zero"
        )
        condition = "#status = :running AND runCount = :runs"
        return self._update(prompt, update, condition, {"#status": "status"}, values) is not None

    def update_if(self, prompt: Prompt, status: Status, **fields: Any) -> Prompt | None:
        """Set fields only while the prompt is in `status` on the same run (runCount)."""
        self._check_grown(prompt, fields)
        names = {"#status": "status", **{f"#f{i}": name for i, name in enumerate(fields)}}
        values: dict[str, Any] = {":status": str(status), ":runs": prompt.runCount}
        values.update({f":f{i}": value for i, value in enumerate(fields.values())})
        update = "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
        condition = "#status = :status AND runCount = :runs"
        return self._update(prompt, update, condition, names, values)

    def _check_grown(self, prompt: Prompt, fields: dict[str, Any]) -> None:
        """ItemTooLarge, before anything is sent, when setting `fields` on the prompt's item would
        pass DynamoDB's item limit (which would refuse the whole update)."""
        check_item_size({**self.to_item(prompt), **fields})

    def _update(
        self,
        which: Prompt | tuple[str, str],
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> Prompt | None:
        user_id, prompt_id = (which.userId, which.id) if isinstance(which, Prompt) else which
        try:
            result = self._table.update_item(
                Key=_key(user_id, prompt_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _condition_failed(error):
                return None
            raise
        return dict_to_prompt(result["Attributes"])

    # -- reads for listing ------------------------------------------------------------------

    def get_many(self, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        """The prompts with these table keys (`userId#id`), those that exist: BatchGetItem, 100
        keys a call (DynamoDB's limit), following its unprocessed keys."""
        dynamodb = self._table.meta.client  # the resource's client: Python types, as with the Table
        items: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _BATCH_GET):
            request = {self._table_name: {"Keys": [{"pk": k} for k in unique[start : start + _BATCH_GET]]}}
            for attempt in itertools.count():
                result = dynamodb.batch_get_item(RequestItems=request)
                items += [item_to_dict(item) for item in result["Responses"].get(self._table_name, [])]
                request = result.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))  # throttled: back off, as AWS advises
        return items

    def query_partition(
        self,
        index: Index,
        key: str,
        *,
        after_sk: str | None,
        desc: bool,
        page_size: int,
        next_page_size: Callable[[], int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        condition: Any = Key(index.key_attribute).eq(key)
        if after_sk is not None:
            bound = Key(SORT_ATTRIBUTE)
            condition = condition & (bound.lt(after_sk) if desc else bound.gt(after_sk))
        kwargs: dict[str, Any] = {
            "IndexName": index.name,
            "KeyConditionExpression": condition,
            "ScanIndexForward": not desc,
            "Limit": page_size,
        }
        for page in pages(self._table.query, kwargs, next_page_size):
            for item in page.get("Items", []):
                yield item_to_dict(item)

    def count_partition(self, index: Index, key: str) -> int:
        kwargs: dict[str, Any] = {
            "IndexName": index.name,
            "KeyConditionExpression": Key(index.key_attribute).eq(key),
            "Select": "COUNT",
        }
        return sum(page["Count"] for page in pages(self._table.query, kwargs))

    def scan(self) -> Iterator[dict[str, Any]]:
        for page in pages(self._table.scan, {}):
            for item in page.get("Items", []):
                yield item_to_dict(item)
