"""List reads of the prompts table (domain.ports.PromptReader): a query's selection becomes the
key access that reads the fewest items, GetItem by table key or an index Query per partition, with
the selection's time range on the index's sort field as a key condition; planned by `key_access`
(pure, so it is unit-tested without DynamoDB). Nothing is ever a Scan: an admin's query that pins
no key reads the six status partitions of `byStatus`, merged. Every read is sized, and the reads
bounded, by the caller's `Reads` (domain.reads)."""

import heapq
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from typing import Any

import msgspec
from boto3.dynamodb.conditions import Key

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.pages import pages
from promptsvc.adapters.prompt_items import INDEXES, Index, to_prompt
from promptsvc.domain.names import composite
from promptsvc.domain.prompt import Prompt, public_view
from promptsvc.domain.query import MAX_VALUES, RANGE_FIELDS, Selection, TimeRange
from promptsvc.domain.reads import Reads
from promptsvc.domain.status import Status

# A key filter with more values than this (isInList on many threads or statuses) is read as one
# coarser partition (the user's), filtered, instead of one Query per value.
MAX_KEY_PARTITIONS = 10
_BATCH_GET = 100  # keys per BatchGetItem, DynamoDB's limit
_BY_STATUS = next(index for index in INDEXES if index.name == "byStatus")
_EVERY_STATUS = tuple(str(status) for status in Status)

Position = tuple[str, str]  # (the sort field's value, id): a prompt's place in an index's order
_Entry = tuple[Position, dict[str, Any] | None]  # an item at its position; None: reads stop here
_HIGHEST = ("\U0010ffff", "\U0010ffff")  # above every position (stored times and ids are ASCII)
_LOWEST = ("", "")


class Access(StrEnum):
    GET = "get"  # GetItem by table key (userId#id), one per value
    QUERY = "query"  # an index Query, one per partition value


class KeyAccess(msgspec.Struct, frozen=True):
    kind: Access
    index: Index | None = None
    keys: tuple[str, ...] = ()  # partition key values (QUERY) or table keys userId#id (GET)


