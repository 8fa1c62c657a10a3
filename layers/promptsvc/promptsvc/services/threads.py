"""Reading a thread's stored events (`GET /prompt-svc/thread/{threadId}/events`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.keys import Principal
from promptsvc.domain.names import scoped

if TYPE_CHECKING:
    from promptsvc.domain.ports import ThreadEventLog

MAX_LIMIT = 1000


class EventPage(msgspec.Struct, frozen=True):
    events: list[dict[str, Any]]
    after: int  # pass back as `after` for the next page


class ThreadService:
    def __init__(self, log: ThreadEventLog | None) -> None:
        self._log = log

    def events(
        self, caller: Principal, thread_id: str, after: int, limit: int, owner: str | None = None
    ) -> EventPage:
        """The events after `after` of the caller's thread (an admin may name another `owner`).
        Threads are per user: another user's thread of the same name is a different thread."""
        if after < 0:
            raise InvalidRequest("after must be a seq, 0 or more")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be from 1 to {MAX_LIMIT}")
        namespace = caller.namespace(owner)
        if self._log is None or namespace is None:
            return EventPage([], after)
        stored = self._log.after(scoped(namespace, thread_id), after, limit)
        return EventPage([e.wire() for e in stored], stored[-1].seq if stored else after)
