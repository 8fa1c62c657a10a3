"""The prompt entity and its creation rules (promptsvc.domain.prompt)."""

import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.names import ID_PATTERN
from promptsvc.domain.prompt import (
    PUBLIC_FIELDS,
    NewPrompt,
    Prompt,
    create_prompt,
    public_view,
    request_hash,
)
from promptsvc.domain.status import Status

NEW = NewPrompt(
    prompt="hi", modelId="m", template="[{prompt}]", threadId="t1", maxRetries=3, sync=False, id="p1"
)
CLOCK = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


def test_now_rfc3339_format() -> None:
    assert now_rfc3339(CLOCK) == "2024-05-01T10:00:00.123456Z"
    assert now_rfc3339(datetime(2024, 5, 1, tzinfo=UTC)) == "2024-05-01T00:00:00.000000Z"


def test_now_rfc3339_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert now_rfc3339(datetime(2024, 5, 1, 1, 30, tzinfo=plus_two)) == "2024-04-30T23:30:00.000000Z"


def test_now_rfc3339_defaults_to_now() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", now_rfc3339())


@settings(max_examples=200)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)),
)
def test_string_order_is_time_order(a: datetime, b: datetime) -> None:
    sa, sb = now_rfc3339(a), now_rfc3339(b)
    assert len(sa) == len(sb) == 27
    assert (sa < sb) == (a < b)
    assert (sa == sb) == (a == b)


def test_create_prompt() -> None:
    prompt = create_prompt("alice", NEW, CLOCK)
    assert prompt == Prompt(
        id="p1",
        prompt="hi",
        modelId="m",
        template="[{prompt}]",
        threadId="t1",
        userId="alice",
        status=Status.SCHEDULED,
        runCount=0,
        maxRetries=3,
        sync=False,
        createdAt="2024-05-01T10:00:00.123456Z",
        updatedAt="2024-05-01T10:00:00.123456Z",
        requestHash=request_hash("alice", NEW),
    )
    assert prompt.sort_key == "2024-05-01T10:00:00.123456Z#p1"


def test_request_hash_ignores_sync_only() -> None:
    base = request_hash("alice", NEW)
    assert request_hash("alice", replace(NEW, sync=True)) == base
    assert request_hash("bob", NEW) != base
    for change in (
        {"prompt": "ho"},
        {"modelId": "n"},
        {"template": ""},
        {"threadId": "t2"},
        {"maxRetries": 4},
    ):
        assert request_hash("alice", replace(NEW, **change)) != base, change


def test_public_view_of_a_prompt() -> None:
    prompt = replace(create_prompt("alice", NEW, CLOCK), answer="secret answer")
    view = public_view(prompt)
    assert tuple(view) == PUBLIC_FIELDS
    assert view["status"] == "scheduled"
    assert type(view["status"]) is str
    assert "answer" not in view
    assert "requestHash" not in view


def test_public_view_of_a_stored_item() -> None:
    item = {"id": "p1", "status": "running", "sk": "x#p1", "userThread": "a#t", "runCount": 1}
    view = public_view(item)
    assert tuple(view) == PUBLIC_FIELDS
    assert (view["id"], view["status"], view["runCount"], view["prompt"]) == ("p1", "running", 1, None)


def test_with_status() -> None:
    prompt = create_prompt("alice", NEW, CLOCK)
    moved = prompt.with_status(Status.RUNNING, runCount=1)
    assert (moved.status, moved.runCount, moved.id) == (Status.RUNNING, 1, "p1")
    assert prompt.status is Status.SCHEDULED


def test_id_pattern() -> None:
    assert re.fullmatch(ID_PATTERN, "a.b_c:d@e-f")
    assert re.fullmatch(ID_PATTERN, "x" * 128)
    for bad in ("", "x" * 129, "a#b", "-a", "a b", "a/b"):
        assert not re.fullmatch(ID_PATTERN, bad), bad
