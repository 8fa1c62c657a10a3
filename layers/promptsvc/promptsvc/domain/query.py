"""The list query language of `/prompt-svc/prompts`.

Pure: parsing and validation, matching a prompt's fields against filters, ordering, and the
*selection* (which values the key fields may take), from which the storage adapter plans its reads.
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
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from promptsvc.domain import bounded_json
from promptsvc.domain.bounded_json import JsonRejected
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.prompt import PUBLIC_FIELDS
from promptsvc.domain.validation import describe, quote, untagged, worded

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

FIELDS: frozenset[str] = frozenset(PUBLIC_FIELDS)  # filterable and sortable: the schema's fields
NUMERIC_FIELDS = frozenset({"runCount", "maxRetries", "promptTokens", "completionTokens"})
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
# Time fields a store may read by key (their comparisons as key conditions) and in order of.
RANGE_FIELDS = ("createdAt", "updatedAt")

# What one list request reads at most (docs/api.md, "Cost"). A page whose filters no key serves
# reads at most READ_BUDGET items and answers what matched among them, with a cursor that goes on;
# an order no index serves sorts at most SORT_CEILING prompts in memory (more is a 400; random
# order shuffles blocks of that many); a count reads at most COUNT_CEILING items (more is a 400).
READ_BUDGET = 1000
SORT_CEILING = 1000
COUNT_CEILING = 10_000


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


class Filter(msgspec.Struct, frozen=True):
    op: Op
    fields: tuple[str, ...] = ()
    values: tuple[Any, ...] = ()
    sub_filters: tuple["Filter", ...] = ()


class OrderBy(msgspec.Struct, frozen=True):
    field: str = DEFAULT_ORDER_FIELD
    desc: bool = False
    randomize: bool = False


class Query(msgspec.Struct, frozen=True):
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
    def sort_field(self) -> str | None:
        """The field of a one-field order that is not random: the orders an index may serve."""
        if len(self.order) == 1 and not self.is_random:
            return self.order[0].field
        return None

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
# Parsing: pydantic models of the request's `query` object, read into the value classes above.

_FieldOp = Literal[
    "equals",
    "containsSubstring",
    "startsWith",
    "intersects",
    "isInList",
    "lessThan",
    "lessThanOrEqual",
    "greaterThan",
    "greaterThanOrEqual",
]
_M = TypeVar("_M")


def _known_field(name: str) -> str:
    if name not in FIELDS:
        raise ValueError(f"unknown field {quote(name)}; known fields: {', '.join(sorted(FIELDS))}")
    return name


def _json_array(encoded: Any) -> Any:
    """`jsonValues` (or `valuesJson`): a JSON-encoded array, decoded within bounded_json's bounds."""
    if not isinstance(encoded, str):
        raise ValueError("must be a JSON-encoded array (a string)")
    try:
        values = bounded_json.loads(encoded)
    except JsonRejected as error:
        raise ValueError(str(error)) from None
    if not isinstance(values, list):
        raise ValueError("must encode a JSON array")
    return values


_FieldName = Annotated[str, AfterValidator(_known_field)]
_Value = Annotated[
    Annotated[str, Field(max_length=MAX_VALUE_CHARS)] | int | float | bool | None,
    worded(
        "must be a string, a number, a boolean or null",
        string_too_long=f"a value is longer than {MAX_VALUE_CHARS} characters",
    ),
]


