"""The list query language of `/prompt-svc/prompts`, and how a query maps onto DynamoDB.

Pure: parsing and validation, matching an item against filters, ordering, and the *plan*, i.e.
which key access (GetItem, an index Query per partition, or a Scan) reads the fewest items.
Semantics:

- several filters AND together; several `fields` in one filter OR together;
- `equals`, `isInList`, `intersects`: the field's value (or any element, for a list) is one of
  the values; `containsSubstring` / `startsWith`: the field's text contains / starts with any value;
- `lessThan`, `lessThanOrEqual`, `greaterThan`, `greaterThanOrEqual`: compared with one value;
- `or`: any of `subFilters` matches.
"""

import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from promptsvc.domain import bounded_json
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.prompt import PUBLIC_FIELDS

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

FIELDS: frozenset[str] = frozenset(PUBLIC_FIELDS)  # filterable and sortable: the schema's fields
NUMERIC_FIELDS = frozenset({"runCount", "maxRetries"})
# Compared and matched as instants, so `2024-05-01T12:00:00+02:00` and JS `toISOString()`'s
# millisecond form compare correctly against the stored microsecond UTC form.
TIME_FIELDS = frozenset({"createdAt", "updatedAt", "lastRun"})
DEFAULT_ORDER_FIELD = "createdAt"

# Bounds, so a query's cost and its parsing stay small whatever the caller sends (README: Limits).
MAX_FILTERS = 20  # in `filters`
MAX_FILTER_NODES = 50  # filters counting every subFilter
MAX_OR_DEPTH = 4  # `or` filters inside each other
MAX_VALUES = 100  # values of one filter (e.g. isInList's list)
MAX_VALUE_CHARS = 1024  # a string value
MAX_ORDER_BYS = 5
# A key filter with more values than this (isInList on many threads or statuses) is read as one
# coarser partition (the user's), filtered, instead of one Query per value.
MAX_KEY_PARTITIONS = 10
KEY_FIELDS = frozenset({"id", "threadId", "status", "userId"})  # never empty on a stored prompt


class Op(StrEnum):
    EQUALS = "equals"
    CONTAINS_SUBSTRING = "containsSubstring"
    STARTS_WITH = "startsWith"
    INTERSECTS = "intersects"
    IS_IN_LIST = "isInList"
    OR = "or"
    LESS_THAN = "lessThan"
    LESS_THAN_OR_EQUAL = "lessThanOrEqual"
    GREATER_THAN = "greaterThan"
    GREATER_THAN_OR_EQUAL = "greaterThanOrEqual"


COMPARISONS = frozenset({Op.LESS_THAN, Op.LESS_THAN_OR_EQUAL, Op.GREATER_THAN, Op.GREATER_THAN_OR_EQUAL})
MEMBERSHIP = frozenset({Op.EQUALS, Op.IS_IN_LIST, Op.INTERSECTS})
SORTING_TYPES = frozenset({"", "numeric", "text", "date", "random"})


@dataclass(frozen=True)
class Filter:
    op: Op
    fields: tuple[str, ...] = ()
    values: tuple[Any, ...] = ()
    sub_filters: tuple["Filter", ...] = ()


@dataclass(frozen=True)
class OrderBy:
    field: str = DEFAULT_ORDER_FIELD
    desc: bool = False
    randomize: bool = False


