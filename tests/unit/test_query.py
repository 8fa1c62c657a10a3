"""The list query language: parsing, matching, the selection and ordering (promptsvc.domain.query)."""

import json
from typing import Any

import pytest
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Filter,
    Op,
    OrderBy,
    Query,
    TimeRange,
    matches,
    parse_filter,
    parse_order_by,
    parse_query,
    select,
    sort_items,
)


def flt(op: str, fields: list[str], *values: Any) -> Filter:
    return parse_filter({"op": op, "fields": fields, "jsonValues": json.dumps(list(values))}, "f")


def item(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "p1",
        "prompt": "hello world",
        "userId": "alice",
        "threadId": "t1",
        "status": "scheduled",
        "runCount": 2,
        "createdAt": "2024-05-01T10:00:00.000000Z",
    }
    return base | fields


# ----------------------------------------------------------------------------------------------
# Parsing


class TestParseFilter:
    @pytest.mark.parametrize("spelling", ["jsonValues", "valuesJson"])
    def test_json_encoded_values_in_both_spellings(self, spelling: str) -> None:
        f = parse_filter({"op": "equals", "fields": ["status"], spelling: '["running", "errored"]'}, "f")
        assert f == Filter(op=Op.EQUALS, fields=("status",), values=("running", "errored"))

    def test_plain_values_array(self) -> None:
        f = parse_filter({"op": "isInList", "fields": ["threadId"], "values": ["a", "b"]}, "f")
        assert f.values == ("a", "b")

    def test_json_values_take_precedence_over_plain_values(self) -> None:
        f = parse_filter({"op": "equals", "fields": ["id"], "values": ["x"], "jsonValues": '["y"]'}, "f")
        assert f.values == ("y",)

    @pytest.mark.parametrize(
        "encoded",
        ["not json", '{"a": 1}', '"running"', "[]", 5],
        ids=["invalid-json", "object", "string", "empty", "not-a-string"],
    )
    def test_bad_json_values(self, encoded: Any) -> None:
        with pytest.raises(InvalidRequest):
            parse_filter({"op": "equals", "fields": ["status"], "jsonValues": encoded}, "f")

    def test_no_values(self) -> None:
        with pytest.raises(InvalidRequest, match="at least one value"):
            parse_filter({"op": "equals", "fields": ["status"]}, "f")

    def test_unknown_field_is_named(self) -> None:
        with pytest.raises(InvalidRequest, match="'colour'") as error:
            parse_filter({"op": "equals", "fields": ["status", "colour"], "jsonValues": '["x"]'}, "f")
        assert "status" in str(error.value)  # the message also lists the known fields

    def test_unknown_op_is_named(self) -> None:
        with pytest.raises(InvalidRequest, match="'fuzzyMatch'"):
            parse_filter({"op": "fuzzyMatch", "fields": ["status"], "jsonValues": '["x"]'}, "f")

    def test_missing_op(self) -> None:
        with pytest.raises(InvalidRequest, match="op"):
            parse_filter({"fields": ["status"], "jsonValues": '["x"]'}, "f")

    @pytest.mark.parametrize("fields", [None, [], "status", [1]])
    def test_fields_must_be_a_non_empty_list_of_names(self, fields: Any) -> None:
        with pytest.raises(InvalidRequest, match="fields"):
            parse_filter({"op": "equals", "fields": fields, "jsonValues": '["x"]'}, "f")

    @pytest.mark.parametrize("op", ["lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"])
    def test_comparison_takes_exactly_one_value(self, op: str) -> None:
        assert flt(op, ["runCount"], 3).values == (3,)
        with pytest.raises(InvalidRequest, match="exactly one value"):
            flt(op, ["runCount"], 1, 2)

    @pytest.mark.parametrize("op", ["containsSubstring", "startsWith"])
    def test_text_ops_take_strings(self, op: str) -> None:
        with pytest.raises(InvalidRequest, match="string"):
            flt(op, ["prompt"], 1)

    def test_or_parses_sub_filters(self) -> None:
        raw = {
            "op": "or",
            "subFilters": [
                {"op": "equals", "fields": ["status"], "jsonValues": '["running"]'},
                {"op": "greaterThan", "fields": ["runCount"], "jsonValues": "[1]"},
            ],
        }
        f = parse_filter(raw, "f")
        assert f.op is Op.OR
        assert [s.op for s in f.sub_filters] == [Op.EQUALS, Op.GREATER_THAN]

    @pytest.mark.parametrize("subs", [None, [], "x"])
    def test_or_needs_sub_filters(self, subs: Any) -> None:
        with pytest.raises(InvalidRequest, match="subFilters"):
            parse_filter({"op": "or", "subFilters": subs}, "f")

    def test_invalid_sub_filter_is_located(self) -> None:
        raw = {"op": "or", "subFilters": [{"op": "nope", "fields": ["id"], "jsonValues": '["x"]'}]}
        with pytest.raises(InvalidRequest, match=r"f\.subFilters\[0\]"):
            parse_filter(raw, "f")

    def test_not_an_object(self) -> None:
        with pytest.raises(InvalidRequest):
            parse_filter(["equals"], "f")


