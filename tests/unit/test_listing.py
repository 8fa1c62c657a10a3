"""PromptLister: a query's selection read through the PromptReader port (an in-memory fake),
paged with cursors.

Expected results come from an oracle written independently of domain.query: a Python predicate
for the filter and stable sorts for the order (ties on every orderBy break on id, in the first
orderBy's direction).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import asdict, replace
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.keys import Principal, Role
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.query import Query, parse_query, random_rank, select
from promptsvc.domain.status import Status
from promptsvc.services import listing
from promptsvc.services.listing import Page, PromptLister, ReadLimits

from tests.unit.fake_repository import FakePrompts

ALICE = Principal("alice", Role.USER, "key-alice")
BOB = Principal("bob", Role.USER, "key-bob")
ADMIN = Principal("root", Role.ADMIN, "key-root")
T0 = datetime(2024, 5, 1, tzinfo=UTC)
STATUSES = list(Status)


def at(second: int) -> str:
    """The stored time `second` seconds after T0."""
    return now_rfc3339(T0 + timedelta(seconds=second))


def secret() -> bytes:
    return b"k" * 32


def make_prompt(n: int, user: str, thread: str, status: Status, run_count: int, second: int) -> Prompt:
    """Updated a few seconds after creation (so update order differs, and ties happen)."""
    stamp = now_rfc3339(T0 + timedelta(seconds=second))
    return Prompt(
        id=f"p{n:03d}",
        prompt=f"prompt number {n}",
        modelId="m",
        template="",
        threadId=thread,
        userId=user,
        status=status,
        runCount=run_count,
        createdAt=stamp,
        updatedAt=now_rfc3339(T0 + timedelta(seconds=second + n * 7 % 5)),
    )


def sample_prompts() -> list[Prompt]:
    """48 prompts of two users and a third, three threads, every status; createdAt ties in threes."""
    users = ["alice", "bob", "carol"]
    return [
        make_prompt(n, users[n % 3], f"t{n % 4 % 3}", STATUSES[n % 6], n % 5, second=n // 3)
        for n in range(48)
    ]


# ----------------------------------------------------------------------------------------------
# The oracle

Predicate = Callable[[Prompt], bool]
Order = list[tuple[str, bool]]  # (field, desc)


def everything(_: Prompt) -> bool:
    return True


def visible_to(principal: Principal, prompt: Prompt) -> bool:
    return principal.is_admin or prompt.userId == principal.user_id


def expected_ids(
    prompts: list[Prompt], principal: Principal, predicate: Predicate, order: Order
) -> list[str]:
    chosen = [p for p in prompts if visible_to(principal, p) and predicate(p)]
    chosen.sort(key=lambda p: p.id, reverse=order[0][1])
    for name, desc in reversed(order):
        chosen.sort(key=lambda p: getattr(p, name), reverse=desc)  # stable, also when reversed
    return [p.id for p in chosen]


@dataclass(frozen=True)
class Case:
    """A raw request query (as a client sends it) and what the oracle makes of it."""

    name: str
    raw: dict[str, Any]
    oracle: Any  # a Predicate for filters, an Order (or None for random) for orders


FILTERS = [
    Case("none", {}, everything),
    Case(
        "status-list",
        {"filters": [{"op": "isInList", "fields": ["status"], "jsonValues": '["running", "errored"]'}]},
        lambda p: p.status in ("running", "errored"),
    ),
    Case(
        "thread",
        {"filters": [{"op": "equals", "fields": ["threadId"], "valuesJson": '["t1"]'}]},
        lambda p: p.threadId == "t1",
    ),
    Case(
        "thread-and-status",
        {
            "filters": [
                {"op": "equals", "fields": ["threadId"], "jsonValues": '["t0"]'},
                {"op": "equals", "fields": ["status"], "jsonValues": '["scheduled"]'},
            ]
        },
        lambda p: p.threadId == "t0" and p.status == "scheduled",
    ),
    Case(
        "run-count",
        {"filters": [{"op": "greaterThanOrEqual", "fields": ["runCount"], "jsonValues": "[2]"}]},
        lambda p: p.runCount >= 2,
    ),
    Case(
        "or",
        {
            "filters": [
                {
                    "op": "or",
                    "subFilters": [
                        {"op": "equals", "fields": ["status"], "jsonValues": '["completed"]'},
                        {"op": "containsSubstring", "fields": ["prompt"], "jsonValues": '["number 1"]'},
                    ],
                }
            ]
        },
        lambda p: p.status == "completed" or "number 1" in p.prompt,
    ),
    Case(
        "users",
        {"filters": [{"op": "isInList", "fields": ["userId"], "jsonValues": '["alice", "carol"]'}]},
        lambda p: p.userId in ("alice", "carol"),
    ),
    Case(
        "created-range",
        {
            "filters": [
                {"op": "greaterThanOrEqual", "fields": ["createdAt"], "jsonValues": f'["{at(3)}"]'},
                {"op": "lessThan", "fields": ["createdAt"], "jsonValues": f'["{at(11)}"]'},
            ]
        },
        lambda p: at(3) <= p.createdAt < at(11),
    ),
    Case(
        "updated-after-in-thread",
        {
            "filters": [
                {"op": "greaterThan", "fields": ["updatedAt"], "jsonValues": f'["{at(6)}"]'},
                {"op": "equals", "fields": ["threadId"], "jsonValues": '["t0"]'},
            ]
        },
        lambda p: p.updatedAt > at(6) and p.threadId == "t0",
    ),
]

ORDERS = [
    Case("default-newest-first", {}, [("createdAt", True)]),
    Case("createdAt-asc", {"orderBys": [{"field": "createdAt"}]}, [("createdAt", False)]),
    Case("runCount-desc", {"orderBys": [{"field": "runCount", "desc": True}]}, [("runCount", True)]),
    Case(
        "status-then-createdAt",
        {"orderBys": [{"field": "status"}, {"field": "createdAt", "desc": True}]},
        [("status", False), ("createdAt", True)],
    ),
    Case(
        "thread-desc-then-runCount",
        {"orderBys": [{"field": "threadId", "desc": True}, {"field": "runCount"}]},
        [("threadId", True), ("runCount", False)],
    ),
    Case("updatedAt-desc", {"orderBys": [{"field": "updatedAt", "desc": True}]}, [("updatedAt", True)]),
    Case("updatedAt-asc", {"orderBys": [{"field": "updatedAt"}]}, [("updatedAt", False)]),
    Case("random", {"orderBys": [{"sortingType": "random"}]}, None),
    Case("randomize", {"orderBys": [{"field": "createdAt", "randomize": True}]}, None),
]


# ----------------------------------------------------------------------------------------------
# Paging helpers


def query_of(*parts: dict[str, Any], limit: int, count: bool = False) -> Query:
    raw: dict[str, Any] = {"limit": limit, "count": count}
    for part in parts:
        raw |= part
    return parse_query(raw)


def all_pages(lister: PromptLister, principal: Principal, query: Query) -> list[Page]:
    pages = [lister.page(principal, query)]
    while pages[-1].after is not None:
        assert len(pages) < 200, "paging does not terminate"
        pages.append(lister.page(principal, replace(query, after=pages[-1].after)))
    return pages


def paged_ids(lister: PromptLister, principal: Principal, query: Query) -> list[str]:
    """Every id across all pages, checking that only the last page is short."""
    pages = all_pages(lister, principal, query)
    for page in pages[:-1]:
        assert len(page.items) == query.limit
    assert len(pages[-1].items) <= query.limit
    assert len(pages) == 1 or pages[-1].items, "a cursor was issued for an empty page"
    return [item.id for page in pages for item in page.items]


def check_paging(prompts: list[Prompt], principal: Principal, filters: Case, order: Case, limit: int) -> None:
    lister = PromptLister(FakePrompts(prompts), secret)
    ids = paged_ids(lister, principal, query_of(filters.raw, order.raw, limit=limit))
    assert len(ids) == len(set(ids)), "an item was repeated"
    if order.oracle is None:
        assert sorted(ids) == sorted(expected_ids(prompts, principal, filters.oracle, [("id", False)]))
    else:
        assert ids == expected_ids(prompts, principal, filters.oracle, order.oracle)


# ----------------------------------------------------------------------------------------------
# Paging


@pytest.mark.parametrize("limit", [1, 4, 7, 16, 100])
@pytest.mark.parametrize("order", ORDERS, ids=lambda c: c.name)
@pytest.mark.parametrize("principal", [ALICE, ADMIN], ids=["alice", "admin"])
def test_pages_cover_the_result_in_order(principal: Principal, order: Case, limit: int) -> None:
    check_paging(sample_prompts(), principal, FILTERS[0], order, limit)


@pytest.mark.parametrize("filters", FILTERS, ids=lambda c: c.name)
@pytest.mark.parametrize("order", ORDERS, ids=lambda c: c.name)
@pytest.mark.parametrize("principal", [ALICE, ADMIN], ids=["alice", "admin"])
def test_filtered_pages_cover_the_result_in_order(principal: Principal, order: Case, filters: Case) -> None:
    check_paging(sample_prompts(), principal, filters, order, limit=3)


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob"]),
            st.sampled_from(["t0", "t1"]),
            st.sampled_from(STATUSES),
            st.integers(0, 3),
            st.integers(0, 4),
        ),
        max_size=25,
    ),
    principal=st.sampled_from([ALICE, BOB, ADMIN]),
    filters=st.sampled_from(FILTERS),
    order=st.sampled_from(ORDERS),
    limit=st.integers(1, 6),
)
def test_paging_property(
    rows: list[tuple[str, str, Status, int, int]],
    principal: Principal,
    filters: Case,
    order: Case,
    limit: int,
) -> None:
    """Any items, filter, order and page size: all pages together are exactly the answer."""
    prompts = [make_prompt(n, *row) for n, row in enumerate(rows)]
    check_paging(prompts, principal, filters, order, limit)


def test_random_order_follows_the_seed_across_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "new_seed", lambda: "fixed-seed")
    prompts = sample_prompts()
    lister = PromptLister(FakePrompts(prompts), secret)
    ids = paged_ids(lister, ADMIN, query_of({"orderBys": [{"randomize": True}]}, limit=5))
    assert ids == sorted((p.id for p in prompts), key=lambda i: random_rank("fixed-seed", i))


def test_an_empty_result_is_one_empty_page() -> None:
    lister = PromptLister(FakePrompts([]), secret)
    page = lister.page(ALICE, query_of(limit=5, count=True))
    assert page == Page(items=[], after=None, count=0)


def test_items_are_stored_prompts() -> None:
    """Pages carry the stored prompts; the API turns them into public views."""
    prompts = sample_prompts()
    lister = PromptLister(FakePrompts(prompts), secret)
    item = lister.page(ALICE, query_of({"orderBys": [{"field": "createdAt"}]}, limit=1)).items[0]
    first = next(p for p in prompts if p.userId == "alice")
    assert item == first


def test_an_item_that_changes_status_between_pages_is_listed_once() -> None:
    prompts = sample_prompts()
    repo = FakePrompts(prompts)
    lister = PromptLister(repo, secret)
    status_filter = {
        "filters": [{"op": "isInList", "fields": ["status"], "jsonValues": '["scheduled", "running"]'}]
    }
    query = query_of(status_filter, limit=2)
    first = lister.page(ADMIN, query)
    expected = expected_ids(
        prompts, ADMIN, lambda p: p.status in ("scheduled", "running"), [("createdAt", True)]
    )
    assert [i.id for i in first.items] == expected[:2]
    moving = next(p for p in prompts if p.id == expected[-1])
    moving = repo.get(moving.userId, moving.id)
    assert moving is not None and moving.status is Status.SCHEDULED
    assert repo.claim(moving, "2024-06-01T00:00:00.000000Z", 0) is not None  # scheduled -> running
    rest = paged_ids(lister, ADMIN, replace(query, after=first.after))
    assert [i.id for i in first.items] + rest == expected


# ----------------------------------------------------------------------------------------------
# Cursors


def test_cursor_of_another_query_is_rejected() -> None:
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    after = lister.page(ALICE, query_of(limit=2)).after
    assert after is not None
    for other in (
        query_of({"orderBys": [{"field": "createdAt"}]}, limit=2),
        query_of(FILTERS[1].raw, limit=2),
        query_of({"orderBys": [{"randomize": True}]}, limit=2),
    ):
        with pytest.raises(InvalidRequest):
            lister.page(ALICE, replace(other, after=after))


def test_cursor_survives_a_new_page_size() -> None:
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    first = lister.page(ALICE, query_of(limit=2))
    second = lister.page(ALICE, query_of({"jsonAfter": first.after}, limit=5))
    expected = expected_ids(sample_prompts(), ALICE, everything, [("createdAt", True)])
    assert [i.id for i in first.items + second.items] == expected[:7]


@pytest.mark.parametrize(("owner", "thief"), [(ALICE, BOB), (ALICE, ADMIN), (ADMIN, ALICE)])
def test_cursor_of_another_caller_is_rejected(owner: Principal, thief: Principal) -> None:
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    query = query_of(limit=2)
    after = lister.page(owner, query).after
    assert after is not None
    with pytest.raises(InvalidRequest):
        lister.page(thief, replace(query, after=after))


def test_cursor_signed_with_another_secret_is_rejected() -> None:
    prompts = sample_prompts()
    after = PromptLister(FakePrompts(prompts), lambda: b"other" * 8).page(ALICE, query_of(limit=2)).after
    assert after is not None
    with pytest.raises(InvalidRequest):
        PromptLister(FakePrompts(prompts), secret).page(ALICE, query_of({"jsonAfter": after}, limit=2))


def test_forged_cursor_is_rejected() -> None:
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    with pytest.raises(InvalidRequest):
        lister.page(ALICE, query_of({"jsonAfter": "eyJ2IjoxfQ.AAAA"}, limit=2))


# ----------------------------------------------------------------------------------------------
# Counting and visibility


@pytest.mark.parametrize("filters", FILTERS, ids=lambda c: c.name)
@pytest.mark.parametrize("principal", [ALICE, BOB, ADMIN], ids=["alice", "bob", "admin"])
def test_count_is_the_filtered_total(principal: Principal, filters: Case) -> None:
    prompts = sample_prompts()
    lister = PromptLister(FakePrompts(prompts), secret)
    total = len(expected_ids(prompts, principal, filters.oracle, [("createdAt", True)]))
    first = lister.page(principal, query_of(filters.raw, limit=2, count=True))
    assert first.count == total
    if first.after is not None:
        second = lister.page(
            principal, query_of(filters.raw, {"jsonAfter": first.after}, limit=2, count=True)
        )
        assert second.count == total


@pytest.mark.parametrize("principal", [ALICE, ADMIN], ids=["alice", "admin"])
def test_count_agrees_with_the_items_when_a_key_field_has_a_non_key_filter(principal: Principal) -> None:
    """`threadId equals 1` pins no partition (not a string) but still filters every item out."""
    raw = {
        "filters": [
            {"op": "equals", "fields": ["threadId"], "jsonValues": '["t1"]'},
            {"op": "equals", "fields": ["threadId"], "jsonValues": "[1]"},
        ]
    }
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    page = lister.page(principal, query_of(raw, limit=100, count=True))
    assert page.items == []
    assert page.count == 0


def test_no_count_unless_asked() -> None:
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    assert lister.page(ALICE, query_of(limit=2)).count is None


@pytest.mark.parametrize("order", ORDERS, ids=lambda c: c.name)
def test_a_user_never_sees_another_users_items(order: Case) -> None:
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    for principal in (ALICE, BOB):
        ids = paged_ids(lister, principal, query_of(order.raw, limit=100))
        owners = {p.userId for p in sample_prompts() if p.id in ids}
        assert owners == {principal.user_id}


@pytest.mark.parametrize(
    "raw",
    [
        {"filters": [{"op": "equals", "fields": ["userId"], "jsonValues": '["bob"]'}]},
        {"filters": [{"op": "isInList", "fields": ["id"], "jsonValues": '["p001", "p004"]'}]},
        {"filters": [{"op": "startsWith", "fields": ["userId"], "jsonValues": '["b"]'}]},
        {"filters": [{"op": "equals", "fields": ["userId", "threadId"], "jsonValues": '["bob"]'}]},
    ],
    ids=["userId", "bobs-ids", "startsWith", "two-fields"],
)
def test_asking_for_another_users_items_finds_none(raw: dict[str, Any]) -> None:
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    assert lister.page(ALICE, query_of(raw, limit=100, count=True)) == Page(items=[], after=None, count=0)
    assert lister.page(BOB, query_of(raw, limit=100)).items != []


def test_ids_are_fetched_for_their_owner_only() -> None:
    """p000 and p003 are alice's, p001 is bob's."""
    raw = {"filters": [{"op": "isInList", "fields": ["id"], "jsonValues": '["p000", "p001", "p003"]'}]}
    lister = PromptLister(FakePrompts(sample_prompts()), secret)
    assert [i.id for i in lister.page(ALICE, query_of(raw, limit=10)).items] == ["p003", "p000"]
    assert [i.id for i in lister.page(BOB, query_of(raw, limit=10)).items] == ["p001"]
    assert [i.id for i in lister.page(ADMIN, query_of(raw, limit=10)).items] == ["p003", "p001", "p000"]


def test_an_admin_sees_everyone() -> None:
    prompts = sample_prompts()
    lister = PromptLister(FakePrompts(prompts), secret)
    page = lister.page(ADMIN, query_of(limit=100, count=True))
    assert sorted(i.id for i in page.items) == sorted(p.id for p in prompts)
    assert page.count == len(prompts)


# ----------------------------------------------------------------------------------------------
# Reading no more than a page needs


def test_index_order_reads_little_more_than_the_page() -> None:
    """Two status partitions of 100 items each; a page of 5 must not read a page per partition's worth
    of DynamoDB items beyond what the merge needs (at most twice the page plus one per partition)."""
    prompts = [make_prompt(n, "alice", "t1", STATUSES[n % 2], 0, second=n) for n in range(200)]
    repo = FakePrompts(prompts)
    lister = PromptLister(repo, secret)
    raw = {"filters": [{"op": "isInList", "fields": ["status"], "jsonValues": '["scheduled", "running"]'}]}
    first = lister.page(ALICE, query_of(raw, limit=5))
    assert repo.reads <= 2 * (5 + 1) + 2
    second = lister.page(ALICE, query_of(raw, {"jsonAfter": first.after}, limit=5))
    assert repo.reads <= 2 * (2 * (5 + 1) + 2)
    assert [i.id for i in first.items + second.items] == [f"p{n:03d}" for n in range(199, 189, -1)]


def test_index_order_reads_on_when_a_partition_runs_dry() -> None:
    """One partition holds a single item, so the other must supply the rest of the page."""
    prompts = [make_prompt(0, "alice", "t1", Status.RUNNING, 0, second=500)]
    prompts += [make_prompt(n, "alice", "t1", Status.SCHEDULED, 0, second=n) for n in range(1, 40)]
    repo = FakePrompts(prompts)
    lister = PromptLister(repo, secret)
    raw = {"filters": [{"op": "isInList", "fields": ["status"], "jsonValues": '["scheduled", "running"]'}]}
    page = lister.page(ALICE, query_of(raw, limit=10))
    assert [i.id for i in page.items] == ["p000"] + [f"p{n:03d}" for n in range(39, 30, -1)]
    assert page.after is not None
    assert repo.reads <= 2 * (10 + 1) + 2


# ----------------------------------------------------------------------------------------------
# Every request reads a bounded number of items (small limits here; domain.query's in service)

SMALL = ReadLimits(budget=10, sort_ceiling=10, count_ceiling=10)


def pages_reading(
    repo: FakePrompts, lister: PromptLister, principal: Principal, query: Query
) -> tuple[list[str], list[int], list[int]]:
    """Every id across all pages, the items each request read, and each page's size. A page may be
    short, even empty, with a cursor: its filters left it short when its reads ran out."""
    ids: list[str] = []
    reads: list[int] = []
    sizes: list[int] = []
    after = None
    for _ in range(500):
        before = repo.reads
        page = lister.page(principal, replace(query, after=after))
        reads.append(repo.reads - before)
        sizes.append(len(page.items))
        ids.extend(item.id for item in page.items)
        after = page.after
        if after is None:
            return ids, reads, sizes
    raise AssertionError("paging does not terminate")


def many(count: int, user: str = "alice") -> list[Prompt]:
    return [make_prompt(n, user, f"t{n % 3}", STATUSES[n % 6], n % 4, second=n) for n in range(count)]


def test_a_filter_no_key_serves_reads_at_most_the_budget_per_page_and_goes_on() -> None:
    """Two prompts of 200 match: a page reads 10 items and answers what matched among them."""
    prompts = many(200)
    repo = FakePrompts(prompts)
    lister = PromptLister(repo, secret, SMALL)
    rare = {"filters": [{"op": "containsSubstring", "fields": ["prompt"], "jsonValues": '["77"]'}]}
    ids, reads, sizes = pages_reading(repo, lister, ALICE, query_of(rare, limit=3))
    assert ids == ["p177", "p077"]
    assert max(reads) <= SMALL.budget
    assert 0 in sizes[:-1]  # empty pages with a cursor: the contract DynamoDB's own Query has


def test_key_filters_and_time_ranges_read_little_more_than_the_page() -> None:
    prompts = many(300)
    repo = FakePrompts(prompts)
    lister = PromptLister(repo, secret, SMALL)
    for raw in [
        {"filters": [{"op": "equals", "fields": ["threadId"], "jsonValues": '["t1"]'}]},
        {"filters": [{"op": "greaterThanOrEqual", "fields": ["createdAt"], "jsonValues": f'["{at(250)}"]'}]},
        {"filters": [{"op": "lessThan", "fields": ["updatedAt"], "jsonValues": f'["{at(40)}"]'}],
         "orderBys": [{"field": "updatedAt", "desc": True}]},
    ]:  # fmt: skip
        _, reads, sizes = pages_reading(repo, lister, ALICE, query_of(raw, limit=7))
        assert all(size == 7 for size in sizes[:-1])
        assert max(reads) <= 7 + 1, raw


def test_an_order_no_index_serves_is_refused_past_the_ceiling() -> None:
    lister = PromptLister(FakePrompts(many(11)), secret, SMALL)
    by_runs = {"orderBys": [{"field": "runCount"}]}
    with pytest.raises(InvalidRequest, match=r"query\.orderBys: ordering by runCount .* at most 10"):
        lister.page(ALICE, query_of(by_runs, limit=5))
    # Narrowed by a key (thread t1: 4 prompts), it is sorted in memory.
    thread = {"filters": [{"op": "equals", "fields": ["threadId"], "jsonValues": '["t1"]'}]}
    assert len(lister.page(ALICE, query_of(by_runs, thread, limit=5)).items) == 4
    # An admin's update order (no index across users) is one of those orders.
    with pytest.raises(InvalidRequest, match="updatedAt"):
        lister.page(ADMIN, query_of({"orderBys": [{"field": "updatedAt"}]}, limit=5))


def test_random_order_shuffles_blocks_and_lists_each_prompt_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "new_seed", lambda: "fixed-seed")
    prompts = many(47)
    repo = FakePrompts(prompts)
    lister = PromptLister(repo, secret, SMALL)
    ids, reads, _ = pages_reading(repo, lister, ALICE, query_of({"orderBys": [{"randomize": True}]}, limit=4))
    assert sorted(ids) == sorted(p.id for p in prompts)
    assert max(reads) <= SMALL.sort_ceiling + 1
    newest = [p.id for p in sorted(prompts, key=lambda p: p.sort_key, reverse=True)]
    for block in range(0, 47, 10):  # each block of 10 (newest first) in its own random order
        members = newest[block : block + 10]
        assert ids[block : block + 10] == sorted(members, key=lambda i: random_rank("fixed-seed", i))


def test_prompts_added_while_paging_a_random_order_cost_it_nothing() -> None:
    """The first block is read again from just above its top: 30 prompts added between pages
    are not read, and every prompt of the first page's time is listed once."""
    prompts = many(25)
    repo = FakePrompts(prompts)
    lister = PromptLister(repo, secret, SMALL)
    query = query_of({"orderBys": [{"sortingType": "random"}]}, limit=3)
    ids: list[str] = []
    after = None
    for turn in range(100):
        before = repo.reads
        page = lister.page(ALICE, replace(query, after=after))
        assert repo.reads - before <= SMALL.sort_ceiling + 1
        ids.extend(item.id for item in page.items)
        for n in range(3):  # newer than everything listed so far
            repo.put_new(
                make_prompt(100 + 3 * turn + n, "alice", "t0", Status.SCHEDULED, 0, second=1000 + turn)
            )
        after = page.after
        if after is None:
            break
    assert sorted(ids) == sorted(p.id for p in prompts)


