"""The prompts table's read plan (adapters/prompt_reads.key_access): which key access, GetItem or
an index Query per partition, reads a query's selection in an order, and the key condition its
time range becomes (never a Scan: an admin pinning no key reads the status partitions). Pure: no
DynamoDB here."""

import json
from types import SimpleNamespace
from typing import Any

import pytest
from boto3.dynamodb.conditions import ConditionExpressionBuilder
from promptsvc.adapters.prompt_items import INDEXES
from promptsvc.adapters.prompt_reads import Access, _sort_condition, key_access
from promptsvc.domain.query import Filter, Op, Query, TimeRange, parse_query, select
from promptsvc.domain.status import Status

EVERY_STATUS = tuple(str(s) for s in Status)


def flt(op: str, fields: list[str], *values: Any) -> Filter:
    raw = {"filters": [{"op": op, "fields": fields, "jsonValues": json.dumps(list(values))}]}
    return parse_query(raw).filters[0]


def plan(query: Query, user_id: str, is_admin: bool, by: str = "createdAt") -> SimpleNamespace:
    """The selection and the access that reads it in order of `by`, as one plan."""
    selection = select(query, user_id, is_admin)
    access = key_access(selection, by)
    assert access is not None
    return SimpleNamespace(
        access=access.kind, index=access.index, keys=access.keys, filters=selection.filters
    )


# ----------------------------------------------------------------------------------------------
# Planning: a query's selection (domain.query.select) as the table's key access


class TestPlan:
    @pytest.mark.parametrize(
        "filters",
        [
            (),
            (flt("containsSubstring", ["prompt"], "x"),),
            (flt("equals", ["modelId"], "m"),),
            (flt("equals", ["userId"], "bob"),),
            (flt("equals", ["status", "threadId"], "running"),),
        ],
    )
    def test_user_is_pinned_to_own_id(self, filters: tuple[Filter, ...]) -> None:
        p = plan(Query(filters=filters), "alice", is_admin=False)
        owner = Filter(op=Op.EQUALS, fields=("userId",), values=("alice",))
        assert owner in p.filters
        assert all(f in p.filters for f in filters)
        assert all(k == "alice" or k.startswith("alice#") for k in p.keys)

    def test_user_without_key_filter_reads_own_partition(self) -> None:
        p = plan(Query(), "alice", is_admin=False)
        assert (p.access, p.index and p.index.name, p.keys) == (Access.QUERY, "byUser", ("alice",))

    def test_user_thread(self) -> None:
        p = plan(Query(filters=(flt("equals", ["threadId"], "t1"),)), "alice", is_admin=False)
        assert (p.access, p.index and p.index.name, p.keys) == (Access.QUERY, "byUserThread", ("alice#t1",))

    def test_user_status(self) -> None:
        p = plan(Query(filters=(flt("equals", ["status"], "running"),)), "alice", is_admin=False)
        assert (p.index and p.index.name, p.keys) == ("byUserStatus", ("alice#running",))

    def test_status_list_gives_one_partition_per_value(self) -> None:
        q = Query(filters=(flt("isInList", ["status"], "running", "errored", "running"),))
        p = plan(q, "alice", is_admin=False)
        assert (p.index and p.index.name, p.keys) == ("byUserStatus", ("alice#running", "alice#errored"))
        admin = plan(q, "root", is_admin=True)
        assert (admin.index and admin.index.name, admin.keys) == ("byStatus", ("running", "errored"))

    def test_id_filter_gets_items(self) -> None:
        q = Query(filters=(flt("isInList", ["id"], "p1", "p2"),))
        p = plan(q, "alice", is_admin=False)
        assert (p.access, p.keys) == (Access.GET, ("alice#p1", "alice#p2"))  # ids are per user
        # An admin naming no user: the id may be anyone's, so it is not a key lookup.
        admin = plan(q, "root", is_admin=True)
        assert (admin.access, admin.index and admin.index.name, admin.keys) == (
            Access.QUERY,
            "byStatus",
            EVERY_STATUS,
        )
        both = Query(filters=(flt("isInList", ["id"], "p1"), flt("isInList", ["userId"], "bob", "carol")))
        assert plan(both, "root", is_admin=True).keys == ("bob#p1", "carol#p1")

    def test_admin_without_key_filter_reads_every_status_partition(self) -> None:
        """Was a Scan of the whole table: now the six status partitions, merged in index order."""
        p = plan(Query(filters=(flt("startsWith", ["prompt"], "x"),)), "root", is_admin=True)
        assert (p.access, p.index and p.index.name, p.keys) == (Access.QUERY, "byStatus", EVERY_STATUS)
        assert p.filters == Query(filters=(flt("startsWith", ["prompt"], "x"),)).filters

    def test_admin_thread(self) -> None:
        p = plan(Query(filters=(flt("equals", ["threadId"], "t1"),)), "root", is_admin=True)
        assert (p.access, p.index and p.index.name, p.keys) == (Access.QUERY, "byThread", ("t1",))

    def test_admin_user_and_thread(self) -> None:
        q = Query(filters=(flt("isInList", ["userId"], "a", "b"), flt("equals", ["threadId"], "t1")))
        p = plan(q, "root", is_admin=True)
        assert (p.index and p.index.name, p.keys) == ("byUserThread", ("a#t1", "b#t1"))

    def test_admin_user(self) -> None:
        p = plan(Query(filters=(flt("equals", ["userId"], "bob"),)), "root", is_admin=True)
        assert (p.index and p.index.name, p.keys) == ("byUser", ("bob",))

    def test_user_asking_for_someone_else_reads_nothing(self) -> None:
        p = plan(Query(filters=(flt("equals", ["userId"], "bob"),)), "alice", is_admin=False)
        assert (p.access, p.keys) == (Access.QUERY, ())

    def test_user_listing_self_among_others_reads_only_own(self) -> None:
        p = plan(Query(filters=(flt("isInList", ["userId"], "bob", "alice"),)), "alice", is_admin=False)
        assert (p.access, p.keys) == (Access.QUERY, ("alice",))

    def test_two_filters_on_one_field_intersect(self) -> None:
        q = Query(
            filters=(
                flt("isInList", ["status"], "running", "errored", "scheduled"),
                flt("isInList", ["status"], "completed", "errored", "running"),
            )
        )
        assert set(plan(q, "root", is_admin=True).keys) == {"errored", "running"}
        assert set(plan(q, "alice", is_admin=False).keys) == {"alice#errored", "alice#running"}

    def test_disjoint_filters_on_one_field_read_nothing(self) -> None:
        q = Query(filters=(flt("equals", ["threadId"], "t1"), flt("equals", ["threadId"], "t2")))
        assert plan(q, "root", is_admin=True).keys == ()

    @pytest.mark.parametrize(
        "f",
        [
            flt("equals", ["threadId", "status"], "t1"),  # two fields: not a key condition
            flt("startsWith", ["threadId"], "t1"),
            flt("equals", ["threadId"], 1),
        ],
    )
    def test_non_key_filters_do_not_choose_an_index(self, f: Filter) -> None:
        p = plan(Query(filters=(f,)), "root", is_admin=True)
        assert (p.index and p.index.name, p.keys) == ("byStatus", EVERY_STATUS)

    def test_partition_key(self) -> None:
        p = plan(Query(filters=(flt("equals", ["threadId"], "t1"),)), "alice", is_admin=False)
        assert p.index is not None
        assert p.index.key_of({"userId": "alice", "threadId": "t1", "id": "p1"}) == "alice#t1"


