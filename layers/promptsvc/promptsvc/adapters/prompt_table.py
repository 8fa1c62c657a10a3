"""The prompts table (DynamoDB) as the lifecycle store: new prompts, reads by key, and the
conditional writes of a prompt's life. The item format is adapters/prompt_items.py; list reads
are adapters/prompt_reads.py."""

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

import msgspec
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from msgspec.structs import replace

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.conflicts import retry_conflicts
from promptsvc.adapters.limit_table import counter_update
from promptsvc.adapters.pages import pages
from promptsvc.adapters.prompt_items import SORT_ATTRIBUTE, derived_keys, table_key, to_item, to_prompt
from promptsvc.adapters.usage_table import usage_update
from promptsvc.domain.item_size import check_item_size
from promptsvc.domain.lanes import Lane, holds_fast_slot, lane_item
from promptsvc.domain.limits import day_of_stamp, in_flight_item, in_flight_refused, tokens_item, tokens_spent
from promptsvc.domain.prompt import Claim, Prompt, PromptChanges, RunState, check_changes
from promptsvc.domain.status import Status, is_terminal, sources_for
from promptsvc.domain.usage import completion_count, day_of

_BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem
_RUN_STATE_READ = {
    "ConsistentRead": True,
    "ProjectionExpression": "pk, #status, runCount",
    "ExpressionAttributeNames": {"#status": "status"},
}
_PLAIN = TypeDeserializer()
_DELETE_TRIES = 10  # a removal re-reads a prompt that changed under it at most this often


def _condition_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _run_states_in(answer: dict[str, Any], table: str) -> tuple[dict[str, RunState], set[str]]:
    """A BatchGetItem answer's run states by pk, and the pks it left unprocessed."""
    found = {
        item["pk"]: RunState(Status(item["status"]), int(item["runCount"]))
        for item in answer.get("Responses", {}).get(table, [])
    }
    unprocessed = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
    return found, {key["pk"] for key in unprocessed}


class _FastLaneFull(Exception):
    """The add's transaction was cancelled by its lane counter's condition alone."""


def _status_keys(user_id: str, status: Status) -> dict[str, str]:
    """The derived key attributes a change to `status` rewrites (userStatus)."""
    return derived_keys({"userId": user_id, "status": str(status)})


