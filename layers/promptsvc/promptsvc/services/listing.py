"""Runs a list query: the plan from domain.query against the repository, then paging by cursor.

Two ways to read, both returning at most `limit` items after the cursor's position:

- index order (the default, newest first): each partition the plan names is read in `sk` order
  starting just past the cursor, the partitions are merged lazily, and reading stops one item past
  the page, so a page reads about `limit + 1` items per partition;
- any other order (another field, several fields, random): every item the plan's access yields is
  read, filtered and sorted in memory; the cost follows the access (one user, thread or status),
  never the whole table unless an admin asks for everything.
"""

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from promptsvc.domain import cursor as cursors
from promptsvc.domain.keys import Principal
from promptsvc.domain.ports import PromptRepository
from promptsvc.domain.query import (
    SORT_ATTRIBUTE,
    Access,
    Plan,
    Query,
    comparator,
    key_values,
    matches,
    new_seed,
    plan,
    position,
    sort_items,
)


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    after: str | None
    count: int | None


class PromptLister:
    def __init__(self, repository: PromptRepository, cursor_secret: Callable[[], bytes]) -> None:
        self._repo = repository
        self._secret = cursor_secret

    def page(self, principal: Principal, query: Query) -> Page:
        fingerprint = query.fingerprint(f"{principal.user_id}:{principal.role}")
        after = cursors.decode(query.after, self._secret(), fingerprint) if query.after else None
        seed = after.seed if after else (new_seed() if query.is_random else None)
        access = plan(query, principal.user_id, principal.is_admin)

        if access.access is Access.QUERY and query.index_ordered:
            candidates = self._index_ordered(access, query, after.position if after else None)
        else:
            candidates = self._sorted_in_memory(access, query, seed, after.position if after else None)
        window = list(itertools.islice(_unique(candidates), query.limit + 1))
        items = window[: query.limit]
        token = None
        if len(window) > query.limit:
            last = position(items[-1], query, seed)
            token = cursors.encode(cursors.Cursor(fingerprint, last, seed), self._secret())
        count = self._count(access, query) if query.count else None
        return Page(items=items, after=token, count=count)

    def _index_ordered(self, access: Plan, query: Query, after: list[Any] | None) -> Iterator[dict[str, Any]]:
        """Merge the plan's partitions lazily, reading little more than the page.

        Each partition's first read takes its share of the page (the page split over the
        partitions); a partition that runs dry reads only what the page still lacks. So a page
        over k partitions reads at most about twice the page plus k items, not k pages.
        """
        assert access.index is not None
        desc = query.order[0].desc
        after_sk = f"{after[0]}#{after[1]}" if after else None
        wanted = query.limit + 1
        taken = 0

        def still_wanted() -> int:
            return wanted - taken

        share = -(-wanted // max(1, len(access.keys)))
        streams = [
            self._repo.query_partition(
                access.index, key, after_sk=after_sk, desc=desc, page_size=share, next_page_size=still_wanted
            )
            for key in access.keys
        ]
        for item in heapq.merge(*streams, key=lambda item: item[SORT_ATTRIBUTE], reverse=desc):
            if matches(item, access.filters):
                taken += 1
                yield item

    def _sorted_in_memory(
        self, access: Plan, query: Query, seed: str | None, after: list[Any] | None
    ) -> Iterator[dict[str, Any]]:
        items = [item for item in self._read_all(access) if matches(item, access.filters)]
        ordered = sort_items(items, query, seed)
        if after is None:
            return iter(ordered)
        compare = comparator(query)
        return (item for item in ordered if compare(position(item, query, seed), after) > 0)

    def _read_all(self, access: Plan) -> Iterable[dict[str, Any]]:
        if access.access is Access.GET:
            return self._repo.get_many(access.keys)
        if access.access is Access.QUERY:
            assert access.index is not None
            return itertools.chain.from_iterable(
                self._repo.query_partition(access.index, key, after_sk=None, desc=False, page_size=1000)
                for key in access.keys
            )
        return self._repo.scan()

    def _count(self, access: Plan, query: Query) -> int:
        """The filtered total. When the plan's key condition is the whole filter, DynamoDB counts."""
        if access.access is Access.QUERY and access.index is not None:
            keyed = set(access.index.partition)
            only_keys = all((kv := key_values(f)) is not None and kv[0] in keyed for f in access.filters)
            if only_keys:
                return sum(self._repo.count_partition(access.index, key) for key in access.keys)
        return sum(1 for item in self._read_all(access) if matches(item, access.filters))


def _unique(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Drop an item seen twice (it moved between two status partitions while we read)."""
    seen: set[tuple[str, str]] = set()
    for item in items:
        key = (item["userId"], item["id"])  # ids are per user: an admin's page may hold two
        if key not in seen:
            seen.add(key)
            yield item