# ----------------------------------------------------------------------------------------------
# Orders: which index reads a selection in order of updatedAt (only byUserUpdated sorts by it)


class TestOrders:
    def test_a_users_prompts_are_read_by_last_change_on_their_own_index(self) -> None:
        for filters in [(), (flt("equals", ["threadId"], "t1"),), (flt("equals", ["status"], "running"),)]:
            p = plan(Query(filters=filters), "alice", is_admin=False, by="updatedAt")
            assert (p.access, p.index and p.index.name, p.keys) == (Access.QUERY, "byUserUpdated", ("alice",))

    def test_no_index_reads_every_user_by_last_change(self) -> None:
        assert key_access(select(Query(), "root", is_admin=True), "updatedAt") is None
        bob = select(Query(filters=(flt("equals", ["userId"], "bob"),)), "root", is_admin=True)
        access = key_access(bob, "updatedAt")
        assert access is not None and access.index is not None and access.index.name == "byUserUpdated"

    def test_a_key_lookup_serves_any_order(self) -> None:
        selection = select(Query(filters=(flt("equals", ["id"], "p1"),)), "alice", is_admin=False)
        for by in ("createdAt", "updatedAt"):
            access = key_access(selection, by)
            assert access is not None and access.kind is Access.GET


# ----------------------------------------------------------------------------------------------
# Time ranges as key conditions


def condition(index_name: str, bounds: TimeRange | None, desc: bool, after: tuple[str, str] | None) -> Any:
    index = next(i for i in INDEXES if i.name == index_name)
    built = _sort_condition(index, bounds, desc, after)
    if built is None or built is False:
        return built
    expression = ConditionExpressionBuilder().build_expression(built, is_key_condition=True)
    values = [
        expression.attribute_value_placeholders[k] for k in sorted(expression.attribute_value_placeholders)
    ]
    names = list(expression.attribute_name_placeholders.values())
    return expression.condition_expression.split(" ")[1], names, values


T1, T2 = "2024-05-01T00:00:00.000000Z", "2024-05-02T00:00:00.000000Z"


class TestTimeRanges:
    def test_a_created_range_bounds_the_sort_key_exactly(self) -> None:
        """sk = createdAt#id: `createdAt <= T2` is `sk <= T2$` (every `T2#id` is below `T2$`)."""
        assert condition("byUser", TimeRange(T1, T2), False, None) == ("BETWEEN", ["sk"], [T1, T2 + "$"])
        assert condition("byUser", TimeRange(low=T1), False, None) == (">=", ["sk"], [T1])
        assert condition("byUser", TimeRange(high=T2), True, None) == ("<=", ["sk"], [T2 + "$"])

    def test_the_cursor_narrows_the_range(self) -> None:
        after = ("2024-05-01T12:00:00.000000Z", "p9")
        assert condition("byUser", None, True, after) == ("<", ["sk"], ["2024-05-01T12:00:00.000000Z#p9"])
        assert condition("byUser", TimeRange(T1, T2), True, after) == (
            "BETWEEN",
            ["sk"],
            [T1, "2024-05-01T12:00:00.000000Z#p9"],
        )
        assert condition("byUser", TimeRange(high=T1), False, (T2, "p1")) is False  # past the range

    def test_on_updated_at_the_cursor_bound_keeps_its_ties(self) -> None:
        """Prompts may tie on updatedAt: the reader reads from the cursor's value on and skips."""
        assert condition("byUserUpdated", None, True, (T2, "p1")) == ("<=", ["updatedAt"], [T2])
        assert condition("byUserUpdated", TimeRange(T1, None), False, (T2, "p1")) == (
            ">=",
            ["updatedAt"],
            [T2],
        )

    def test_no_range_and_no_cursor_is_no_condition(self) -> None:
        assert condition("byUser", None, True, None) is None