class TestParseOrderBy:
    def test_defaults_to_created_at_ascending(self) -> None:
        assert parse_order_by({}, "o") == OrderBy("createdAt", desc=False, randomize=False)

    def test_field_and_direction(self) -> None:
        assert parse_order_by({"field": "runCount", "desc": True}, "o") == OrderBy("runCount", desc=True)

    @pytest.mark.parametrize("raw", [{"randomize": True}, {"sortingType": "random"}])
    def test_random_in_both_spellings(self, raw: dict[str, Any]) -> None:
        assert parse_order_by(raw, "o").randomize

    @pytest.mark.parametrize("sorting_type", ["numeric", "text", "date"])
    def test_other_sorting_types_are_not_random(self, sorting_type: str) -> None:
        assert not parse_order_by({"field": "runCount", "sortingType": sorting_type}, "o").randomize

    def test_unknown_sorting_type(self) -> None:
        with pytest.raises(InvalidRequest, match="'shuffle'"):
            parse_order_by({"sortingType": "shuffle"}, "o")

    def test_unknown_field_is_named(self) -> None:
        with pytest.raises(InvalidRequest, match="'colour'"):
            parse_order_by({"field": "colour"}, "o")

    def test_desc_must_be_boolean(self) -> None:
        with pytest.raises(InvalidRequest, match="desc"):
            parse_order_by({"desc": "yes"}, "o")