@dataclass(frozen=True)
class Query:
    filters: tuple[Filter, ...] = ()
    order_bys: tuple[OrderBy, ...] = ()
    limit: int = DEFAULT_LIMIT
    count: bool = False
    after: str | None = None

    @property
    def order(self) -> tuple[OrderBy, ...]:
        """The effective ordering; newest first when none is given."""
        return self.order_bys or (OrderBy(DEFAULT_ORDER_FIELD, desc=True),)

    @property
    def is_random(self) -> bool:
        return any(o.randomize for o in self.order)

    @property
    def index_ordered(self) -> bool:
        """True when the order is creation time, which every index already sorts by."""
        return len(self.order) == 1 and self.order[0].field == "createdAt" and not self.is_random

    def fingerprint(self, principal_key: str) -> str:
        """What a cursor is bound to: the same caller asking the same question."""
        body = {
            "who": principal_key,
            "filters": [_filter_repr(f) for f in self.filters],
            "order": [[o.field, o.desc, o.randomize] for o in self.order],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _filter_repr(f: Filter) -> list[Any]:
    return [str(f.op), list(f.fields), list(f.values), [_filter_repr(s) for s in f.sub_filters]]


# ----------------------------------------------------------------------------------------------
# Parsing


def _first(raw: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if raw.get(name) is not None:
            return raw[name]
    return None


def _decode_values(raw: Mapping[str, Any], where: str) -> tuple[Any, ...]:
    encoded = _first(raw, "jsonValues", "valuesJson")
    if encoded is None:
        plain = raw.get("values")
        if plain is None:
            return ()
        if not isinstance(plain, list):
            raise InvalidRequest(f"{where}.values must be an array")
        return tuple(plain)
    if not isinstance(encoded, str):
        raise InvalidRequest(f"{where}.jsonValues must be a JSON-encoded array (a string)")
    values = bounded_json.loads(encoded, f"{where}.jsonValues")
    if not isinstance(values, list):
        raise InvalidRequest(f"{where}.jsonValues must encode a JSON array")
    return tuple(values)


def _check_values(values: tuple[Any, ...], fields: list[str], op: Op, where: str) -> None:
    if len(values) > MAX_VALUES:
        raise InvalidRequest(f"{where}: op {op.value!r} takes at most {MAX_VALUES} values, not {len(values)}")
    for value in values:
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidRequest(f"{where}: values must be strings, numbers, booleans or null")
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            raise InvalidRequest(f"{where}: a value is longer than {MAX_VALUE_CHARS} characters")
    empty_key = next((name for name in fields if name in KEY_FIELDS), None) if "" in values else None
    if empty_key and op in MEMBERSHIP:
        raise InvalidRequest(f"{where}: an empty {empty_key} matches no prompt")


def parse_filter(raw: Any, where: str, budget: list[int] | None = None, depth: int = 0) -> Filter:
    """One filter; `budget` holds how many more filters (subFilters included) the query may have."""
    budget = budget if budget is not None else [MAX_FILTER_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidRequest(f"{where}: a query has at most {MAX_FILTER_NODES} filters, subFilters included")
    if not isinstance(raw, Mapping):
        raise InvalidRequest(f"{where} must be an object")
    op_name: Any = raw.get("op")
    try:
        op = Op(op_name)
    except (ValueError, TypeError):
        known = ", ".join(o.value for o in Op)
        raise InvalidRequest(f"{where}.op: unknown op {op_name!r:.100}; known ops: {known}") from None
    if op is Op.OR:
        subs = raw.get("subFilters")
        if not isinstance(subs, list) or not subs:
            raise InvalidRequest(f"{where}.subFilters must be a non-empty array for op 'or'")
        if depth >= MAX_OR_DEPTH:
            raise InvalidRequest(f"{where}.subFilters: 'or' filters nested more than {MAX_OR_DEPTH} deep")
        parsed = tuple(
            parse_filter(s, f"{where}.subFilters[{i}]", budget, depth + 1) for i, s in enumerate(subs)
        )
        return Filter(op=op, sub_filters=parsed)

    fields = raw.get("fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise InvalidRequest(f"{where}.fields must be a non-empty array of field names")
    for name in fields:
        if name not in FIELDS:
            raise InvalidRequest(
                f"{where}.fields: unknown field {name!r}; known fields: {', '.join(sorted(FIELDS))}"
            )
    values = _decode_values(raw, where)
    if not values:
        raise InvalidRequest(f"{where}: op {op.value!r} needs at least one value")
    _check_values(values, fields, op, where)
    if op in COMPARISONS and len(values) != 1:
        raise InvalidRequest(f"{where}: op {op.value!r} takes exactly one value")
    if op in (Op.CONTAINS_SUBSTRING, Op.STARTS_WITH) and not all(isinstance(v, str) for v in values):
        raise InvalidRequest(f"{where}: op {op.value!r} takes string values")
    temporal = op in COMPARISONS or op in MEMBERSHIP
    if temporal and set(fields) <= TIME_FIELDS and any(instant(v) is None for v in values):
        raise InvalidRequest(f"{where}: {', '.join(fields)} values must be RFC 3339 times")
    return Filter(op=op, fields=tuple(fields), values=values)


def parse_order_by(raw: Any, where: str) -> OrderBy:
    if not isinstance(raw, Mapping):
        raise InvalidRequest(f"{where} must be an object")
    sorting_type = raw.get("sortingType") or ""
    if not isinstance(sorting_type, str):
        raise InvalidRequest(f"{where}.sortingType must be a string")
    if sorting_type not in SORTING_TYPES:
        raise InvalidRequest(
            f"{where}.sortingType: unknown sorting type {sorting_type!r}; "
            f"known: {', '.join(sorted(t for t in SORTING_TYPES if t))}"
        )
    randomize = raw.get("randomize") or False
    if not isinstance(randomize, bool):
        raise InvalidRequest(f"{where}.randomize must be a boolean")
    randomize = randomize or sorting_type == "random"
    name = raw.get("field") or DEFAULT_ORDER_FIELD
    if not isinstance(name, str):
        raise InvalidRequest(f"{where}.field must be a field name (a string)")
    if not randomize and name not in FIELDS:
        raise InvalidRequest(
            f"{where}.field: unknown field {name!r}; known fields: {', '.join(sorted(FIELDS))}"
        )
    desc = raw.get("desc", False)
    if not isinstance(desc, bool):
        raise InvalidRequest(f"{where}.desc must be a boolean")
    return OrderBy(field=name, desc=desc, randomize=randomize)


def parse_query(raw: Any) -> Query:
    """A query from the request body's `query` object (both client spellings accepted)."""
    if raw is None:
        return Query()
    if not isinstance(raw, Mapping):
        raise InvalidRequest("query must be an object")
    filters_raw = raw.get("filters")
    if filters_raw is None:
        filters_raw = []
    if not isinstance(filters_raw, list):
        raise InvalidRequest("query.filters must be an array")
    if len(filters_raw) > MAX_FILTERS:
        raise InvalidRequest(f"query.filters: at most {MAX_FILTERS} filters, not {len(filters_raw)}")
    orders_raw = raw.get("orderBys")
    if orders_raw is None:
        orders_raw = []
    if not isinstance(orders_raw, list):
        raise InvalidRequest("query.orderBys must be an array")
    if len(orders_raw) > MAX_ORDER_BYS:
        raise InvalidRequest(f"query.orderBys: at most {MAX_ORDER_BYS}, not {len(orders_raw)}")
    limit = raw.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise InvalidRequest(f"query.limit must be an integer from 1 to {MAX_LIMIT}")
    if not limit:  # absent or 0: the default, as generated clients send 0 for "unset"
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"query.limit must be an integer from 1 to {MAX_LIMIT}")
    count = raw.get("count", False)
    if not isinstance(count, bool):
        raise InvalidRequest("query.count must be a boolean")
    after = _first(raw, "jsonAfter", "afterJson")
    if after is not None and not isinstance(after, str):
        raise InvalidRequest("query.jsonAfter must be a string")
    budget = [MAX_FILTER_NODES]
    return Query(
        filters=tuple(parse_filter(f, f"query.filters[{i}]", budget) for i, f in enumerate(filters_raw)),
        order_bys=tuple(parse_order_by(o, f"query.orderBys[{i}]") for i, o in enumerate(orders_raw)),
        limit=limit,
        count=count,
        after=after or None,
    )


# ----------------------------------------------------------------------------------------------
# Matching


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple | set) else [value]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and bool(a == b))
    return bool(a == b)


def _compare(item_value: Any, op: Op, value: Any) -> bool:
    if item_value is None or item_value == "":
        return False
    try:
        if op is Op.LESS_THAN:
            return bool(item_value < value)
        if op is Op.LESS_THAN_OR_EQUAL:
            return bool(item_value <= value)
        if op is Op.GREATER_THAN:
            return bool(item_value > value)
        return bool(item_value >= value)
    except TypeError:
        return False


def instant(value: Any) -> datetime | None:
    """An RFC 3339 time as an aware datetime (a naive one is taken as UTC); None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _field_matches(name: str, item_value: Any, f: Filter) -> bool:
    if name in TIME_FIELDS and (f.op in MEMBERSHIP or f.op in COMPARISONS):
        moment = instant(item_value)
        wanted = [w for w in (instant(v) for v in f.values) if w is not None]
        if moment is None or not wanted:
            return False
        if f.op in MEMBERSHIP:
            return moment in wanted
        return _compare(moment, f.op, wanted[0])
    if f.op in MEMBERSHIP:
        return any(_same(v, w) for v in _as_list(item_value) for w in f.values)
    if f.op is Op.CONTAINS_SUBSTRING:
        return isinstance(item_value, str) and any(v in item_value for v in f.values)
    if f.op is Op.STARTS_WITH:
        return isinstance(item_value, str) and any(item_value.startswith(v) for v in f.values)
    return _compare(item_value, f.op, f.values[0])


def matches(item: Mapping[str, Any], filters: Iterable[Filter]) -> bool:
    """True when the item satisfies every filter."""
    for f in filters:
        if f.op is Op.OR:
            if not any(matches(item, [s]) for s in f.sub_filters):
                return False
        elif not any(_field_matches(name, item.get(name), f) for name in f.fields):
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Planning


class Access(StrEnum):
    GET = "get"  # GetItem by table key (userId#id), one per value
    QUERY = "query"  # an index Query, one per partition value
    SCAN = "scan"  # a table Scan: admin queries with no key filter only


@dataclass(frozen=True)
class Index:
    """A global secondary index; every one sorts on `sk` (createdAt#id)."""

    name: str
    partition: tuple[str, ...]  # the fields whose values, joined with '#', make the partition key
    key_attribute: str


INDEXES: tuple[Index, ...] = (
    Index("byUserThread", ("userId", "threadId"), "userThread"),
    Index("byUserStatus", ("userId", "status"), "userStatus"),
    Index("byThread", ("threadId",), "threadId"),
    Index("byStatus", ("status",), "status"),
    Index("byUser", ("userId",), "userId"),
)
SORT_ATTRIBUTE = "sk"


@dataclass(frozen=True)
class Plan:
    access: Access
    index: Index | None = None
    keys: tuple[str, ...] = ()  # partition key values (QUERY) or table keys userId#id (GET)
    filters: tuple[Filter, ...] = field(default_factory=tuple)  # re-checked on every item read


def key_values(f: Filter) -> tuple[str, tuple[str, ...]] | None:
    """(field, values) when the filter pins one field to a set of string values."""
    if f.op in MEMBERSHIP and len(f.fields) == 1 and all(isinstance(v, str) for v in f.values):
        return f.fields[0], tuple(dict.fromkeys(f.values))
    return None


def plan(query: Query, user_id: str, is_admin: bool) -> Plan:
    """Choose the cheapest access for a query, constrained to the caller's own prompts.

    A non-admin is always pinned to their userId, so a user's query is never a Scan. All the
    query's filters (plus the owner constraint) are re-applied to every item read, so the access
    only has to be a superset of the answer.
    """
    pinned: dict[str, tuple[str, ...]] = {}
    for f in query.filters:
        kv = key_values(f)
        if kv is None:
            continue
        name, values = kv
        # Two filters on one field AND together: keep the intersection.
        pinned[name] = tuple(v for v in values if v in pinned[name]) if name in pinned else values

    filters = list(query.filters)
    if not is_admin:
        owner = Filter(op=Op.EQUALS, fields=("userId",), values=(user_id,))
        filters.append(owner)
        allowed = pinned.get("userId", (user_id,))
        pinned["userId"] = tuple(v for v in allowed if v == user_id)

    if "id" in pinned and "userId" in pinned:  # ids are per user: the table key is userId#id
        keys = _partition_keys([pinned["userId"], pinned["id"]])
        if len(keys) <= MAX_VALUES:
            return Plan(Access.GET, keys=keys, filters=tuple(filters))
    # The first index (the most selective) whose partitions are few; else the one with fewest.
    candidates = [
        (index, _partition_keys([pinned[name] for name in index.partition]))
        for index in INDEXES
        if all(name in pinned for name in index.partition)
    ]
    if candidates:
        few = [c for c in candidates if len(c[1]) <= MAX_KEY_PARTITIONS]
        index, keys = few[0] if few else min(candidates, key=lambda c: len(c[1]))
        return Plan(Access.QUERY, index=index, keys=keys, filters=tuple(filters))
    return Plan(Access.SCAN, filters=tuple(filters))


def _partition_keys(values: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    keys: list[str] = [""]
    for i, options in enumerate(values):
        keys = [f"{k}#{o}" if i else o for k in keys for o in options]
    return tuple(keys)


def partition_key(index: Index, item: Mapping[str, Any]) -> str:
    return "#".join(str(item[name]) for name in index.partition)


# ----------------------------------------------------------------------------------------------
# Ordering and positions (what a cursor holds)


def random_rank(seed: str, item_id: str) -> str:
    """A stable pseudo-random position for an item, so a random order can still be paged."""
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def new_seed() -> str:
    return f"{random.getrandbits(64):016x}"


def _normalize(value: Any) -> tuple[int, Any]:
    """Missing values sort first; then booleans, numbers and strings each among themselves."""
    if value is None or value == "":
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, value)
    return (3, str(value))


def position(item: Mapping[str, Any], query: Query, seed: str | None) -> list[Any]:
    """The item's position in the query's order: one value per orderBy, then the id."""
    values: list[Any] = []
    for o in query.order:
        if o.randomize:
            values.append(random_rank(seed or "", str(item["id"])))
        else:
            values.append(item.get(o.field))
    values.append(item["id"])
    return values


def comparator(query: Query) -> Callable[[Sequence[Any], Sequence[Any]], int]:
    """Compare two positions; ties on every orderBy break on id, in the first orderBy's direction."""
    directions = [o.desc and not o.randomize for o in query.order]
    directions.append(directions[0])

    def compare(a: Sequence[Any], b: Sequence[Any]) -> int:
        for x, y, desc in zip(a, b, directions, strict=True):
            nx, ny = _normalize(x), _normalize(y)
            if nx != ny:
                result = -1 if nx < ny else 1
                return -result if desc else result
        return 0

    return compare


def sort_items(items: list[dict[str, Any]], query: Query, seed: str | None) -> list[dict[str, Any]]:
    compare = comparator(query)

    def order(a: dict[str, Any], b: dict[str, Any]) -> int:
        return compare(position(a, query, seed), position(b, query, seed))

    return sorted(items, key=functools.cmp_to_key(order))