class DynamoPromptStore:
    """The lifecycle store (domain.ports.PromptStore) on the prompts table."""

    def __init__(
        self,
        table_name: str,
        retention_days: int = 30,
        *,
        limits_table: str = "",
        usage_table: str = "",
        fast_lane_per_user: int = 0,
    ) -> None:
        self._table_name = table_name
        self._retention = timedelta(days=retention_days)
        self._limits_table = limits_table  # a prompt's end gives back its key's in-flight slot there
        self._usage_table = usage_table  # a completion adds to its usage counters there
        # An add puts the prompt in its user's fast lane while the user has fewer there (the
        # limits table counts them; domain/lanes.py); 0, or no limits table: lanes are off.
        self._fast_lane = fast_lane_per_user if limits_table else 0

    def _holds_slot(self, prompt: Prompt) -> bool:
        return bool(self._limits_table and prompt.keyId and not is_terminal(prompt.status))

    def _holds_lane(self, prompt: Prompt) -> bool:
        return bool(self._limits_table) and holds_fast_slot(prompt.lane, prompt.status)

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def put_new(self, prompt: Prompt, in_flight_limit: int = 0) -> Prompt | None:
        """With lanes on, the prompt as stored has its lane: the fast lane's slot is taken in the
        same transaction (conditional on the user's count being below `fast_lane_per_user`); when
        that condition alone refuses it, the prompt is written again in the bulk lane (a second
        transaction: a bulk-lane add costs one call more)."""
        item = to_item(prompt)
        check_item_size(item)  # ItemTooLarge instead of a write DynamoDB would refuse
        if self._fast_lane:
            fast = replace(prompt, lane=Lane.FAST)
            try:
                return self._put_with_slot(fast, to_item(fast), in_flight_limit)
            except _FastLaneFull:
                bulk = replace(prompt, lane=Lane.BULK)
                return self._put_with_slot(bulk, to_item(bulk), in_flight_limit)
        return self._put_with_slot(prompt, item, in_flight_limit)

    def _put_with_slot(self, prompt: Prompt, item: dict[str, Any], limit: int) -> Prompt | None:
        """The prompt, its key's in-flight slot (when it carries a key) and its fast lane's slot
        (when its lane is fast) in one TransactWriteItems: a slot is held exactly when its prompt
        is stored, whatever fails or times out between (a retried add finds the prompt and takes
        nothing)."""
        put = {"TableName": self._table_name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
        items: list[dict[str, Any]] = [{"Put": put}]
        if self._limits_table and prompt.keyId:
            items.append({"Update": self._take(in_flight_item(prompt.keyId), limit)})
        if prompt.lane == Lane.FAST:
            items.append({"Update": self._take(lane_item(prompt.userId), self._fast_lane)})
        if len(items) == 1:
            return self._put_alone(prompt, item)
        try:
            retry_conflicts(lambda: self._table.meta.client.transact_write_items(TransactItems=items))
        except ClientError as error:
            # One reason per item, in order, each failed condition named (AWS and moto alike):
            # the prompt's id taken wins, then the key's limit; the lane's alone means bulk.
            reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons") or []]
            failed = [code == "ConditionalCheckFailed" for code in reasons]
            if not any(failed):
                raise
            if failed[0]:
                return None  # the owner has a prompt of that id: nothing written
            if prompt.keyId and self._limits_table and failed[1]:
                raise in_flight_refused(limit) from error
            if prompt.lane == Lane.FAST and failed[-1]:
                raise _FastLaneFull from error
            raise
        return prompt

    def _put_alone(self, prompt: Prompt, item: dict[str, Any]) -> Prompt | None:
        """A prompt that takes no slot: one conditional PutItem."""
        try:
            self._table.put_item(Item=item, ConditionExpression=Attr("pk").not_exists())
        except ClientError as error:
            if _condition_failed(error):
                return None
            raise
        return prompt

    def _take(self, counter: str, limit: int) -> dict[str, Any]:
        """A transaction's update adding 1 to a limits-table counter, below `limit` (0: no limit)."""
        slot = counter_update(counter, 1)
        take: dict[str, Any] = {"TableName": self._limits_table, **slot}
        if limit:
            take["ConditionExpression"] = "attribute_not_exists(n) OR n < :limit"
            take["ExpressionAttributeValues"] = {**slot["ExpressionAttributeValues"], ":limit": limit}
        return take

    def get(self, user_id: str, prompt_id: str) -> Prompt | None:
        item = self._table.get_item(Key=table_key(user_id, prompt_id), ConsistentRead=True).get("Item")
        return to_prompt(item) if item else None

    def delete(self, user_id: str, prompt_id: str) -> Prompt | None:
        """Delete the prompt; the prompt as it was, None if there was none. An unfinished prompt
        holding an in-flight slot (or a fast-lane slot) is deleted in one transaction with the
        slots' give-back,
        conditional on the state read (re-read and tried again when it changed meanwhile), so the
        slot is given back exactly once: by this, or by the prompt's terminal transition."""
        key = table_key(user_id, prompt_id)
        for _ in range(_DELETE_TRIES):
            if not self._limits_table:
                break
            prompt = self.get(user_id, prompt_id)
            if prompt is None or not (self._holds_slot(prompt) or self._holds_lane(prompt)):
                break
            delete = {
                "Delete": {
                    "TableName": self._table_name,
                    "Key": key,
                    "ConditionExpression": "#status = :seen AND runCount = :runs AND leaseUntil = :lease",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": (
                        {":seen": str(prompt.status), ":runs": prompt.runCount, ":lease": prompt.leaseUntil}
                    ),
                }
            }
            if self._transact([delete, *self._slots_back(prompt)]):
                return prompt
        result = self._table.delete_item(Key=key, ReturnValues="ALL_OLD")
        item = result.get("Attributes")
        return to_prompt(item) if item else None

    def _slots_back(self, prompt: Prompt, *counts: dict[str, Any]) -> list[dict[str, Any]]:
        """The give-back of the slots an unfinished `prompt` holds (its key's in-flight slot, its
        fast lane's) and `counts` (more counter updates), as transaction items on the limits table."""
        backs = []
        if self._holds_slot(prompt):
            backs.append(counter_update(in_flight_item(prompt.keyId), -1))
        if self._holds_lane(prompt):
            backs.append(counter_update(lane_item(prompt.userId), -1))
        return self._counter_items(*backs, *counts)

    def _counter_items(self, *counters: dict[str, Any]) -> list[dict[str, Any]]:
        """Counter updates (limits_table.counter_update's), as transaction items on the limits table."""
        return [
            {
                "Update": {
                    "TableName": self._limits_table,
                    "Key": counter["Key"],
                    "UpdateExpression": counter["UpdateExpression"],
                    "ExpressionAttributeValues": counter["ExpressionAttributeValues"],
                }
            }
            for counter in counters
        ]

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        """`items` (the prompt's write first, then counter updates), all or nothing
        (TransactWriteItems, through the Table resource's client: plain values; a conflict with
        another transaction is tried again); False when the prompt's condition failed (nothing
        written)."""
        try:
            retry_conflicts(lambda: self._table.meta.client.transact_write_items(TransactItems=items))
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def run_state(self, user_id: str, prompt_id: str) -> RunState | None:
        item = self._table.get_item(
            Key=table_key(user_id, prompt_id),
            ConsistentRead=True,
            ProjectionExpression="#status, runCount",
            ExpressionAttributeNames={"#status": "status"},
        ).get("Item")
        return RunState(Status(item["status"]), int(item["runCount"])) if item else None

    def run_states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RunState | None]:
        """BatchGetItem, consistent and projected, 100 keys a call (the Table resource's client
        takes and gives plain values); keys DynamoDB left unprocessed (it may, under load) are
        left out."""
        by_pk = {table_key(user_id, prompt_id)["pk"]: (user_id, prompt_id) for user_id, prompt_id in keys}
        pks = list(by_pk)
        states: dict[tuple[str, str], RunState | None] = {}
        for start in range(0, len(pks), _BATCH_GET_KEYS):
            asked = pks[start : start + _BATCH_GET_KEYS]
            request = {"Keys": [{"pk": pk} for pk in asked], **_RUN_STATE_READ}
            answer = self._table.meta.client.batch_get_item(RequestItems={self._table_name: request})
            found, skipped = _run_states_in(answer, self._table_name)
            states.update({by_pk[pk]: found.get(pk) for pk in asked if pk not in skipped})
        return states

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
            found.extend(to_prompt(item) for item in page.get("Items", []))
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
        return self._apply(prompt, _Write("SET requeuedAt = :now", condition, {}, values)) is not None

    def transition(
        self,
        prompt: Prompt,
        target: Status,
        *,
        run_count: int | None = None,
        **changes: Unpack[PromptChanges],
    ) -> Prompt | None:
        """Conditional status change; None when the stored prompt may not make this move."""
        fields: dict[str, Any] = dict(changes)
        self._check_grown(prompt, fields)
        expires = int((datetime.now(UTC) + self._retention).timestamp()) if is_terminal(target) else None
        write = _transition(prompt, target, fields, expires, run_count)
        slot = is_terminal(target) and (self._holds_slot(prompt) or self._holds_lane(prompt))
        counted = target is Status.COMPLETED and bool(self._usage_table)
        if not (slot or counted):
            return self._apply(prompt, write)
        # The prompt's end, with what it settles elsewhere in one transaction: the give-back of its
        # key's in-flight slot (and the key's tokens of the day), and a completion's usage
        # counters. The transition's condition (from a status that may move there) holds once in
        # a prompt's life, so each is counted exactly once.
        update = {
            "Update": {
                "TableName": self._table_name,
                "Key": table_key(prompt.userId, prompt.id),
                "UpdateExpression": write.update,
                "ConditionExpression": write.condition,
                "ExpressionAttributeNames": {"#status": "status", **write.names},
                "ExpressionAttributeValues": write.values,
            }
        }
        now = write.values[":now"]
        items = [update]
        if slot:
            tokens = tokens_spent(str(target), fields) if self._holds_slot(prompt) else 0
            day = day_of_stamp(now)
            spent = (
                (counter_update(tokens_item(prompt.keyId, day.name), tokens, day.expires_at),)
                if tokens
                else ()
            )
            items += self._slots_back(prompt, *spent)
        if counted:
            model_id = str(fields.get("answeredBy") or prompt.modelId)
            usage = usage_update(prompt.userId, day_of(now), model_id, completion_count(fields))
            items.append({"Update": {"TableName": self._usage_table, **usage}})
        if not self._transact(items):
            return None
        # A transaction returns no item: the prompt as the write left it (fields it did not set
        # are as read; a lease renewal meanwhile is the only change a terminal prompt drops).
        changed = {**to_item(prompt), **fields, "status": str(target), "updatedAt": now}
        return to_prompt(changed)

    def claim(self, prompt: Prompt, now: str, lease_until_ms: int) -> Prompt | None:
        """Start a run of the prompt *as it was read*: running, runCount+1, lastRun, a lease.

        Conditional on status and runCount being unchanged since the read, so of two consumers
        holding the same message only one wins. Claiming a `running` prompt (its lease expired:
        its consumer died) also counts a crash.
        """
        condition = _Write(
            condition="#status = :seen AND runCount = :runs",
            values={":seen": str(prompt.status), ":runs": prompt.runCount},
        )
        run = _start_run(prompt.userId, now, lease_until_ms, condition, prompt.status is Status.RUNNING)
        return self._apply((prompt.userId, prompt.id), run)

    def claim_waiting(self, prompt_id: str, user_id: str, now: str, lease_until_ms: int) -> Claim:
        """Claim a scheduled or errored prompt in one conditional write, without reading it first;
        a refused write returns the prompt as it found it (ReturnValuesOnConditionCheckFailure),
        so the claimer needs no read to decide what else to do."""
        condition = _Write(
            condition="(#status = :scheduled OR #status = :errored) AND userId = :user",
            values={":scheduled": str(Status.SCHEDULED), ":errored": str(Status.ERRORED), ":user": user_id},
        )
        found: list[Prompt] = []
        claimed = self._apply(
            (user_id, prompt_id), _start_run(user_id, now, lease_until_ms, condition, False), found
        )
        return Claim(claimed, found[0] if found else None)

    def renew_lease(self, prompt: Prompt, lease_until_ms: int) -> bool:
        """Extend the lease of the run `prompt` describes; False once that run is over."""
        return self.update_if(prompt, Status.RUNNING, leaseUntil=lease_until_ms) is not None

    def release(self, prompt: Prompt, now: str) -> bool:
        """Give an unfinished run back (a draining consumer): scheduled again, the run uncounted."""
        return self._apply(prompt, _release(prompt, now)) is not None

    def claim_repair(self, prompt: Prompt, now_ms: int, stale_before_ms: int) -> bool:
        condition = (
            "#status = :status AND runCount = :runs "
            "AND (attribute_not_exists(repairClaimedAt) OR repairClaimedAt < :stale)"
        )
        values = {":status": str(prompt.status), ":runs": prompt.runCount, ":now": now_ms}
        values[":stale"] = stale_before_ms
        write = _Write("SET repairClaimedAt = :now", condition, {}, values)
        return self._apply(prompt, write) is not None

    def update_if(self, prompt: Prompt, status: Status, **changes: Unpack[PromptChanges]) -> Prompt | None:
        """Set fields only while the prompt is in `status` on the same run (runCount)."""
        fields: dict[str, Any] = dict(changes)
        self._check_grown(prompt, fields)
        names = {"#status": "status", **{f"#f{i}": name for i, name in enumerate(fields)}}
        values: dict[str, Any] = {":status": str(status), ":runs": prompt.runCount}
        values.update({f":f{i}": value for i, value in enumerate(fields.values())})
        update = "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
        return self._apply(prompt, _Write(update, "#status = :status AND runCount = :runs", names, values))

    def _check_grown(self, prompt: Prompt, fields: dict[str, Any]) -> None:
        """ItemTooLarge, before anything is sent, when setting `fields` on the prompt's item would
        pass DynamoDB's item limit (which would refuse the whole update); ValueError when a field
        is not one a lifecycle write may set."""
        check_changes(fields)
        check_item_size({**to_item(prompt), **fields})

    def _apply(
        self, which: Prompt | tuple[str, str], write: "_Write", found: list[Prompt] | None = None
    ) -> Prompt | None:
        """The conditional UpdateItem; the prompt as it is after it, None if the condition failed
        (then, with `found`, the prompt as the write found it is added to it, if there is one)."""
        user_id, prompt_id = (which.userId, which.id) if isinstance(which, Prompt) else which
        refused = {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"} if found is not None else {}
        try:
            result = self._table.update_item(
                Key=table_key(user_id, prompt_id),
                UpdateExpression=write.update,
                ConditionExpression=write.condition,
                ExpressionAttributeNames={"#status": "status", **write.names},
                ExpressionAttributeValues=write.values,
                ReturnValues="ALL_NEW",
                **refused,
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise
            item = error.response.get("Item")  # typed: the error is not deserialized for a resource
            if found is not None and item:
                found.append(to_prompt({name: _PLAIN.deserialize(value) for name, value in item.items()}))
            return None
        return to_prompt(result["Attributes"])


# ----------------------------------------------------------------------------------------------
# The update expressions of the lifecycle writes (`#status` names the status attribute in each)


class _Write(msgspec.Struct, frozen=True):
    update: str = ""
    condition: str = ""
    names: dict[str, str] = msgspec.field(default_factory=dict)
    values: dict[str, Any] = msgspec.field(default_factory=dict)


def _transition(
    prompt: Prompt, target: Status, fields: dict[str, Any], expires: int | None, run_count: int | None
) -> _Write:
    """To `target` from a status that may move there (and on run `run_count`), setting `fields`."""
    fields = dict(fields)
    values: dict[str, Any] = {
        ":target": str(target),
        ":userStatus": _status_keys(prompt.userId, target)["userStatus"],
        ":now": fields.pop("updatedAt"),
    }
    sets = ["#status = :target", "userStatus = :userStatus", "updatedAt = :now"]
    for i, value in enumerate(fields.values()):
        sets.append(f"#f{i} = :f{i}")
        values[f":f{i}"] = value
    if expires is not None:
        sets.append("expiresAt = :expires")
        values[":expires"] = expires
    sources = sorted(sources_for(target))
    values.update({f":src{i}": str(s) for i, s in enumerate(sources)})
    condition = (
        "attribute_exists(pk) AND (" + " OR ".join(f"#status = :src{i}" for i in range(len(sources))) + ")"
    )
    if run_count is not None:
        condition += " AND runCount = :runCount"
        values[":runCount"] = run_count
    names = {f"#f{i}": name for i, name in enumerate(fields)}
    return _Write("SET " + ", ".join(sets), condition, names, values)


def _start_run(user_id: str, now: str, lease_until_ms: int, when: _Write, count_crash: bool) -> _Write:
    """What every claim writes, on its condition `when`: running, runCount+1, lastRun, the lease
    (and a crash, when the run it takes over died)."""
    values: dict[str, Any] = {
        ":running": str(Status.RUNNING),
        ":userStatus": _status_keys(user_id, Status.RUNNING)["userStatus"],
        ":now": now,
        ":one": 1,
        ":lease": lease_until_ms,
        **when.values,
    }
    update = (
        "SET #status = :running, userStatus = :userStatus, lastRun = :now, updatedAt = :now, "
        "leaseUntil = :lease ADD runCount :one"
    )
    if count_crash:
        update += ", crashCount :one"
    return _Write(update, when.condition, {}, values)


def _release(prompt: Prompt, now: str) -> _Write:
    values: dict[str, Any] = {
        ":scheduled": str(Status.SCHEDULED),
        ":userStatus": _status_keys(prompt.userId, Status.SCHEDULED)["userStatus"],
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
    return _Write(update, "#status = :running AND runCount = :runs", {}, values)