class TestParseQuery:
    def test_none_is_the_default_query(self) -> None:
        assert parse_query(None) == Query()

    def test_full_query(self) -> None:
        q = parse_query(
            {
                "filters": [{"op": "equals", "fields": ["status"], "jsonValues": '["running"]'}],
                "orderBys": [{"field": "runCount", "desc": True}],
                "limit": 5,
                "count": True,
                "jsonAfter": "tok",
            }
        )
        assert q.filters == (Filter(Op.EQUALS, ("status",), ("running",)),)
        assert q.order_bys == (OrderBy("runCount", desc=True),)
        assert (q.limit, q.count, q.after) == (5, True, "tok")

    @pytest.mark.parametrize("spelling", ["jsonAfter", "afterJson"])
    def test_after_in_both_spellings(self, spelling: str) -> None:
        assert parse_query({spelling: "tok"}).after == "tok"

    def test_empty_after_means_first_page(self) -> None:
        assert parse_query({"jsonAfter": ""}).after is None

    def test_after_must_be_a_string(self) -> None:
        with pytest.raises(InvalidRequest, match="jsonAfter"):
            parse_query({"jsonAfter": {"p": 1}})

    @pytest.mark.parametrize(("raw", "expected"), [({}, DEFAULT_LIMIT), ({"limit": 0}, DEFAULT_LIMIT)])
    def test_default_limit(self, raw: dict[str, Any], expected: int) -> None:
        assert DEFAULT_LIMIT == 20
        assert parse_query(raw).limit == expected

    @pytest.mark.parametrize("limit", [1, 37, MAX_LIMIT])
    def test_limit_in_range(self, limit: int) -> None:
        assert MAX_LIMIT == 100
        assert parse_query({"limit": limit}).limit == limit

    @pytest.mark.parametrize("limit", [101, -1, 2.5, "10", True, False, 0.0, [5]])
    def test_invalid_limit(self, limit: Any) -> None:
        with pytest.raises(InvalidRequest, match="limit"):
            parse_query({"limit": limit})

    def test_count_must_be_boolean(self) -> None:
        with pytest.raises(InvalidRequest, match="count"):
            parse_query({"count": "yes"})

    @pytest.mark.parametrize(
        "raw",
        ["filters", {"filters": {"op": "or"}}, {"orderBys": "createdAt"}],
        ids=["str", "filters", "orders"],
    )
    def test_malformed_structure(self, raw: Any) -> None:
        with pytest.raises(InvalidRequest):
            parse_query(raw)

    def test_filter_errors_are_located(self) -> None:
        raw = {"filters": [{"op": "equals", "fields": ["id"], "jsonValues": '["x"]'}, {"op": "bad"}]}
        with pytest.raises(InvalidRequest, match=r"query\.filters\[1\]"):
            parse_query(raw)


class TestQueryProperties:
    def test_default_order_is_newest_first(self) -> None:
        assert Query().order == (OrderBy("createdAt", desc=True),)
        assert Query().sort_field == "createdAt"

    @pytest.mark.parametrize(
        ("orders", "sort_field", "is_random"),
        [
            ((OrderBy("createdAt"),), "createdAt", False),
            ((OrderBy("updatedAt", desc=True),), "updatedAt", False),
            (
                (OrderBy("runCount"),),
                "runCount",
                False,
            ),  # one field; whether an index serves it is the store's
            ((OrderBy("createdAt"), OrderBy("id")), None, False),
            ((OrderBy("createdAt", randomize=True),), None, True),
        ],
    )
    def test_sort_field_and_random(
        self, orders: tuple[OrderBy, ...], sort_field: str | None, is_random: bool
    ) -> None:
        q = Query(order_bys=orders)
        assert (q.sort_field, q.is_random) == (sort_field, is_random)

    def test_fingerprint_binds_caller_filters_and_order_only(self) -> None:
        base = Query(filters=(flt("equals", ["status"], "running"),), limit=5)
        fp = base.fingerprint("alice:user")
        assert Query(filters=base.filters, limit=50, count=True, after="x").fingerprint("alice:user") == fp
        assert base.fingerprint("bob:user") != fp
        assert base.fingerprint("alice:admin") != fp
        assert Query(filters=(flt("equals", ["status"], "errored"),)).fingerprint("alice:user") != fp
        assert Query(filters=base.filters, order_bys=(OrderBy("createdAt"),)).fingerprint("alice:user") != fp


# ----------------------------------------------------------------------------------------------
# Matching