def _combinations(values: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """Every composite key taking one value from each field's values, in order."""
    return tuple(composite(*parts) for parts in itertools.product(*values))


def key_access(selection: Selection, by: str = "createdAt") -> KeyAccess | None:
    """The cheapest access reading every prompt of the selection in order of `by` (a superset is
    fine: the lister re-checks the query's filters); None when no index reads it in that order. A
    non-admin's selection pins userId, so it reads only that user's partitions."""
    pinned = selection.pinned
    if "id" in pinned and "userId" in pinned:  # ids are per user: the table key is userId#id
        keys = _combinations([pinned["userId"], pinned["id"]])
        if len(keys) <= MAX_VALUES:
            return KeyAccess(Access.GET, keys=keys)  # a few items, ordered in memory
    # The first index (the most selective) whose partitions are few; else the one with fewest.
    candidates = [
        (index, _combinations([pinned[name] for name in index.partition]))
        for index in INDEXES
        if index.sort_field == by and all(name in pinned for name in index.partition)
    ]
    if candidates:
        few = [c for c in candidates if len(c[1]) <= MAX_KEY_PARTITIONS]
        index, keys = few[0] if few else min(candidates, key=lambda c: len(c[1]))
        return KeyAccess(Access.QUERY, index=index, keys=keys)
    if by == _BY_STATUS.sort_field:  # an admin's query pinning no key: every status partition
        return KeyAccess(Access.QUERY, index=_BY_STATUS, keys=_EVERY_STATUS)
    return None


def _position(item: dict[str, Any], by: str) -> Position:
    return (str(item[by]), str(item["id"]))


def _past(where: Position, after: Position | None, desc: bool) -> bool:
    return after is None or (where < after if desc else where > after)


def _sort_condition(index: Index, bounds: TimeRange | None, desc: bool, after: Position | None) -> Any:
    """The key condition on the index's sort attribute: the selection's range of its sort field,
    narrowed by the cursor (strictly past it on a unique sort key; from its value on, where
    prompts may tie, and the reader skips the ones not past it). None: no condition; False:
    nothing can match."""
    low, high = index.sort_bounds(bounds.low, bounds.high) if bounds else (None, None)
    strict_low = strict_high = False
    if after is not None:
        bound = index.sort_value(*after)
        if desc and (high is None or bound <= high):
            high, strict_high = bound, index.unique_sort
        if not desc and (low is None or bound >= low):
            low, strict_low = bound, index.unique_sort
    attribute = Key(index.sort_attribute)
    if low is not None and high is not None:
        return False if low > high else attribute.between(low, high)
    if low is not None:
        return attribute.gt(low) if strict_low else attribute.gte(low)
    if high is not None:
        return attribute.lt(high) if strict_high else attribute.lte(high)
    return None


def _tie(items: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """The trailing items sharing the last one's sort value (a tie the next read may go on with)."""
    if not items:
        return []
    last = items[-1][by]
    start = len(items)
    while start > 0 and items[start - 1][by] == last:
        start -= 1
    return items[start:]


def _stop(
    held: list[dict[str, Any]], items: list[dict[str, Any]], after: Position | None, desc: bool, by: str
) -> Position:
    """Where a partition whose reads stopped ends: before its held-back tie, else at its last item
    read (else at the cursor, or before everything)."""
    if held:
        return (str(held[0][by]), _HIGHEST[1] if desc else _LOWEST[1])
    if items:
        return _position(items[-1], by)
    return after or (_HIGHEST if desc else _LOWEST)


class DynamoPromptReader:
    """Reads a selection of the prompts table in the order of a time field, within its `Reads`."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def orders(self, selection: Selection) -> frozenset[str]:
        return frozenset(field for field in RANGE_FIELDS if key_access(selection, field) is not None)

    def in_order(
        self, selection: Selection, *, by: str, desc: bool, after: Position | None, reads: Reads
    ) -> Iterator[Prompt]:
        access = key_access(selection, by)
        if access is None:
            raise ValueError(f"no index reads this selection in order of {by}")
        if access.kind is Access.GET:
            items = list(self._get_many(access.keys))
            reads.took(0, len(items))
            ranked = sorted(((_position(i, by), i) for i in items), key=lambda e: e[0], reverse=desc)
            yield from (to_prompt(item) for where, item in ranked if _past(where, after, desc))
            return
        assert access.index is not None
        yield from self._merged(access.index, access.keys, selection, desc, after, reads)

    def count(self, selection: Selection, *, most: int) -> int | None:
        """Select COUNT where the keys and the range are key conditions; else the selection read."""
        ranged = (field for field in RANGE_FIELDS if field in selection.ranges)
        by = next((field for field in ranged if key_access(selection, field)), "createdAt")
        access = key_access(selection, by)
        index = access.index if access else None
        if (
            index is not None
            and access is not None
            and selection.exact
            and set(selection.pinned) <= set(index.partition)
            and set(selection.ranges) <= {index.sort_field}
        ):
            return self._count_keys(index, access.keys, selection.ranges.get(by), most)
        reads = Reads(most + 1)
        prompts = self.in_order(selection, by=by, desc=False, after=None, reads=reads)
        total = sum(1 for prompt in prompts if selection.admits(public_view(prompt)))
        return None if reads.denied or reads.read > most else total

    def _merged(
        self,
        index: Index,
        keys: tuple[str, ...],
        selection: Selection,
        desc: bool,
        after: Position | None,
        reads: Reads,
    ) -> Iterator[Prompt]:
        """Merge the partitions lazily, reading little more than the caller wants.

        The partitions' first reads share one grant (each takes its part of what the caller
        wants); a partition that runs dry reads only what the caller still wants. So a page over
        k partitions reads at most about twice the page plus k items, not k pages. Where a
        partition's reads were refused, the merge stops: past it, that partition may hold prompts
        it did not read.
        """
        condition = _sort_condition(index, selection.ranges.get(index.sort_field), desc, after)
        if condition is False or not keys:
            return
        share = reads.grant(len(keys))
        if share <= 0:
            return
        streams = [self._partition(index, key, condition, desc, after, share, reads) for key in keys]
        for _, item in heapq.merge(*streams, key=lambda entry: entry[0], reverse=desc):
            if item is None:
                return
            yield to_prompt(item)

    def _partition(
        self,
        index: Index,
        key: str,
        condition: Any,
        desc: bool,
        after: Position | None,
        first: int,
        reads: Reads,
    ) -> Iterator[_Entry]:
        """One partition's items in position order, strictly past `after`: `first` items, then what
        `reads` grants. Items tying on the sort value (`updatedAt`) come in any order, so each read
        is sorted by position and its trailing tie held back until the next read (which reads one
        more, so that a page whose last item ties with nothing needs no second read); a refused
        read ends the partition with a stop (an entry with no item)."""
        by = index.sort_field
        partition = Key(index.key_attribute).eq(key)
        granted = first + (0 if index.unique_sort else reads.extra())

        def next_read() -> int:
            nonlocal granted
            granted = reads.grant(1)
            granted += reads.extra() if granted and not index.unique_sort else 0
            return granted

        kwargs: dict[str, Any] = {
            "IndexName": index.name,
            "KeyConditionExpression": partition if condition is None else partition & condition,
            "ScanIndexForward": not desc,
            "Limit": granted,
        }
        held: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        more = False
        for page in pages(self._table.query, kwargs, next_read):
            read = page.get("Items", [])
            reads.took(granted, int(page.get("ScannedCount", len(read))))
            items = sorted(held + read, key=lambda item: _position(item, by), reverse=desc)
            more = "LastEvaluatedKey" in page
            held = _tie(items, by) if more and not index.unique_sort else []
            for item in items[: len(items) - len(held)]:
                where = _position(item, by)
                if _past(where, after, desc):
                    yield where, item
        if more:  # a read was refused
            yield _stop(held, items, after, desc, by), None

    def _count_keys(
        self, index: Index, keys: tuple[str, ...], bounds: TimeRange | None, most: int
    ) -> int | None:
        """Select COUNT over the partitions (DynamoDB still reads, and bills, every item it counts);
        None past `most` items."""
        condition = _sort_condition(index, bounds, desc=False, after=None)
        if condition is False:
            return 0
        total = scanned = 0

        def unread() -> int:
            return most + 1 - scanned

        for key in keys:
            partition = Key(index.key_attribute).eq(key)
            kwargs: dict[str, Any] = {
                "IndexName": index.name,
                "KeyConditionExpression": partition if condition is None else partition & condition,
                "Select": "COUNT",
                "Limit": unread(),
            }
            for page in pages(self._table.query, kwargs, unread):
                total += page["Count"]
                scanned += page.get("ScannedCount", page["Count"])
                if scanned > most:
                    return None
        return total

    def _get_many(self, keys: tuple[str, ...]) -> Iterable[dict[str, Any]]:
        """The items with these table keys that exist: BatchGetItem, 100 keys a call, following
        its unprocessed keys with a backoff (throttled, as AWS advises)."""
        dynamodb = self._table.meta.client  # the resource's client: Python types, as with the Table
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _BATCH_GET):
            request = {self._table_name: {"Keys": [{"pk": k} for k in unique[start : start + _BATCH_GET]]}}
            for attempt in itertools.count():
                result = dynamodb.batch_get_item(RequestItems=request)
                yield from result["Responses"].get(self._table_name, [])
                request = result.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