class _Input(BaseModel):
    """Types as sent (`"5"` is no number, `1` no boolean); keys this service does not read are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)  # built on first use


class _FieldFilter(_Input):
    """Every op but `or`: `fields` (OR together) against `values`."""

    op: _FieldOp
    fields: list[_FieldName] = Field(min_length=1)
    encoded: Annotated[list[_Value], BeforeValidator(_json_array)] | None = Field(
        None, validation_alias=AliasChoices("jsonValues", "valuesJson")
    )
    values: list[_Value] | None = None

    def filter(self) -> Filter:
        values = self.encoded if self.encoded is not None else self.values or []
        return Filter(op=Op(self.op), fields=tuple(self.fields), values=tuple(values))

    def size(self) -> int:
        return 1

    @model_validator(mode="after")
    def _op_rules(self) -> "_FieldFilter":
        f = self.filter()
        op = f"op {f.op.value!r}"
        if not f.values:
            raise ValueError(f"{op} needs at least one value")
        if len(f.values) > MAX_VALUES:
            raise ValueError(f"{op} takes at most {MAX_VALUES} values, not {len(f.values)}")
        empty_key = next((name for name in f.fields if name in KEY_FIELDS), None) if "" in f.values else None
        if empty_key and f.op in MEMBERSHIP:
            raise ValueError(f"an empty {empty_key} matches no prompt")
        if f.op in COMPARISONS and len(f.values) != 1:
            raise ValueError(f"{op} takes exactly one value")
        if f.op in (Op.CONTAINS_SUBSTRING, Op.STARTS_WITH) and not all(isinstance(v, str) for v in f.values):
            raise ValueError(f"{op} takes string values")
        temporal = f.op in COMPARISONS or f.op in MEMBERSHIP
        if temporal and set(f.fields) <= TIME_FIELDS and any(instant(v) is None for v in f.values):
            raise ValueError(f"{', '.join(f.fields)} values must be RFC 3339 times")
        return self


class _OrFilter(_Input):
    """`or`: any of `subFilters` matches; nested at most MAX_OR_DEPTH deep."""

    op: Literal["or"]
    subFilters: list["_AnyFilter"] = Field(min_length=1, max_length=MAX_FILTER_NODES)
    _depth: int = PrivateAttr(1)  # `or` filters inside each other, this one included

    def filter(self) -> Filter:
        return Filter(op=Op.OR, sub_filters=tuple(s.filter() for s in self.subFilters))

    def size(self) -> int:
        return 1 + sum(s.size() for s in self.subFilters)

    @model_validator(mode="after")
    def _shallow(self) -> "_OrFilter":
        self._depth = 1 + max((s._depth for s in self.subFilters if isinstance(s, _OrFilter)), default=0)
        if self._depth > MAX_OR_DEPTH:
            raise ValueError(f"'or' filters nested more than {MAX_OR_DEPTH} deep in subFilters")
        return self


# A discriminated union on `op`: an unknown op is named as such, and each op's rules apply.
_AnyFilter = Annotated[_FieldFilter | _OrFilter, Field(discriminator="op"), untagged("op")]
_FILTER: TypeAdapter[_FieldFilter | _OrFilter] = TypeAdapter(_AnyFilter, config=ConfigDict(defer_build=True))


class _OrderByInput(_Input):
    sortingType: str | None = None
    randomize: bool | None = None
    field: str | None = None  # after the two above: whether a field is needed depends on them
    desc: bool = False

    @field_validator("sortingType")
    @classmethod
    def _sorting_type(cls, value: str | None) -> str | None:
        if value and value not in SORTING_TYPES:
            known = ", ".join(sorted(t for t in SORTING_TYPES if t))
            raise ValueError(f"unknown sorting type {quote(value)}; known: {known}")
        return value

    @field_validator("field")
    @classmethod
    def _field(cls, value: str | None, info: ValidationInfo) -> str | None:
        randomized = info.data.get("randomize") or info.data.get("sortingType") == "random"
        if value and not randomized:
            _known_field(value)
        return value

    def order_by(self) -> OrderBy:
        randomize = bool(self.randomize) or self.sortingType == "random"
        return OrderBy(field=self.field or DEFAULT_ORDER_FIELD, desc=self.desc, randomize=randomize)


class _QueryInput(_Input):
    """The request body's `query` (both client spellings of `jsonAfter`)."""

    filters: list[_AnyFilter] | None = Field(None, max_length=MAX_FILTERS)
    orderBys: list[_OrderByInput] | None = Field(None, max_length=MAX_ORDER_BYS)
    limit: int | None = Field(None, ge=0, le=MAX_LIMIT)  # 0: the default, as generated clients send
    count: bool = False
    after: str | None = Field(None, validation_alias=AliasChoices("jsonAfter", "afterJson"))

    @model_validator(mode="after")
    def _budget(self) -> "_QueryInput":
        if sum(f.size() for f in self.filters or ()) > MAX_FILTER_NODES:
            raise ValueError(f"at most {MAX_FILTER_NODES} filters, subFilters included")
        return self

    def query(self) -> Query:
        return Query(
            filters=tuple(f.filter() for f in self.filters or ()),
            order_bys=tuple(o.order_by() for o in self.orderBys or ()),
            limit=self.limit or DEFAULT_LIMIT,
            count=self.count,
            after=self.after or None,
        )