class TestMatches:
    @pytest.mark.parametrize(
        ("f", "expected"),
        [
            (flt("equals", ["status"], "scheduled"), True),
            (flt("equals", ["status"], "running", "scheduled"), True),
            (flt("equals", ["status"], "running"), False),
            (flt("equals", ["runCount"], 2), True),
            (flt("equals", ["runCount"], "2"), False),
            (flt("containsSubstring", ["prompt"], "lo wo"), True),
            (flt("containsSubstring", ["prompt"], "xyz", "world"), True),
            (flt("containsSubstring", ["prompt"], "World"), False),
            (flt("containsSubstring", ["runCount"], "2"), False),
            (flt("startsWith", ["prompt"], "hello"), True),
            (flt("startsWith", ["prompt"], "nope", "hell"), True),
            (flt("startsWith", ["prompt"], "world"), False),
            (flt("isInList", ["threadId"], "t0", "t1"), True),
            (flt("isInList", ["threadId"], "t0", "t2"), False),
            (flt("intersects", ["threadId"], "t1"), True),
            (flt("intersects", ["threadId"], "t2"), False),
            (flt("equals", ["error"], "x"), False),  # a missing field matches nothing
        ],
    )
    def test_single_filter(self, f: Filter, expected: bool) -> None:
        assert matches(item(), [f]) is expected

    @pytest.mark.parametrize(("op", "value"), [("intersects", ["b", "z"]), ("isInList", ["z", "c"])])
    def test_membership_on_list_valued_fields(self, op: str, value: list[str]) -> None:
        tagged = item(prompt=["a", "b", "c"])
        assert matches(tagged, [flt(op, ["prompt"], *value)])
        assert not matches(tagged, [flt(op, ["prompt"], "x", "y")])

    def test_booleans_are_not_numbers(self) -> None:
        assert matches(item(sync=True), [flt("equals", ["sync"], True)])
        assert not matches(item(sync=True), [flt("equals", ["sync"], 1)])
        assert not matches(item(runCount=1), [flt("equals", ["runCount"], True)])

    @pytest.mark.parametrize(
        ("op", "value", "expected"),
        [
            ("lessThan", 3, True),
            ("lessThan", 2, False),
            ("lessThanOrEqual", 2, True),
            ("lessThanOrEqual", 1, False),
            ("greaterThan", 1, True),
            ("greaterThan", 2, False),
            ("greaterThanOrEqual", 2, True),
            ("greaterThanOrEqual", 3, False),
            ("lessThan", 2.5, True),
        ],
    )
    def test_numeric_comparisons(self, op: str, value: float, expected: bool) -> None:
        assert matches(item(runCount=2), [flt(op, ["runCount"], value)]) is expected

    @pytest.mark.parametrize(
        ("op", "value", "expected"),
        [
            ("lessThan", "2024-05-01T10:00:00.000001Z", True),
            ("lessThan", "2024-05-01T10:00:00.000000Z", False),
            ("lessThanOrEqual", "2024-05-01T10:00:00.000000Z", True),
            ("greaterThan", "2024-04-30T23:59:59.999999Z", True),
            ("greaterThan", "2024-05-01T10:00:00.000000Z", False),
            ("greaterThanOrEqual", "2024-05-01T10:00:00.000000Z", True),
            ("greaterThanOrEqual", "2025-01-01T00:00:00.000000Z", False),
        ],
    )
    def test_rfc3339_comparisons(self, op: str, value: str, expected: bool) -> None:
        stamped = item(createdAt="2024-05-01T10:00:00.000000Z")
        assert matches(stamped, [flt(op, ["createdAt"], value)]) is expected

    @pytest.mark.parametrize(
        ("op", "value", "expected"),
        [
            ("greaterThan", "2024-05-01T10:00:00Z", True),  # no fraction: 0.5 s before the item
            ("lessThan", "2024-05-01T12:00:00+02:00", False),  # an offset: 10:00Z, before the item
        ],
    )
    def test_rfc3339_comparisons_are_by_instant_not_by_spelling(
        self, op: str, value: str, expected: bool
    ) -> None:
        """RFC 3339 allows other fractions and offsets than the stored fixed-width UTC form."""
        stamped = item(createdAt="2024-05-01T10:00:00.500000Z")
        assert matches(stamped, [flt(op, ["createdAt"], value)]) is expected

    @pytest.mark.parametrize("value", [None, ""])
    def test_comparisons_never_match_missing_values(self, value: Any) -> None:
        for op in ("lessThan", "greaterThan"):
            assert not matches(item(lastRun=value), [flt(op, ["lastRun"], "2024-01-01T00:00:00.000000Z")])

    def test_comparison_of_incomparable_types_does_not_match(self) -> None:
        assert not matches(item(runCount=2), [flt("lessThan", ["runCount"], "9")])

    def test_fields_of_one_filter_or_together(self) -> None:
        f = flt("equals", ["threadId", "status"], "running", "t1")
        assert matches(item(threadId="t1", status="completed"), [f])
        assert matches(item(threadId="t9", status="running"), [f])
        assert not matches(item(threadId="t9", status="completed"), [f])

    def test_filters_and_together(self) -> None:
        filters = [flt("equals", ["threadId"], "t1"), flt("equals", ["status"], "running")]
        assert matches(item(threadId="t1", status="running"), filters)
        assert not matches(item(threadId="t1", status="scheduled"), filters)
        assert not matches(item(threadId="t2", status="running"), filters)

    def test_no_filters_match_everything(self) -> None:
        assert matches(item(), [])

    def test_or_matches_any_sub_filter(self) -> None:
        f = parse_filter(
            {
                "op": "or",
                "subFilters": [
                    {"op": "equals", "fields": ["status"], "jsonValues": '["running"]'},
                    {"op": "greaterThan", "fields": ["runCount"], "jsonValues": "[3]"},
                ],
            },
            "f",
        )
        assert matches(item(status="running", runCount=0), [f])
        assert matches(item(status="scheduled", runCount=4), [f])
        assert not matches(item(status="scheduled", runCount=3), [f])


