"""Following a thread's prompt responses (`GET /prompt-svc/prompts/{threadId}/responses/subscribe`):
the thread's events after a cursor, as stream chunks (domain/response_stream.py), read until the
first `done` chunk or a time bound, whichever comes first.

`open` and `read` are single reads of the event log (a request's errors, e.g. AWS throttling,
surface from `open`, before any answer is sent); `follow` polls `read` off the event loop, backing
off while nothing comes, so one process serves many waiting subscribers with no thread each.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import msgspec

from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.keys import Principal
from promptsvc.domain.names import scoped
from promptsvc.domain.response_stream import chunk_of, is_done, start_after
from promptsvc.domain.thread_events import MAX_SEQ

if TYPE_CHECKING:
    from promptsvc.domain.ports import ThreadEventLog

RECENT_WINDOW = 100  # the latest events a cursorless subscription looks at to find where to start
PAGE = 100  # events read per poll
FIRST_POLL_SECONDS = 0.05  # the wait after a read that found something new
MAX_POLL_SECONDS = 0.5  # the wait doubles while nothing comes, up to this

Chunk = tuple[int, dict[str, Any]]  # (the event's seq: the SSE id, the chunk)


class Cursor(msgspec.Struct, frozen=True):
    """Where a subscription is: the thread (its scoped key; None: a thread the caller cannot have,
    which stays empty) and the last seq read."""

    thread_key: str | None
    after: int


class Batch(msgspec.Struct, frozen=True):
    chunks: list[Chunk]
    cursor: Cursor  # after the last event read
    done: bool = False  # the last chunk is a `done` one: the response ends with it


class ResponseStream:
    def __init__(
        self,
        log: ThreadEventLog | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._log = log
        self._clock = clock
        self._now = now

    def open(self, caller: Principal, thread_id: str, after: int | None, owner: str | None = None) -> Cursor:
        """The cursor of the caller's thread (an admin may name another `owner`; threads are per
        user, so another user's thread of the same name is not this one). `after`: go on after
        this seq; None: from the prompt being answered, or the next one (`start_after`)."""
        if after is not None and not 0 <= after <= MAX_SEQ:
            raise InvalidRequest(f"after must be a seq from 0 to {MAX_SEQ}")
        namespace = caller.namespace(owner)
        if self._log is None or namespace is None:
            return Cursor(None, after or 0)
        thread_key = scoped(namespace, thread_id)
        if after is None:
            after = start_after(self._log.recent(thread_key, RECENT_WINDOW), self._now())
        return Cursor(thread_key, after)

    def read(self, cursor: Cursor) -> Batch:
        """The chunks of the events stored after the cursor (gapless: `ThreadEventLog.after`), up
        to and with the first `done` one."""
        if self._log is None or cursor.thread_key is None:
            return Batch([], cursor)
        chunks: list[Chunk] = []
        after = cursor.after
        for event in self._log.after(cursor.thread_key, after, PAGE):
            after = event.seq
            chunk = chunk_of(event)
            if chunk is None:
                continue
            chunks.append((event.seq, chunk))
            if is_done(chunk):
                return Batch(chunks, Cursor(cursor.thread_key, after), done=True)
        return Batch(chunks, Cursor(cursor.thread_key, after))

    async def follow(
        self,
        cursor: Cursor,
        wait_seconds: float,
        *,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[Chunk]:
        """The chunks after the cursor as they are stored, until the first `done` one, or until
        `wait_seconds` have passed (a last read at the bound), or `gone()` says the client left."""
        deadline = self._clock() + wait_seconds
        pause = FIRST_POLL_SECONDS
        while True:
            batch = await anyio.to_thread.run_sync(self.read, cursor)
            for chunk in batch.chunks:
                yield chunk
            if batch.done:
                return
            moved = batch.cursor.after != cursor.after
            cursor = batch.cursor
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            pause = FIRST_POLL_SECONDS if moved else min(pause * 2, MAX_POLL_SECONDS)
            await anyio.sleep(min(pause, remaining))
            if gone is not None and await gone():
                return