def _read(validate: Callable[[Any], _M], raw: Any, where: str) -> _M:
    """`validate(raw)`; InvalidRequest naming each problem at `where` when it does not hold."""
    try:
        return validate(raw)
    except ValidationError as error:
        raise InvalidRequest(describe(error.errors(include_url=False), where=where, brackets=True)) from None


def parse_filter(raw: Any, where: str) -> Filter:
    """One filter; its problems are located at `where` (e.g. `query.filters[0]`)."""
    parsed = _read(_FILTER.validate_python, raw, where)
    if parsed.size() > MAX_FILTER_NODES:
        raise InvalidRequest(f"{where}: at most {MAX_FILTER_NODES} filters, subFilters included")
    return parsed.filter()


def parse_order_by(raw: Any, where: str) -> OrderBy:
    return _read(_OrderByInput.model_validate, raw, where).order_by()


def parse_query(raw: Any) -> Query:
    """A query from the request body's `query` object; absent (None) is the default query."""
    if raw is None:
        return Query()
    return _read(_QueryInput.model_validate, raw, "query").query()


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
# Selection: what a query's key filters pin, and the time ranges its filters leave. How a store
# reads that (which index, which key condition) is the storage adapter's business
# (adapters/prompt_reads.py).

_MICROSECOND = timedelta(microseconds=1)  # the stored times' resolution (domain.clock)


