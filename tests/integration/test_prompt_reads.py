"""The prompts table on moto: a page merged over several index partitions reads little more than
the page and never scans, time ranges are key conditions, update order pages through ties, and
reads stop where the caller's budget says (adapters/prompt_reads.py); the lifecycle store refuses a
field it may not set (adapters/prompt_table.py)."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from promptsvc import wiring
from promptsvc.adapters.prompt_reads import DynamoPromptReader
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.keys import Principal, Role
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.query import Query, parse_query, select
from promptsvc.domain.reads import Reads
from promptsvc.domain.status import Status
from promptsvc.services.listing import PromptLister, ReadLimits
from promptsvc.settings import Settings

T0 = datetime(2024, 5, 1, tzinfo=UTC)
BOTH = {"filters": [{"op": "isInList", "fields": ["status"], "jsonValues": '["scheduled", "running"]'}]}


class CountingTable:
    """The table, counting the items its Query calls return and its Scan calls."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.meta = table.meta
        self.items_read = 0
        self.scans = 0

    def query(self, **kwargs: Any) -> dict[str, Any]:
        page: dict[str, Any] = self._table.query(**kwargs)
        self.items_read += len(page.get("Items", []))
        return page

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        self.scans += 1
        page: dict[str, Any] = self._table.scan(**kwargs)
        return page


class CountingReader(DynamoPromptReader):
    def __init__(self, table_name: str) -> None:
        super().__init__(table_name)
        self.counting = CountingTable(super()._table)

    @property
    def _table(self) -> Any:
        return self.counting


def prompt(n: int, status: Status, second: int, updated: int | None = None) -> Prompt:
    stamp = now_rfc3339(T0 + timedelta(seconds=second))
    return Prompt(
        id=f"p{n:03d}",
        prompt=f"prompt {n}",
        modelId="m",
        template="",
        threadId="t1",
        userId="alice",
        status=status,
        createdAt=stamp,
        updatedAt=stamp if updated is None else now_rfc3339(T0 + timedelta(seconds=updated)),
    )


@pytest.fixture
def reader(settings: Settings) -> Callable[[list[Prompt]], CountingReader]:
    def stored(prompts: list[Prompt]) -> CountingReader:
        store = wiring.prompt_store(settings)
        for p in prompts:
            assert store.put_new(p) is not None
        return CountingReader(settings.prompts_table)

    return stored


def newest(
    reader: DynamoPromptReader, query: Query, wanted: int, after: tuple[str, str] | None = None
) -> list[Prompt]:
    """What a lister reads for a page of `wanted - 1` in index order: newest first, lazily."""
    taken: list[Prompt] = []
    reads = Reads(1000, lacking=lambda: wanted - len(taken))
    read: Iterator[Prompt] = reader.in_order(
        select(query, "alice", is_admin=False), by="createdAt", desc=True, after=after, reads=reads
    )
    for p in read:
        taken.append(p)
        reads.saw(True)
        if len(taken) == wanted:
            break
    return taken


def test_a_page_over_two_partitions_reads_little_more_than_the_page(
    reader: Callable[[list[Prompt]], CountingReader],
) -> None:
    """Two status partitions of 100 prompts each; a page of 5 reads at most twice the page plus
    one per partition, not a page per partition's worth."""
    counting = reader([prompt(n, [Status.SCHEDULED, Status.RUNNING][n % 2], second=n) for n in range(200)])
    query = parse_query(BOTH)
    first = newest(counting, query, 5 + 1)
    assert counting.counting.items_read <= 2 * (5 + 1) + 2
    second = newest(counting, query, 5 + 1, after=(first[4].createdAt, first[4].id))
    assert counting.counting.items_read <= 2 * (2 * (5 + 1) + 2)
    assert [p.id for p in first[:5] + second[:5]] == [f"p{n:03d}" for n in range(199, 189, -1)]
    assert counting.counting.scans == 0


def test_a_partition_that_runs_dry_leaves_the_rest_of_the_page_to_the_other(
    reader: Callable[[list[Prompt]], CountingReader],
) -> None:
    prompts = [prompt(0, Status.RUNNING, second=500)]
    prompts += [prompt(n, Status.SCHEDULED, second=n) for n in range(1, 40)]
    counting = reader(prompts)
    page = newest(counting, parse_query(BOTH), 10 + 1)
    assert [p.id for p in page[:10]] == ["p000"] + [f"p{n:03d}" for n in range(39, 30, -1)]
    assert counting.counting.items_read <= 2 * (10 + 1) + 2


def test_counting_a_selection_the_index_serves_counts_without_reading_items(
    reader: Callable[[list[Prompt]], CountingReader],
) -> None:
    counting = reader(
        [prompt(n, [Status.SCHEDULED, Status.RUNNING, Status.COMPLETED][n % 3], n) for n in range(30)]
    )
    assert counting.count(select(parse_query(BOTH), "alice", is_admin=False), most=100) == 20
    assert counting.counting.items_read == 0
    assert counting.count(select(parse_query({}), "bob", is_admin=False), most=100) == 0
    assert counting.count(select(parse_query(BOTH), "alice", is_admin=False), most=19) is None


ALICE = Principal("alice", Role.USER, "key-alice")
ADMIN = Principal("root", Role.ADMIN, "key-root")


