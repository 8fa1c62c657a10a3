"""Reading a thread's stored events (`GET /prompt-svc/thread/{threadId}/events`)."""

from dataclasses import dataclass
from typing import Any

from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.keys import Principal
from promptsvc.domain.ports import ThreadEventLog

MAX_LIMIT = 1000


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    after: int  # pass back as `after` for the next page


class ThreadService:
    def __init__(self, log: ThreadEventLog | None) -> None:
        self._log = log

    def events(self, caller: Principal, thread_id: str, after: int, limit: int) -> EventPage:
        """The events after `after` that the caller may see: their own (an admin: all)."""
        if after < 0:
            raise InvalidRequest("after must be a seq, 0 or more")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be from 1 to {MAX_LIMIT}")
        if self._log is None:
            return EventPage([], after)
        stored = self._log.after(thread_id, after, limit)
        visible = [e.wire() for e in stored if caller.is_admin or e.userId == caller.user_id]
        return EventPage(visible, stored[-1].seq if stored else after)
