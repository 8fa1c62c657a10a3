"""Thread events: what a thread's subscribers see, in order.

Wire envelope: `{seq, threadId, promptId, type, createdAt, ...}` with `seq` strictly increasing
per thread and `type` one of
- `status`: the prompt's status changed (`status`, and `error` when there is one);
- `delta`: more answer text (`text`); the concatenation of a run's deltas is its answer;
- `reset`: a retry starts the answer again: drop the text shown so far for this prompt.
"""

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from promptsvc.domain.prompt import Prompt


class EventType(StrEnum):
    STATUS = "status"
    DELTA = "delta"
    RESET = "reset"


@dataclass(frozen=True)
class ThreadEvent:
    threadId: str
    userId: str  # the thread's owner: events are only ever shown to them (and admins)
    promptId: str
    type: EventType
    createdAt: str
    seq: int = 0  # assigned when the event is stored
    status: str | None = None
    error: str | None = None
    text: str | None = None

    def with_seq(self, seq: int) -> "ThreadEvent":
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
