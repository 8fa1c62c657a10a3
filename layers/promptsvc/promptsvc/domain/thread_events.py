"""Thread events: what a thread's subscribers see, in order.

Wire envelope: `{seq, threadId, promptId, type, createdAt, ...}` with `seq` strictly increasing
per thread and `type` one of
- `status`: the prompt's status changed (`status`, and `error` when there is one); `removed` ends
  the events of a prompt removed before it finished;
- `delta`: more answer text (`text`); the concatenation of a run's deltas is its answer;
- `reset`: a retry starts the answer again: drop the text shown so far for this prompt;
- `gap`: a seq whose writer died before storing its event (nothing of a prompt is lost with it:
  that run is redone); it keeps the numbering gapless.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec.structs import replace

from promptsvc.domain.clock import now_rfc3339, parse_rfc3339
from promptsvc.domain.names import scoped

if TYPE_CHECKING:  # only named: the stream and ws functions never load the prompt entity
    from promptsvc.domain.prompt import Prompt

HOLE_SECONDS = 10.0  # a seq allocated this long ago whose event is not stored: its writer is gone
REMOVED = "removed"  # the status event that ends a removed prompt's events (not a prompt status)
MAX_SEQ = 2**63 - 1  # the largest `after` a reader may name (a signed 64-bit integer)


class EventType(StrEnum):
    STATUS = "status"
    DELTA = "delta"
    RESET = "reset"
    GAP = "gap"


class ThreadEvent(msgspec.Struct, frozen=True):
    threadId: str
    userId: str  # the thread's owner: events are only ever shown to them (and admins)
    promptId: str
    type: EventType
    createdAt: str
    seq: int = 0  # assigned when the event is stored
    status: str | None = None
    error: str | None = None
    text: str | None = None

    @property
    def thread_key(self) -> str:
        """The thread's key: threads are per user (domain.names)."""
        return scoped(self.userId, self.threadId)

    def with_seq(self, seq: int) -> ThreadEvent:
        return replace(self, seq=seq)

    def wire(self) -> dict[str, Any]:
        """The event as clients receive it (no owner id: the subscriber is the owner or an admin)."""
        body: dict[str, Any] = {
            "seq": self.seq,
            "threadId": self.threadId,
            "promptId": self.promptId,
            "type": str(self.type),
            "createdAt": self.createdAt,
        }
        for name in ("status", "error", "text"):
            value = getattr(self, name)
            if value:
                body[name] = value
        return body


def status_event(prompt: Prompt, status: str, now: str, error: str = "") -> ThreadEvent:
    return _of(prompt, EventType.STATUS, now, status=status, error=error or None)


def delta_event(prompt: Prompt, text: str, now: str) -> ThreadEvent:
    return _of(prompt, EventType.DELTA, now, text=text)


def reset_event(prompt: Prompt, now: str) -> ThreadEvent:
    return _of(prompt, EventType.RESET, now)


def _of(prompt: Prompt, kind: EventType, now: str, **fields: Any) -> ThreadEvent:
    return ThreadEvent(prompt.threadId, prompt.userId, prompt.id, kind, now, **fields)


class PartlyStored(Exception):
    """Of events written together (ThreadEventLog.append_many), those in `stored` (with their
    seqs) were stored before the write failed (the failure is the `__cause__`); the rest were not."""

    def __init__(self, stored: list[ThreadEvent]) -> None:
        super().__init__(f"{len(stored)} of the events were stored before the write failed")
        self.stored = stored


TERMINAL_STATUSES = frozenset({"completed", "abandoned", "canceled", REMOVED})
CLOCK_SLACK_SECONDS = 60.0  # how far out of seq order events' createdAt may be


class RemovalCheck(msgspec.Struct, frozen=True):
    """A prompt removed while a consumer held its lease. That consumer ends the thread's events
    with `removed` when it notices; if it died first, nobody would. So the removal also leaves
    this check, looked at once the lease is over (the consumer can write nothing after it): if no
    closing event of the prompt follows `after_seq` (the thread's last seq before the removal),
    the check writes `removed`."""

    user_id: str
    prompt_id: str
    thread_id: str
    after_seq: int
    lease_until_ms: int

    @property
    def thread_key(self) -> str:
        return scoped(self.user_id, self.thread_id)

    def removed_event(self, now: str) -> ThreadEvent:
        return ThreadEvent(
            self.thread_id, self.user_id, self.prompt_id, EventType.STATUS, now, status=REMOVED
        )


def closes(event: ThreadEvent, prompt_id: str) -> bool:
    """Whether the event ends the events of that prompt (a terminal status, `removed` included)."""
    closing = event.type is EventType.STATUS and event.status in TERMINAL_STATUSES
    return closing and event.promptId == prompt_id


def thread_key_of(prompt: Prompt) -> str:
    return scoped(prompt.userId, prompt.threadId)


def closing_event_search(prompt: Prompt, newest_first: list[ThreadEvent]) -> bool | None:
    """Searching a thread's events from its newest back, one page after another: True if the
    finished prompt's closing event is missing, False if found, None if these events do not tell
    (search the next page). Writers stamp and number events concurrently, so `createdAt` is only
    roughly in seq order: the search stops at events older than the prompt's last change by
    `CLOCK_SLACK_SECONDS`, which cannot be its closing event."""
    horizon = _shifted(prompt.updatedAt, -CLOCK_SLACK_SECONDS)
    for event in newest_first:
        if closes(event, prompt.id):
            return False
        if event.createdAt < horizon:
            return True
    return None


def _shifted(rfc3339: str, seconds: float) -> str:
    return now_rfc3339(parse_rfc3339(rfc3339) + timedelta(seconds=seconds))


# A finished prompt's closing event: the run that finished it starts the event's write within
# CLOSING_WRITE_SECONDS of its final write, or never (its writes are fenced then); a returning
# message repairs a missing one only after CLOSE_GRACE_SECONDS, and only the repairer that claims
# the repair on the prompt (consumer/closing_events.py; the claim is taken over once it is that old).
# The fence is the writer's own check before it takes a seq, so a write started in time that then
# stalls (throttled, retried) past the grace can still land after a repair (docs/guarantees.md).
CLOSING_WRITE_SECONDS = 8.0
CLOSE_GRACE_SECONDS = 10.0


def age_seconds(created_at: str, now: datetime) -> float:
    """How old an event's stamp is; one that does not parse is not ours to date: infinitely old,
    so it never holds a hole open for good."""
    try:
        return (now - parse_rfc3339(created_at)).total_seconds()
    except ValueError:
        return float("inf")


def young_holes(
    stamped: Sequence[tuple[int, str]], now: datetime, hole_seconds: float = HOLE_SECONDS
) -> list[int]:
    """For stored events' (seq, createdAt), newest first: the seq just below each missing seq
    whose event above is younger than `hole_seconds`, newest first. Such a hole is a write still
    in flight; an older one is a writer that is gone (a reader fills it with a gap)."""
    return [
        below
        for (above, stamp), (below, _) in itertools.pairwise(stamped)
        if above > below + 1 and age_seconds(stamp, now) < hole_seconds
    ]


def writes_in_flight(recent: list[ThreadEvent], now: datetime) -> bool:
    """Whether a seq among `recent` (the thread's latest stored events, newest first) is a young
    hole: a write still in flight, which may be the event looked for."""
    return bool(young_holes([(event.seq, event.createdAt) for event in recent], now))