# ----------------------------------------------------------------------------------------------
# Ordering


class TestSortItems:
    def test_missing_values_sort_first_then_ties_break_on_id(self) -> None:
        items = [
            {"id": "b", "error": "z"},
            {"id": "c", "error": ""},
            {"id": "a", "error": "z"},
            {"id": "d"},
        ]
        q = Query(order_bys=(OrderBy("error"),))
        assert [i["id"] for i in sort_items(items, q, None)] == ["c", "d", "a", "b"]
        q_desc = Query(order_bys=(OrderBy("error", desc=True),))
        assert [i["id"] for i in sort_items(items, q_desc, None)] == ["b", "a", "d", "c"]

    def test_several_orders(self) -> None:
        items = [
            {"id": "1", "status": "running", "runCount": 1},
            {"id": "2", "status": "errored", "runCount": 1},
            {"id": "3", "status": "running", "runCount": 5},
            {"id": "4", "status": "errored", "runCount": 3},
        ]
        q = Query(order_bys=(OrderBy("status"), OrderBy("runCount", desc=True)))
        assert [i["id"] for i in sort_items(items, q, None)] == ["4", "2", "3", "1"]

    def test_random_order_is_a_stable_function_of_the_seed(self) -> None:
        items = [{"id": f"p{i}"} for i in range(30)]
        q = Query(order_bys=(OrderBy(randomize=True),))
        first = [i["id"] for i in sort_items(items, q, "s1")]
        assert first == [i["id"] for i in sort_items(list(reversed(items)), q, "s1")]
        assert sorted(first) == sorted(i["id"] for i in items)
        assert first != [i["id"] for i in sort_items(items, q, "s2")]


# ----------------------------------------------------------------------------------------------
# The selection: key values pinned, time ranges in the stored form (string order is time order)


def selection_of(*filters: Filter, admin: bool = True) -> Any:
    return select(Query(filters=filters), "alice", is_admin=admin)


