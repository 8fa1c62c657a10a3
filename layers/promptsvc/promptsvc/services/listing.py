"""Runs a list query: the query's selection (domain.query) read from the store, then paging by cursor.

Two ways to read, both returning at most `limit` items after the cursor's position:

- index order (the default, newest first): the store reads the selection in creation order
  starting just past the cursor, lazily, and reading stops one prompt past the page;
- any other order (another field, several fields, random): every prompt of the selection is
  read, filtered and sorted in memory; the cost follows the selection (one user, thread or status),
  never the whole table unless an admin asks for everything.
"""

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from promptsvc.domain import cursor as cursors
from promptsvc.domain.keys import Principal
from promptsvc.domain.names import composite
from promptsvc.domain.ports import PromptReader
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.query import (
    Query,
    Selection,
    comparator,
    matches,
    new_seed,
    position,
    select,
    sort_items,
)

_Listed = tuple[Prompt, dict[str, Any]]  # a prompt and its fields as the query language reads them
_ALL = 1000  # prompts a read takes when the whole selection is read (any order but the index's)


def _listed(prompt: Prompt) -> _Listed:
    fields = asdict(prompt)
    fields["status"] = str(prompt.status)
    return prompt, fields


@dataclass(frozen=True)
class Page:
    items: list[Prompt]
    after: str | None
    count: int | None


class PromptLister:
    def __init__(self, reader: PromptReader, cursor_secret: Callable[[], bytes]) -> None:
        self._reader = reader
        self._secret = cursor_secret

    def page(self, principal: Principal, query: Query) -> Page:
        fingerprint = query.fingerprint(f"{principal.user_id}:{principal.role}")
        after = cursors.decode(query.after, self._secret(), fingerprint) if query.after else None
        seed = after.seed if after else (new_seed() if query.is_random else None)
        selection = select(query, principal.user_id, principal.is_admin)

        if query.index_ordered:
            candidates = self._index_ordered(selection, query, after.position if after else None)
        else:
            candidates = self._sorted_in_memory(selection, query, seed, after.position if after else None)
        window = list(itertools.islice(_unique(candidates), query.limit + 1))
        listed = window[: query.limit]
        token = None
        if len(window) > query.limit:
            last = position(listed[-1][1], query, seed)
            token = cursors.encode(cursors.Cursor(fingerprint, last, seed), self._secret())
        count = self._count(selection) if query.count else None
        return Page(items=[prompt for prompt, _ in listed], after=token, count=count)

    def _index_ordered(
        self, selection: Selection, query: Query, after: list[Any] | None
    ) -> Iterator[_Listed]:
        """The store's creation order, read lazily: before each read the store asks how many
        matching prompts the page still lacks, so a page reads little more than the page."""
        wanted = query.limit + 1
        taken = 0

        def still_wanted() -> int:
            return wanted - taken

        sort_after = composite(after[0], after[1]) if after else None
        desc = query.order[0].desc
        for prompt in self._reader.in_order(selection, desc=desc, after=sort_after, wanted=still_wanted):
            listed = _listed(prompt)
            if matches(listed[1], selection.filters):
                taken += 1
                yield listed

    def _sorted_in_memory(
        self, selection: Selection, query: Query, seed: str | None, after: list[Any] | None
    ) -> Iterator[_Listed]:
        found = [listed for listed in self._read_all(selection) if matches(listed[1], selection.filters)]
        ordered = sort_items(found, query, seed, fields=lambda listed: listed[1])
        if after is None:
            return iter(ordered)
        compare = comparator(query)
        return (listed for listed in ordered if compare(position(listed[1], query, seed), after) > 0)

    def _read_all(self, selection: Selection) -> Iterator[_Listed]:
        prompts = self._reader.in_order(selection, desc=False, after=None, wanted=lambda: _ALL)
        return (_listed(prompt) for prompt in prompts)

    def _count(self, selection: Selection) -> int:
        """The filtered total. When the selection is the whole filter, the store counts it."""
        if selection.exact:
            return self._reader.count(selection)
        return sum(1 for _, fields in self._read_all(selection) if matches(fields, selection.filters))


def _unique(listed: Iterable[_Listed]) -> Iterator[_Listed]:
    """Drop a prompt seen twice (it moved between two status partitions while we read)."""
    seen: set[tuple[str, str]] = set()
    for prompt, fields in listed:
        key = (prompt.userId, prompt.id)  # ids are per user: an admin's page may hold two
        if key not in seen:
            seen.add(key)
            yield prompt, fields
