"""Thread events as the seed client's stream chunks, and where a cursorless subscription starts
(domain/response_stream.py); the follow loop's bound and end (services/response_stream.py)."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from promptsvc.domain.catalog import Catalog
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.keys import Principal, Role
from promptsvc.domain.response_stream import FOLLOW_SECONDS, chunk_of, start_after
from promptsvc.domain.thread_events import EventType, ThreadEvent
from promptsvc.services.response_stream import Cursor, ResponseStream

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def event(seq: int, prompt: str, kind: EventType, age: float = 1.0, **fields: Any) -> ThreadEvent:
    stamp = now_rfc3339(NOW - timedelta(seconds=age))
    return ThreadEvent("t", "alice", prompt, kind, stamp, seq=seq, **fields)


def test_deltas_resets_and_closing_statuses_are_chunks_the_rest_are_not() -> None:
    assert chunk_of(event(1, "p", EventType.DELTA, text="Hi")) == {
        "messageId": "p",
        "text": "Hi",
        "type": "progress",
    }
    assert chunk_of(event(2, "p", EventType.RESET)) == {
        "messageId": "p",
        "text": "",
        "type": "progress",
        "reset": True,
    }
    for status in ("completed", "abandoned", "canceled", "removed"):
        done = chunk_of(event(3, "p", EventType.STATUS, status=status))
        assert done == {"messageId": "p", "text": "", "type": "done", "status": status}
    failed = chunk_of(event(3, "p", EventType.STATUS, status="abandoned", error="boom"))
    assert failed is not None and failed["error"] == "boom"
    for status in ("scheduled", "running", "errored"):
        assert chunk_of(event(4, "p", EventType.STATUS, status=status)) is None
    assert chunk_of(event(5, "", EventType.GAP)) is None


def test_a_cursorless_start_is_the_top_or_before_the_prompt_being_answered() -> None:
    assert start_after([], NOW) == 0
    finished = [
        event(3, "a", EventType.STATUS, status="completed"),
        event(2, "a", EventType.DELTA, text="x"),
        event(1, "a", EventType.STATUS, status="running"),
    ]
    assert start_after(finished, NOW) == 3  # the next prompt
    running = [
        event(6, "b", EventType.DELTA, text="y"),
        event(5, "b", EventType.STATUS, status="running"),
        event(4, "b", EventType.STATUS, status="scheduled"),
        *finished,
    ]
    assert start_after(running, NOW) == 3  # b whole
    stale = [
        event(s.seq, s.promptId, s.type, FOLLOW_SECONDS + 1, text=s.text, status=s.status) for s in running
    ]
    assert start_after(stale, NOW) == 6  # b is not being answered: not followed
    hole = [
        event(6, "c", EventType.STATUS, status="completed"),
        event(4, "c", EventType.STATUS, status="running"),
    ]
    assert start_after([*hole, *finished], NOW) == 4  # seq 5 is still being written: start below it


class _Log:
    def __init__(self, events: list[ThreadEvent]) -> None:
        self.events = events
        self.reads = 0

    def after(self, thread_key: str, after_seq: int, limit: int) -> list[ThreadEvent]:
        self.reads += 1
        assert thread_key == "alice#t"
        return [e for e in self.events if e.seq > after_seq][:limit]

    def recent(self, thread_key: str, limit: int) -> list[ThreadEvent]:
        return sorted(self.events, key=lambda e: -e.seq)[:limit]


def _collect(stream: ResponseStream, cursor: Cursor, wait: float) -> list[tuple[int, dict[str, Any]]]:
    async def run() -> list[tuple[int, dict[str, Any]]]:
        return [chunk async for chunk in stream.follow(cursor, wait)]

    return asyncio.run(run())


def test_following_ends_with_the_first_done_chunk_or_at_the_bound() -> None:
    log = _Log([
        event(1, "a", EventType.STATUS, status="running"),
        event(2, "a", EventType.DELTA, text="x"),
        event(3, "a", EventType.STATUS, status="completed"),
        event(4, "b", EventType.DELTA, text="next"),
    ])  # fmt: skip
    stream = ResponseStream(log, now=lambda: NOW)  # type: ignore[arg-type]
    alice = Principal("alice", Role.USER, "k1")
    cursor = stream.open(alice, "t", 0)
    assert [seq for seq, _ in _collect(stream, cursor, 5)] == [2, 3]
    assert [seq for seq, _ in _collect(stream, stream.open(alice, "t", 3), 0.2)] == [4]  # bound: no done
    assert _collect(stream, stream.open(Principal("bob", Role.USER, "k2"), "t", 0, "alice"), 0.1) == []
    assert stream.open(alice, "t", None) == Cursor("alice#t", 3)


def test_the_catalog_serves_text_to_text() -> None:
    assert Catalog.load().prompt_types() == ["Text-to-Text"]
