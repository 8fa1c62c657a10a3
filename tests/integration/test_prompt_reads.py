"""The prompts table on moto: a page merged over several index partitions reads little more than
the page and never scans (adapters/prompt_reads.py); the lifecycle store refuses a field it may
not set (adapters/prompt_table.py)."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from promptsvc import wiring
from promptsvc.adapters.prompt_reads import DynamoPromptReader
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.query import Query, parse_query, select
from promptsvc.domain.status import Status
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


def prompt(n: int, status: Status, second: int) -> Prompt:
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
        updatedAt=stamp,
    )


@pytest.fixture
def reader(settings: Settings) -> Callable[[list[Prompt]], CountingReader]:
    def stored(prompts: list[Prompt]) -> CountingReader:
        store = wiring.prompt_store(settings)
        for p in prompts:
            assert store.put_new(p) is not None
        return CountingReader(settings.prompts_table)

    return stored


def newest(reader: DynamoPromptReader, query: Query, wanted: int, after: str | None = None) -> list[Prompt]:
    """What a lister reads for a page of `wanted - 1` in index order: newest first, lazily."""
    taken: list[Prompt] = []
    read: Iterator[Prompt] = reader.in_order(
        select(query, "alice", is_admin=False), desc=True, after=after, wanted=lambda: wanted - len(taken)
    )
    for p in read:
        taken.append(p)
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
    second = newest(counting, query, 5 + 1, after=first[4].sort_key)
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
    assert counting.count(select(parse_query(BOTH), "alice", is_admin=False)) == 20
    assert counting.counting.items_read == 0
    assert counting.count(select(parse_query({}), "bob", is_admin=False)) == 0


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
