"""The rule that decides whether a finished prompt's closing thread event is missing (a consumer
died between finishing the prompt and storing the event): never a second closing event."""

from promptsvc.domain.prompt import Prompt
from promptsvc.domain.status import Status
from promptsvc.domain.thread_events import EventType, ThreadEvent, closing_event_missing

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
    assert closing_event_missing(DONE, recent, complete=False) is False


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
    assert closing_event_missing(DONE, recent, complete=False) is True


def test_when_the_search_runs_out_it_is_missing_only_if_it_saw_the_whole_thread() -> None:
    recent = [event("p1", EventType.DELTA, "00:09.000000")]
    assert closing_event_missing(DONE, recent, complete=True) is True
    assert closing_event_missing(DONE, recent, complete=False) is False
