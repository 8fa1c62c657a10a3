"""Runs a list query: the query's selection (domain.query) read from the store, then paging by cursor.

Every request reads a bounded number of items, whatever the user holds (docs/api.md, "Cost"):

- an order an index serves (creation time; update time of one user's prompts): the store reads
  the selection in that order past the cursor, lazily, each read sized by what the page still
  lacks. Key filters and time ranges are key conditions, so a page reads little more than itself;
  other filters are checked here, and when they leave the page short after `READ_BUDGET` items
  read, the page holds what matched and a cursor that goes on past the last prompt read
  (DynamoDB's own pattern);
- any other order: the selection (what the keys and time ranges select) is read whole and sorted
  in memory while it holds at most `SORT_CEILING` prompts; past that the query is refused (400),
  except random order, which shuffles the selection in blocks of that many;
- count: at most `COUNT_CEILING` items read, else a 400.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from promptsvc.domain import cursor as cursors
from promptsvc.domain.clock import parse_rfc3339
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.keys import Principal
from promptsvc.domain.prompt import Prompt, public_view
from promptsvc.domain.query import (
    COUNT_CEILING,
    DEFAULT_ORDER_FIELD,
    MAX_KEY_PARTITIONS,
    RANGE_FIELDS,
    READ_BUDGET,
    SORT_CEILING,
    Filter,
    Query,
    Selection,
    comparator,
    matches,
    new_seed,
    position,
    select,
    stored_time,
)
from promptsvc.domain.reads import Reads

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptReader

_Listed = tuple[Prompt, dict[str, Any]]  # a prompt and its fields as the query language reads them
_Ranked = tuple[list[Any], _Listed]  # a prompt's position in the query's order, and the prompt
_BLOCK_ORDER = DEFAULT_ORDER_FIELD  # random order's blocks follow creation time, which never changes


def _listed(prompt: Prompt) -> _Listed:
    return prompt, public_view(prompt)  # the fields the query language filters and orders by


def _index_position(fields: dict[str, Any]) -> list[Any]:
    return [fields[_BLOCK_ORDER], fields["id"]]


class Page(msgspec.Struct, frozen=True):
    items: list[Prompt]
    after: str | None
    count: int | None


class ReadLimits(msgspec.Struct, frozen=True):
    """What one request may read (domain.query's ceilings; tests make them small). A budget below
    the partitions one page may merge (MAX_KEY_PARTITIONS) could not read one item of each."""

    budget: int = READ_BUDGET
    sort_ceiling: int = SORT_CEILING
    count_ceiling: int = COUNT_CEILING

    def __post_init__(self) -> None:
        if min(self.budget, self.sort_ceiling, self.count_ceiling) < MAX_KEY_PARTITIONS:
            raise ValueError(f"read limits below {MAX_KEY_PARTITIONS} items")


class _Slice(msgspec.Struct, frozen=True):
    """A page's prompts, and where the next page starts (None: this is the last page)."""

    items: list[_Listed]
    position: list[Any] | None = None
    window: list[Any] | None = None


class PromptLister:
    def __init__(
        self, reader: PromptReader, cursor_secret: Callable[[], bytes], limits: ReadLimits | None = None
    ) -> None:
        self._reader = reader
        self._secret = cursor_secret
        self._limits = limits or ReadLimits()

    def page(self, principal: Principal, query: Query) -> Page:
        fingerprint = query.fingerprint(f"{principal.user_id}:{principal.role}")
        after = cursors.decode(query.after, self._secret(), fingerprint) if query.after else None
        seed = after.seed if after else (new_seed() if query.is_random else None)
        selection = select(query, principal.user_id, principal.is_admin)
        resume = after.position if after and after.position else None  # none: the block's start

        field = query.sort_field
        if field is not None and field in self._reader.orders(selection):
            found = self._walk(selection, query, field, resume)
        elif query.is_random:
            found = self._shuffled(selection, query, seed, resume, after.window if after else None)
        else:
            found = self._sorted(selection, query, seed, resume)
        token = None
        if found.position is not None:
            next_page = cursors.Cursor(fingerprint, found.position, seed, found.window)
            token = cursors.encode(next_page, self._secret())
        count = self._count(selection) if query.count else None
        return Page(items=[prompt for prompt, _ in found.items], after=token, count=count)

    def _walk(self, selection: Selection, query: Query, field: str, after: list[Any] | None) -> _Slice:
        """An index's order from the cursor, reading what the page lacks, at most the budget."""
        found: list[_Listed] = []
        reads = Reads(self._limits.budget, lacking=lambda: query.limit + 1 - len(found))
        start = (after[0], after[1]) if after else None
        prompts = self._reader.in_order(
            selection, by=field, desc=query.order[0].desc, after=start, reads=reads
        )
        last: _Listed | None = None
        for listed, matched in _examined(prompts, reads, selection.filters):
            last = listed
            if matched:
                found.append(listed)
            if len(found) > query.limit:
                return _Slice(found[: query.limit], position(found[query.limit - 1][1], query, None))
        if reads.denied and last is not None:  # the budget ran out: go on past the last one read
            return _Slice(found, position(last[1], query, None))
        return _Slice(found)

    def _sorted(
        self, selection: Selection, query: Query, seed: str | None, after: list[Any] | None
    ) -> _Slice:
        """An order no index serves: the whole selection, sorted here, if it is small enough."""
        ceiling = self._limits.sort_ceiling
        reads = Reads(ceiling + 1)
        prompts = self._read_whole(selection, reads)
        ranked = (
            (position(fields, query, seed), (prompt, fields)) for (prompt, fields), hit in prompts if hit
        )
        window = _first(ranked, query, after)
        if reads.seen > ceiling or reads.denied:
            names = ", ".join(o.field for o in query.order)
            raise InvalidRequest(
                f"query.orderBys: ordering by {names} sorts in memory every prompt the query's keys "
                f"select (userId, threadId, status or id, and createdAt or updatedAt ranges), at most "
                f"{ceiling:,}, and this query selects more: narrow it, or order by createdAt alone "
                "(or updatedAt, for one user's prompts)"
            )
        return _page_of(window, query)

    def _shuffled(
        self,
        selection: Selection,
        query: Query,
        seed: str | None,
        after: list[Any] | None,
        window: list[Any] | None,
    ) -> _Slice:
        """Random order: the selection shuffled in blocks of `sort_ceiling` prompts of creation
        order (newest first), each block paged through before the next is read."""
        block = _Block.of(window)
        reads = Reads(self._limits.sort_ceiling + 1)
        start = block.read_from()
        prompts = self._reader.in_order(selection, by=_BLOCK_ORDER, desc=True, after=start, reads=reads)
        examined = _examined(prompts, reads, selection.filters)
        if block.top is None:  # the block's first page
            members = block.first_read(examined, self._limits.sort_ceiling, reads)
        else:
            members = block.reread(examined)
        ranked = ((position(fields, query, seed), (prompt, fields)) for prompt, fields in members)
        found = _page_of(_first(ranked, query, after), query, block.state())
        if found.position is None and block.more:  # on to the next block
            return _Slice(found.items, [], _Block(start=block.bottom).state())
        return found

    def _count(self, selection: Selection) -> int:
        """The filtered total. When the selection is the whole filter, the store counts it."""
        most = self._limits.count_ceiling
        if selection.exact:
            total = self._reader.count(selection, most=most)
        else:
            reads = Reads(most + 1)
            hits = sum(matched for _, matched in self._read_whole(selection, reads))
            total = None if reads.seen > most or reads.denied else hits
        if total is None:
            raise InvalidRequest(
                f"query.count: counting this query would read more than {most:,} prompts: narrow "
                "it (threadId, status, a createdAt or updatedAt range), or leave count out"
            )
        return total

    def _read_whole(self, selection: Selection, reads: Reads) -> Iterator[tuple[_Listed, bool]]:
        """Every prompt of the selection, each with whether it matches, within `reads`; read in
        the order whose index takes a time range as a key condition, when there is one."""
        served = self._reader.orders(selection)
        by = next((f for f in RANGE_FIELDS if f in selection.ranges and f in served), DEFAULT_ORDER_FIELD)
        prompts = self._reader.in_order(selection, by=by, desc=False, after=None, reads=reads)
        return _examined(prompts, reads, selection.filters)


class _Block(msgspec.Struct):
    """Random order's block: prompts of creation order, newest first, strictly past `start` (the
    previous block's last; None: from the newest). Its first page reads it and keeps its bounds,
    `top` and `bottom` (positions), and whether prompts follow it (`more`); later pages read it
    again (`read_from`) and keep what lies within the bounds (prompts added since are not in it)."""

    start: list[Any] | None = None
    top: list[Any] | None = None
    bottom: list[Any] | None = None
    more: bool = False

    @classmethod
    def of(cls, window: list[Any] | None) -> _Block:
        if window and len(window) == 4:
            return cls(window[0], window[1], window[2], bool(window[3]))
        return cls()

    def state(self) -> list[Any]:
        return [self.start, self.top, self.bottom, self.more]

    def read_from(self) -> tuple[str, str] | None:
        """Where the block's read starts (strictly past it): `start`; the first block, once read,
        from just above its top (the next microsecond), so prompts added since are not read."""
        if self.start:
            return (self.start[0], self.start[1])
        if self.top:
            try:
                return (stored_time(parse_rfc3339(self.top[0]) + timedelta(microseconds=1)), "")
            except ValueError:  # not a stored time: read from the newest
                return None
        return None

    def first_read(self, examined: Iterable[tuple[_Listed, bool]], size: int, reads: Reads) -> list[_Listed]:
        """The matching prompts among the first `size` read; sets the bounds."""
        members: list[_Listed] = []
        for taken, (listed, matched) in enumerate(examined):
            if taken == size:
                self.more = True
                break
            self.top = self.top or _index_position(listed[1])
            self.bottom = _index_position(listed[1])
            if matched:
                members.append(listed)
        else:
            self.more = reads.denied  # the reads stopped before the selection's end
        return members

    def reread(self, examined: Iterable[tuple[_Listed, bool]]) -> list[_Listed]:
        """The matching prompts within the bounds."""
        members: list[_Listed] = []
        top, bottom = self.top or [], self.bottom or []
        for listed, matched in examined:
            where = _index_position(listed[1])
            if where < bottom:
                break
            if matched and where <= top:
                members.append(listed)
        return members


def _examined(
    prompts: Iterable[Prompt], reads: Reads, filters: tuple[Filter, ...]
) -> Iterator[tuple[_Listed, bool]]:
    """Each prompt once (one that moved between two partitions while we read is read twice), with
    whether it matches the filters; `reads` counts them, to size its next read."""
    seen: set[tuple[str, str]] = set()
    for prompt in prompts:
        key = (prompt.userId, prompt.id)  # ids are per user: an admin's page may hold two
        if key in seen:
            continue
        seen.add(key)
        listed = _listed(prompt)
        matched = matches(listed[1], filters)
        reads.saw(matched)
        yield listed, matched


def _first(ranked: Iterable[_Ranked], query: Query, after: list[Any] | None) -> list[_Ranked]:
    """The first `limit + 1` past the cursor, in the query's order; only those are kept."""
    compare = comparator(query)
    if after is not None:
        ranked = (r for r in ranked if compare(r[0], after) > 0)

    def order(a: _Ranked, b: _Ranked) -> int:
        return compare(a[0], b[0])

    return heapq.nsmallest(query.limit + 1, ranked, key=functools.cmp_to_key(order))


def _page_of(window: list[_Ranked], query: Query, block: list[Any] | None = None) -> _Slice:
    """The page of an in-memory order, with a cursor at its last item when more follow."""
    items = [listed for _, listed in window[: query.limit]]
    if len(window) > query.limit:
        return _Slice(items, window[query.limit - 1][0], block)
    return _Slice(items)