def test_a_count_past_its_ceiling_is_refused() -> None:
    lister = PromptLister(FakePrompts(many(11)), secret, SMALL)
    with pytest.raises(InvalidRequest, match=r"query\.count: .* more than 10 prompts"):
        lister.page(ALICE, query_of(limit=5, count=True))
    substring = {"filters": [{"op": "containsSubstring", "fields": ["prompt"], "jsonValues": '["1"]'}]}
    with pytest.raises(InvalidRequest, match=r"query\.count"):
        lister.page(ALICE, query_of(substring, limit=5, count=True))
    thread = {"op": "equals", "fields": ["threadId"], "jsonValues": '["t1"]'}
    both = {"filters": [thread, *substring["filters"]]}
    assert lister.page(ALICE, query_of(both, limit=5, count=True)).count == 2  # p001, p010


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob"]),
            st.sampled_from(["t0", "t1"]),
            st.sampled_from(STATUSES),
            st.integers(0, 3),
            st.integers(0, 30),
        ),
        max_size=40,
    ),
    principal=st.sampled_from([ALICE, ADMIN]),
    filters=st.sampled_from(FILTERS),
    order=st.sampled_from(ORDERS),
    limit=st.integers(1, 6),
)
def test_paging_property_with_small_limits(
    rows: list[tuple[str, str, Status, int, int]],
    principal: Principal,
    filters: Case,
    order: Case,
    limit: int,
) -> None:
    """Reads bounded to 10 items a request: all pages together are still exactly the answer (in
    order), or the query is refused because its order sorts more than 10 prompts in memory."""
    prompts = [make_prompt(n, *row) for n, row in enumerate(rows)]
    repo = FakePrompts(prompts)
    lister = PromptLister(repo, secret, SMALL)
    query = query_of(filters.raw, order.raw, limit=limit)
    selection = select(query, principal.user_id, principal.is_admin)
    served = query.sort_field in repo.orders(selection)
    selected = sum(1 for p in prompts if selection.admits({**asdict(p), "status": str(p.status)}))
    if not served and not query.is_random and selected > SMALL.sort_ceiling:
        with pytest.raises(InvalidRequest, match="orderBys"):
            lister.page(principal, query)
        return
    ids, reads, _ = pages_reading(repo, lister, principal, query)
    assert max(reads) <= SMALL.budget + 1
    if order.oracle is None:
        assert sorted(ids) == sorted(expected_ids(prompts, principal, filters.oracle, [("id", False)]))
    else:
        assert ids == expected_ids(prompts, principal, filters.oracle, order.oracle)