def stored_time(moment: datetime) -> str:
    """`moment` in the stored form (domain.clock.now_rfc3339's, with a 4-digit year for any year)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class TimeRange(msgspec.Struct, frozen=True):
    """What time filters leave of one time field: inclusive bounds in the stored form (fixed width,
    so string order is time order, as in every index); None is unbounded."""

    low: str | None = None
    high: str | None = None

    @property
    def empty(self) -> bool:
        return self.low is not None and self.high is not None and self.low > self.high

    def admits(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def narrowed(self, other: "TimeRange") -> "TimeRange":
        """Both ranges at once (two filters on one field AND together)."""
        lows = [bound for bound in (self.low, other.low) if bound is not None]
        highs = [bound for bound in (self.high, other.high) if bound is not None]
        return TimeRange(max(lows, default=None), min(highs, default=None))


def time_range(f: Filter) -> tuple[str, TimeRange, bool] | None:
    """(field, range, exact) when the filter bounds one of `RANGE_FIELDS`; `exact`: the range is
    the whole filter (a comparison, or one instant), not a superset (the span of a list)."""
    if len(f.fields) != 1 or f.fields[0] not in RANGE_FIELDS:
        return None
    if f.op not in COMPARISONS and f.op not in MEMBERSHIP:
        return None
    moments = [m for m in (instant(v) for v in f.values) if m is not None]
    if len(moments) != len(f.values):
        return None
    try:  # stored times have microseconds: `> t` is `>= t + 1 us`, `< t` is `<= t - 1 us`
        if f.op in MEMBERSHIP:
            found = TimeRange(stored_time(min(moments)), stored_time(max(moments)))
            return f.fields[0], found, len(set(moments)) == 1
        moment = moments[0]
        bounds = {
            Op.LESS_THAN: TimeRange(high=stored_time(moment - _MICROSECOND)),
            Op.LESS_THAN_OR_EQUAL: TimeRange(high=stored_time(moment)),
            Op.GREATER_THAN: TimeRange(low=stored_time(moment + _MICROSECOND)),
            Op.GREATER_THAN_OR_EQUAL: TimeRange(low=stored_time(moment)),
        }
    except OverflowError:  # past the calendar's ends: left to the filter itself
        return None
    return f.fields[0], bounds[f.op], True


class Selection(msgspec.Struct, frozen=True):
    """The prompts a query can match, as far as their key fields (`KEY_FIELDS`) and time ranges
    (`RANGE_FIELDS`) tell.

    `pinned`: for each pinned key field, the values it may take (none: the query matches nothing);
    a key field not pinned may take any value. `ranges`: for each time field some filter bounds,
    the range it may take. A store may yield a superset of the selection: the lister re-checks
    `filters` (all the query's filters, plus the owner for a non-admin) on every prompt. `exact`:
    the pinned values and ranges are the whole filter, so counting the selection counts the answer.
    """

    pinned: Mapping[str, tuple[str, ...]]
    filters: tuple[Filter, ...] = ()
    exact: bool = False
    ranges: Mapping[str, TimeRange] = msgspec.field(default_factory=dict)

    def admits(self, fields: Mapping[str, Any]) -> bool:
        """The prompt's key fields take pinned values, and its times are within the ranges."""
        return all(str(fields.get(name)) in values for name, values in self.pinned.items()) and all(
            bounds.admits(fields.get(name)) for name, bounds in self.ranges.items()
        )


def key_values(f: Filter) -> tuple[str, tuple[str, ...]] | None:
    """(field, values) when the filter pins one key field to a set of string values."""
    if (
        f.op in MEMBERSHIP
        and len(f.fields) == 1
        and f.fields[0] in KEY_FIELDS
        and all(isinstance(v, str) for v in f.values)
    ):
        return f.fields[0], tuple(dict.fromkeys(f.values))
    return None


def select(query: Query, user_id: str, is_admin: bool) -> Selection:
    """The query's selection, constrained to the caller's own prompts unless an admin asks.

    A non-admin is always pinned to their userId, so a user's query never reads another's prompts.
    """
    filters = list(query.filters)
    if not is_admin:
        filters.append(Filter(op=Op.EQUALS, fields=("userId",), values=(user_id,)))
    pinned: dict[str, tuple[str, ...]] = {}
    ranges: dict[str, TimeRange] = {}
    exact = True
    for f in filters:
        kv = key_values(f)
        bounded = time_range(f) if kv is None else None
        if kv is not None:
            name, values = kv
            # Two filters on one field AND together: keep the intersection.
            pinned[name] = tuple(v for v in values if v in pinned[name]) if name in pinned else values
        elif bounded is not None:
            name, bounds, whole = bounded
            ranges[name] = ranges[name].narrowed(bounds) if name in ranges else bounds
            exact = exact and whole
        else:
            exact = False
    return Selection(pinned=pinned, filters=tuple(filters), exact=exact, ranges=ranges)


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


T = TypeVar("T")


def _identity(item: Any) -> Any:
    return item


def sort_items(
    items: list[T], query: Query, seed: str | None, fields: Callable[[T], Mapping[str, Any]] = _identity
) -> list[T]:
    """`items` in the query's order; `fields(item)` gives an item's fields (the item itself by default)."""
    compare = comparator(query)

    def order(a: T, b: T) -> int:
        return compare(position(fields(a), query, seed), position(fields(b), query, seed))

    return sorted(items, key=functools.cmp_to_key(order))
