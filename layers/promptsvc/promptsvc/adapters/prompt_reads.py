"""List reads of the prompts table (domain.ports.PromptReader): a query's selection becomes the
key access that reads the fewest items, GetItem by table key, an index Query per partition, or a
Scan, planned here by `key_access` (pure, so it is unit-tested without DynamoDB)."""

import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key

from promptsvc.adapters.clients import dynamodb_table
from promptsvc.adapters.pages import pages
from promptsvc.adapters.prompt_items import INDEXES, SORT_ATTRIBUTE, Index, to_item, to_prompt
from promptsvc.domain.names import composite
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.query import MAX_VALUES, Selection

# A key filter with more values than this (isInList on many threads or statuses) is read as one
# coarser partition (the user's), filtered, instead of one Query per value.
MAX_KEY_PARTITIONS = 10
_BATCH_GET = 100  # keys per BatchGetItem, DynamoDB's limit


class Access(StrEnum):
    GET = "get"  # GetItem by table key (userId#id), one per value
    QUERY = "query"  # an index Query, one per partition value
    SCAN = "scan"  # a table Scan: admin queries with no key filter only


@dataclass(frozen=True)
class KeyAccess:
    kind: Access
    index: Index | None = None
    keys: tuple[str, ...] = ()  # partition key values (QUERY) or table keys userId#id (GET)


def _combinations(values: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """Every composite key taking one value from each field's values, in order."""
    return tuple(composite(*parts) for parts in itertools.product(*values))


def key_access(selection: Selection) -> KeyAccess:
    """The cheapest access reading every prompt of the selection (a superset is fine: the lister
    re-checks the query's filters). A non-admin's selection pins userId, so it is never a Scan."""
    pinned = selection.pinned
    if "id" in pinned and "userId" in pinned:  # ids are per user: the table key is userId#id
        keys = _combinations([pinned["userId"], pinned["id"]])
        if len(keys) <= MAX_VALUES:
            return KeyAccess(Access.GET, keys=keys)
    # The first index (the most selective) whose partitions are few; else the one with fewest.
    candidates = [
        (index, _combinations([pinned[name] for name in index.partition]))
        for index in INDEXES
        if all(name in pinned for name in index.partition)
    ]
    if candidates:
        few = [c for c in candidates if len(c[1]) <= MAX_KEY_PARTITIONS]
        index, keys = few[0] if few else min(candidates, key=lambda c: len(c[1]))
        return KeyAccess(Access.QUERY, index=index, keys=keys)
    return KeyAccess(Access.SCAN)


def _past(after: str | None, desc: bool) -> Callable[[Prompt], bool]:
    return lambda p: after is None or (p.sort_key < after if desc else p.sort_key > after)


class DynamoPromptReader:
    """Reads a selection of the prompts table in sort-key order (createdAt#id)."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _table(self) -> Any:
        return dynamodb_table(self._table_name)

    def in_order(
        self, selection: Selection, *, desc: bool, after: str | None, wanted: Callable[[], int]
    ) -> Iterator[Prompt]:
        access = key_access(selection)
        if access.kind is Access.QUERY:
            assert access.index is not None
            yield from self._merged(access.index, access.keys, desc, after, wanted)
            return
        items = self._get_many(access.keys) if access.kind is Access.GET else self._scan()
        prompts = sorted((to_prompt(i) for i in items), key=lambda p: p.sort_key, reverse=desc)
        yield from filter(_past(after, desc), prompts)

    def count(self, selection: Selection) -> int:
        access = key_access(selection)
        index = access.index
        if (
            access.kind is Access.QUERY
            and index is not None
            and set(selection.pinned) <= set(index.partition)
        ):
            return sum(self._count_partition(index, key) for key in access.keys)
        unbounded = self.in_order(selection, desc=False, after=None, wanted=lambda: 1000)
        return sum(1 for p in unbounded if selection.admits(to_item(p)))

    def _merged(
        self, index: Index, keys: tuple[str, ...], desc: bool, after: str | None, wanted: Callable[[], int]
    ) -> Iterator[Prompt]:
        """Merge the partitions lazily, reading little more than the caller wants.

        Each partition's first read takes its share of `wanted()` (split over the partitions); a
        partition that runs dry reads only what the caller still wants. So a page over k partitions
        reads at most about twice the page plus k items, not k pages.
        """
        share = -(-wanted() // max(1, len(keys)))
        streams = [self._partition(index, key, desc, after, share, wanted) for key in keys]
        for item in heapq.merge(*streams, key=lambda item: item[SORT_ATTRIBUTE], reverse=desc):
            yield to_prompt(item)

    def _partition(
        self, index: Index, key: str, desc: bool, after: str | None, first: int, wanted: Callable[[], int]
    ) -> Iterator[dict[str, Any]]:
        condition: Any = Key(index.key_attribute).eq(key)
        if after is not None:
            bound = Key(SORT_ATTRIBUTE)
            condition = condition & (bound.lt(after) if desc else bound.gt(after))
        kwargs: dict[str, Any] = {
            "IndexName": index.name,
            "KeyConditionExpression": condition,
            "ScanIndexForward": not desc,
            "Limit": first,
        }
        for page in pages(self._table.query, kwargs, wanted):
            yield from page.get("Items", [])

    def _count_partition(self, index: Index, key: str) -> int:
        kwargs: dict[str, Any] = {
            "IndexName": index.name,
            "KeyConditionExpression": Key(index.key_attribute).eq(key),
            "Select": "COUNT",
        }
        return sum(page["Count"] for page in pages(self._table.query, kwargs))

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

    def _scan(self) -> Iterator[dict[str, Any]]:
        for page in pages(self._table.scan, {}):
            yield from page.get("Items", [])
