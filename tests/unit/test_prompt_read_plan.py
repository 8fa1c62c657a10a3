"""The prompts table's read plan (adapters/prompt_reads.key_access): which key access, GetItem,
an index Query per partition or a Scan, reads a query's selection. Pure: no DynamoDB here."""

import json
from types import SimpleNamespace
from typing import Any

import pytest
from promptsvc.adapters.prompt_reads import Access, key_access
from promptsvc.domain.query import Filter, Op, Query, parse_query, select


def flt(op: str, fields: list[str], *values: Any) -> Filter:
    raw = {"filters": [{"op": op, "fields": fields, "jsonValues": json.dumps(list(values))}]}
    return parse_query(raw).filters[0]


def plan(query: Query, user_id: str, is_admin: bool) -> SimpleNamespace:
    """The selection and the access that reads it, as one plan."""
    selection = select(query, user_id, is_admin)
    access = key_access(selection)
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
    def test_user_is_pinned_to_own_id_and_never_scans(self, filters: tuple[Filter, ...]) -> None:
        p = plan(Query(filters=filters), "alice", is_admin=False)
        assert p.access is not Access.SCAN
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
        assert plan(q, "root", is_admin=True).access is Access.SCAN
        both = Query(filters=(flt("isInList", ["id"], "p1"), flt("isInList", ["userId"], "bob", "carol")))
        assert plan(both, "root", is_admin=True).keys == ("bob#p1", "carol#p1")

    def test_admin_without_key_filter_scans(self) -> None:
        p = plan(Query(filters=(flt("startsWith", ["prompt"], "x"),)), "root", is_admin=True)
        assert (p.access, p.keys) == (Access.SCAN, ())
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
        assert plan(Query(filters=(f,)), "root", is_admin=True).access is Access.SCAN

    def test_partition_key(self) -> None:
        p = plan(Query(filters=(flt("equals", ["threadId"], "t1"),)), "alice", is_admin=False)
        assert p.index is not None
        assert p.index.key_of({"userId": "alice", "threadId": "t1", "id": "p1"}) == "alice#t1"
