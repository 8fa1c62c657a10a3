"""The rule that decides whether a finished prompt's closing thread event is missing (a consumer
died between finishing the prompt and storing the event): never a second closing event."""

from datetime import UTC, datetime

from msgspec.structs import replace
from promptsvc.consumer.removal_check import closing_event_needed
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.status import Status
from promptsvc.domain.thread_events import (
    EventType,
    RemovalCheck,
    ThreadEvent,
    closing_event_search,
    writes_in_flight,
)

DONE = Prompt(
    id="p1", prompt="x", modelId="m", template="", threadId="t", userId="alice",
    status=Status.COMPLETED, updatedAt="2026-11-30T10:00:10.000000Z",
)  # fmt: skip


def event(prompt_id: str, kind: EventType, at: str, status: str | None = None) -> ThreadEvent:
    return ThreadEvent("t", "alice", prompt_id, kind, f"2026-11-30T10:{at}Z", status=status)


def test_a_closing_event_stamped_after_a_later_seq_is_still_found() -> None:
    """Writers stamp and number events concurrently: a newer seq may carry an older stamp than the
    prompt's finish, and must not end the search before the closing event is seen."""
    recent = [
        event("p2", EventType.STATUS, "00:09.900000", "completed"),  # newest seq, older stamp
        event("p1", EventType.STATUS, "00:10.100000", "completed"),
    ]
    assert closing_event_search(DONE, recent) is False


def test_missing_once_the_search_passes_the_finish_by_the_clock_slack() -> None:
    two_minutes_before = ThreadEvent(
        "t", "alice", "p0", EventType.STATUS, "2026-11-30T09:58:00.000000Z", status="completed"
    )
    recent = [
        event("p2", EventType.DELTA, "00:20.000000"),
        event("p1", EventType.STATUS, "00:05.000000", "running"),
        event("p1", EventType.STATUS, "00:00.000000", "scheduled"),
        two_minutes_before,
    ]
    assert closing_event_search(DONE, recent) is True


def test_events_that_neither_close_the_prompt_nor_pass_its_finish_do_not_tell() -> None:
    """The repairer then reads the next page back, or, at the thread's start, stores the event."""
    recent = [event("p1", EventType.DELTA, "00:09.000000")]
    assert closing_event_search(DONE, recent) is None


class Log:
    """Stored events by seq, and the thread's last stored seq (a hole: a write in flight)."""

    def __init__(self, stored: dict[int, ThreadEvent]) -> None:
        self.stored = stored

    def after(self, thread_key: str, after_seq: int, limit: int) -> list[ThreadEvent]:
        run, seq = [], after_seq + 1
        while seq in self.stored and len(run) < limit:
            run.append(self.stored[seq].with_seq(seq))
            seq += 1
        return run

    def last_seq(self, thread_key: str) -> int:
        return max(self.stored, default=0)


CHECK = RemovalCheck("alice", "p1", "t", after_seq=2, lease_until_ms=0)


def test_a_removal_check_finds_the_closing_event_after_the_removal() -> None:
    log = Log({
        1: event("p1", EventType.STATUS, "00:00.000000", "running"),
        2: event("p1", EventType.DELTA, "00:01.000000"),
        3: event("p2", EventType.STATUS, "00:02.000000", "running"),
        4: event("p1", EventType.STATUS, "00:03.000000", "removed"),
    })  # fmt: skip
    assert closing_event_needed(log, CHECK) is False  # type: ignore[arg-type]


def test_a_removal_check_writes_when_nothing_after_the_removal_closes_the_prompt() -> None:
    log = Log({
        1: event("p1", EventType.STATUS, "00:00.000000", "removed"),  # an earlier prompt p1's end
        2: event("p1", EventType.STATUS, "00:01.000000", "running"),
        3: event("p2", EventType.STATUS, "00:02.000000", "completed"),  # another prompt's end
    })  # fmt: skip
    assert closing_event_needed(log, CHECK) is True  # type: ignore[arg-type]


def test_a_removal_check_waits_while_a_later_write_is_in_flight() -> None:
    """Seq 4 is taken but not stored yet, and seq 5 is: 4 may be the run's closing event."""
    log = Log({
        1: event("p1", EventType.STATUS, "00:00.000000", "running"),
        2: event("p1", EventType.DELTA, "00:01.000000"),
        3: event("p2", EventType.STATUS, "00:02.000000", "running"),
        5: event("p2", EventType.DELTA, "00:04.000000"),
    })  # fmt: skip
    assert closing_event_needed(log, CHECK) is None  # type: ignore[arg-type]


def numbered(*seqs: int, at: str = "00:09.000000") -> list[ThreadEvent]:
    """Stored events with these seqs, newest first, stamped 2026-11-30T10:`at`."""
    return [replace(event("p2", EventType.DELTA, at), seq=seq) for seq in seqs]


NOW = datetime(2026, 11, 30, 10, 0, 15, tzinfo=UTC)


def test_a_young_hole_among_the_latest_events_is_a_write_in_flight() -> None:
    """The repair of a missing closing event waits while a seq below a young event is missing:
    that write may be the closing event. A hole under an event older than HOLE_SECONDS is a
    writer that is gone (a reader fills it), and is not waited for."""
    assert writes_in_flight(numbered(7, 6, 5), NOW) is False
    assert writes_in_flight(numbered(7, 5, 4), NOW) is True  # 6 taken 6 s ago, not stored yet
    assert writes_in_flight(numbered(7, 5, 4, at="00:01.000000"), NOW) is False  # 14 s: gone
    assert writes_in_flight([], NOW) is False