def all_pages(lister: PromptLister, principal: Principal, raw: dict[str, Any]) -> list[list[str]]:
    """The ids of every page, following the cursor."""
    pages: list[list[str]] = []
    after = None
    while len(pages) < 300:
        page = lister.page(principal, parse_query({**raw, **({"jsonAfter": after} if after else {})}))
        pages.append([item.id for item in page.items])
        after = page.after
        if after is None:
            return pages
    raise AssertionError("paging does not terminate")


def lister_of(reader: CountingReader, limits: ReadLimits | None = None) -> PromptLister:
    return PromptLister(reader, lambda: b"k" * 32, limits)


def test_a_time_range_is_a_key_condition(reader: Callable[[list[Prompt]], CountingReader]) -> None:
    """100 prompts a second apart; the 10 of seconds 20..29 are read, newest first, and no other."""
    counting = reader([prompt(n, Status.COMPLETED, second=n) for n in range(100)])
    since, until = now_rfc3339(T0 + timedelta(seconds=20)), now_rfc3339(T0 + timedelta(seconds=30))
    raw = {
        "limit": 4,
        "filters": [
            {"op": "greaterThanOrEqual", "fields": ["createdAt"], "jsonValues": f'["{since}"]'},
            {"op": "lessThan", "fields": ["createdAt"], "jsonValues": f'["{until}"]'},
        ],
    }
    pages = all_pages(lister_of(counting), ALICE, raw)
    assert [i for page in pages for i in page] == [f"p{n:03d}" for n in range(29, 19, -1)]
    # Each page reads one past itself; a later page also the cursor's own prompt again (the key
    # condition is BETWEEN the range's low end and the cursor, which takes both ends).
    assert counting.counting.items_read <= 10 + 2 * len(pages)


@pytest.mark.parametrize("limit", [1, 3, 7])
@pytest.mark.parametrize("desc", [True, False])
def test_update_order_pages_through_ties(
    reader: Callable[[list[Prompt]], CountingReader], limit: int, desc: bool
) -> None:
    """byUserUpdated sorts on updatedAt itself: 30 prompts in three ties of 10, read a few at a time."""
    prompts = [prompt(n, Status.COMPLETED, second=n, updated=100 + n % 3) for n in range(30)]
    counting = reader(prompts)
    raw = {"limit": limit, "orderBys": [{"field": "updatedAt", "desc": desc}]}
    pages = all_pages(lister_of(counting), ALICE, raw)
    expected = sorted(prompts, key=lambda p: (p.updatedAt, p.id), reverse=desc)
    assert [i for page in pages for i in page] == [p.id for p in expected]
    assert all(len(page) == limit for page in pages[:-1])
    assert counting.counting.scans == 0


def test_reads_stop_at_the_budget_and_the_merge_goes_on_from_there(
    reader: Callable[[list[Prompt]], CountingReader],
) -> None:
    """Two status partitions of 60, a filter no key serves (prompts whose text holds a 7): each
    request reads at most its budget, and the pages together are the answer, newest first."""
    prompts = [prompt(n, [Status.SCHEDULED, Status.RUNNING][n % 2], second=n) for n in range(120)]
    counting = reader(prompts)
    sevens = {"op": "containsSubstring", "fields": ["prompt"], "jsonValues": '["7"]'}
    raw = {"limit": 3, "filters": [*BOTH["filters"], sevens]}
    lister = lister_of(counting, ReadLimits(budget=15))
    ids: list[str] = []
    after = None
    while True:
        before = counting.counting.items_read
        page = lister.page(ALICE, parse_query({**raw, **({"jsonAfter": after} if after else {})}))
        assert counting.counting.items_read - before <= 15
        ids.extend(item.id for item in page.items)
        after = page.after
        if after is None:
            break
    assert ids == [p.id for p in sorted(prompts, key=lambda p: p.sort_key, reverse=True) if "7" in p.prompt]


def test_an_admin_listing_everyone_reads_the_status_partitions_not_the_table(
    reader: Callable[[list[Prompt]], CountingReader],
) -> None:
    prompts = [prompt(n, list(Status)[n % 6], second=n) for n in range(120)]
    counting = reader(prompts)
    page = lister_of(counting).page(ADMIN, parse_query({"limit": 10}))
    assert [item.id for item in page.items] == [f"p{n:03d}" for n in range(119, 109, -1)]
    assert counting.counting.scans == 0
    assert counting.counting.items_read <= 2 * (10 + 1) + 6


def test_a_lifecycle_write_refuses_a_field_it_may_not_set(settings: Settings) -> None:
    """A misspelt field is an error before anything is written, not a new attribute."""
    store = wiring.prompt_store(settings)
    stored = store.put_new(prompt(1, Status.SCHEDULED, second=1))
    assert stored is not None
    changes: Any = {"answr": "typo", "updatedAt": now_rfc3339()}
    with pytest.raises(ValueError, match="answr"):
        store.transition(stored, Status.CANCELED, **changes)
    with pytest.raises(ValueError, match="runCount"):
        store.update_if(stored, Status.SCHEDULED, **{"runCount": 7})  # type: ignore[arg-type]
    assert store.get("alice", stored.id) == stored