class TestSelectionRanges:
    @pytest.mark.parametrize(
        ("op", "value", "low", "high"),
        [
            ("greaterThanOrEqual", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000000Z", None),
            ("greaterThan", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000001Z", None),
            ("lessThan", "2024-05-01T12:00:00Z", None, "2024-05-01T11:59:59.999999Z"),
            ("lessThanOrEqual", "2024-05-01T14:00:00+02:00", None, "2024-05-01T12:00:00.000000Z"),
            (
                "equals",
                "2024-05-01T12:00:00.5Z",
                "2024-05-01T12:00:00.500000Z",
                "2024-05-01T12:00:00.500000Z",
            ),
        ],
    )
    def test_a_comparison_is_an_exact_range(
        self, op: str, value: str, low: str | None, high: str | None
    ) -> None:
        s = selection_of(flt(op, ["createdAt"], value))
        assert s.ranges == {"createdAt": TimeRange(low, high)}
        assert s.exact

    def test_ranges_on_one_field_intersect_and_each_field_keeps_its_own(self) -> None:
        s = selection_of(
            flt("greaterThanOrEqual", ["createdAt"], "2024-05-01T00:00:00Z"),
            flt("lessThan", ["createdAt"], "2024-05-03T00:00:00Z"),
            flt("greaterThan", ["createdAt"], "2024-05-02T00:00:00Z"),
            flt("lessThanOrEqual", ["updatedAt"], "2024-06-01T00:00:00Z"),
        )
        assert s.ranges == {
            "createdAt": TimeRange("2024-05-02T00:00:00.000001Z", "2024-05-02T23:59:59.999999Z"),
            "updatedAt": TimeRange(None, "2024-06-01T00:00:00.000000Z"),
        }

    def test_a_list_of_times_spans_them_and_is_not_exact(self) -> None:
        s = selection_of(flt("isInList", ["updatedAt"], "2024-05-03T00:00:00Z", "2024-05-01T00:00:00Z"))
        assert s.ranges == {
            "updatedAt": TimeRange("2024-05-01T00:00:00.000000Z", "2024-05-03T00:00:00.000000Z")
        }
        assert not s.exact

    def test_disjoint_ranges_are_empty_and_admit_nothing(self) -> None:
        s = selection_of(
            flt("greaterThan", ["createdAt"], "2024-05-02T00:00:00Z"),
            flt("lessThan", ["createdAt"], "2024-05-01T00:00:00Z"),
        )
        assert s.ranges["createdAt"].empty
        assert not s.admits({"createdAt": "2024-05-01T12:00:00.000000Z"})

    @pytest.mark.parametrize(
        "f",
        [
            flt("greaterThan", ["lastRun"], "2024-05-01T00:00:00Z"),  # no index sorts by lastRun
            flt("greaterThan", ["createdAt", "updatedAt"], "2024-05-01T00:00:00Z"),  # either: no range
            flt("startsWith", ["createdAt"], "2024"),
            flt("lessThan", ["createdAt"], "0001-01-01T00:00:00Z"),  # before the calendar: the filter's
        ],
    )
    def test_other_time_filters_leave_no_range(self, f: Filter) -> None:
        s = selection_of(f)
        assert s.ranges == {}
        assert not s.exact

    def test_admits_checks_pins_and_ranges(self) -> None:
        s = selection_of(flt("greaterThanOrEqual", ["createdAt"], "2024-05-01T00:00:00Z"), admin=False)
        assert s.admits({"userId": "alice", "createdAt": "2024-05-01T00:00:00.000000Z"})
        assert not s.admits({"userId": "alice", "createdAt": "2024-04-30T23:59:59.999999Z"})
        assert not s.admits({"userId": "bob", "createdAt": "2024-05-02T00:00:00.000000Z"})

    def test_a_range_and_the_matcher_agree_at_the_edges(self) -> None:
        edge = "2024-05-01T12:00:00.000000Z"
        for op in ("lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"):
            f = flt(op, ["updatedAt"], "2024-05-01T14:00:00+02:00")
            s = selection_of(f)
            for moment in ("2024-05-01T11:59:59.999999Z", edge, "2024-05-01T12:00:00.000001Z"):
                assert s.admits({"updatedAt": moment}) == matches({"updatedAt": moment}, [f]), (op, moment)
