"""Closing events a stopped consumer never wrote: every prompt's thread events end with its final
status (`completed`, `abandoned`, `canceled`, `removed`), and a consumer that dies between
finishing a prompt and storing that event, or before it notices a removal, leaves the thread
without one. Both repairs come with a queue message: the finished prompt's own message coming back,
or the check a removal queued for the end of the run's lease (consumer/removal_check.py)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from promptsvc.consumer.outcome import Outcome, RunResult
from promptsvc.consumer.removal_check import closing_event_needed
from promptsvc.consumer.telemetry import log_keys
from promptsvc.domain.clock import epoch_seconds, now_rfc3339, seconds_until
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.thread_events import (
    CLOSE_GRACE_SECONDS,
    HOLE_SECONDS,
    RemovalCheck,
    closing_event_search,
    status_event,
    thread_key_of,
    writes_in_flight,
)

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptStore, ThreadEventLog
    from promptsvc.domain.thread_events import ThreadEvent

logger = Logger(child=True)

# A finished prompt's closing event is searched for among its thread's events, newest first, a page
# at a time, back to the prompt's finish: on a busy thread (a hundred prompts finishing at once)
# that is hundreds of events. Past REPAIR_PAGES pages it is not stored (a second closing event is
# worse than none; docs/guarantees.md).
REPAIR_PAGE = 100
REPAIR_PAGES = 20


class ClosingEvents:
    def __init__(self, store: PromptStore, events: ThreadEventLog | None, clock: Callable[[], float]) -> None:
        self._store = store
        self._events = events
        self._clock = clock

    async def close_removed(self, check: RemovalCheck) -> RunResult:
        """A removal's check: once the removed run's lease is over, end the thread's events with
        `removed` unless its consumer did."""
        if self._events is None:
            return RunResult(Outcome.SKIPPED)
        now_ms = int(self._clock() * 1000)
        if now_ms < check.lease_until_ms:  # early (SQS delays 15 minutes at most): the run may still write
            return RunResult(Outcome.BUSY, retry_after=seconds_until(check.lease_until_ms, now_ms))
        needed = await asyncio.to_thread(closing_event_needed, self._events, check)
        if needed is None:
            return RunResult(Outcome.BUSY, retry_after=math.ceil(HOLE_SECONDS))
        if needed:
            await asyncio.to_thread(self._events.append, check.removed_event(now_rfc3339()))
            logger.warning(
                "ended a removed prompt's thread events: its consumer stopped before it could",
                prompt_id=check.prompt_id,
                thread_id=check.thread_id,
            )
        return RunResult(Outcome.SKIPPED)

    async def close_if_missing(self, prompt: Prompt) -> RunResult:
        """A finished prompt's message came back: maybe its consumer died after finishing it but
        before storing the thread's closing status event (the events follow the status change).
        If the thread's recent events hold no closing event of this prompt, store it now. Within
        `CLOSE_GRACE_SECONDS` of the finish the consumer that finished it may still be writing it
        (this is a duplicate delivery racing it): then the message is kept, to look again once
        that time has passed; past it, that consumer can take no seq for it any more
        (`CLOSING_WRITE_SECONDS`), so only a write already in flight can still land."""
        if self._events is None:
            return RunResult(Outcome.SKIPPED)
        try:
            missing, recent = await asyncio.to_thread(_search, self._events, prompt)
            if not missing:
                return RunResult(Outcome.SKIPPED)
            waited = self._clock() - epoch_seconds(prompt.updatedAt)
            if waited < CLOSE_GRACE_SECONDS:
                return RunResult(Outcome.BUSY, retry_after=max(1, math.ceil(CLOSE_GRACE_SECONDS - waited)))
            # Past the grace the finishing run takes no seq (its closing write is fenced), but one
            # it took in time may still be landing: look again once it has (or was filled).
            if writes_in_flight(recent, datetime.fromtimestamp(self._clock(), UTC)):
                return RunResult(Outcome.BUSY, retry_after=math.ceil(HOLE_SECONDS))
            # Copies of the message repair at once: one claims it; the others look again later.
            now_ms = int(self._clock() * 1000)
            stale = now_ms - int(CLOSE_GRACE_SECONDS * 1000)
            if not await asyncio.to_thread(self._store.claim_repair, prompt, now_ms, stale):
                return RunResult(Outcome.BUSY, retry_after=math.ceil(CLOSE_GRACE_SECONDS))
            event = status_event(prompt, str(prompt.status), now_rfc3339(), prompt.error)
            await asyncio.to_thread(self._events.append, event)
            logger.warning("stored a finished prompt's missing closing event", **log_keys(prompt))
        except Exception:
            logger.exception("could not check the thread's closing event", **log_keys(prompt))
        return RunResult(Outcome.SKIPPED)


def _search(events: ThreadEventLog, prompt: Prompt) -> tuple[bool, list[ThreadEvent]]:
    """Whether the finished prompt's closing event is missing, and the thread's latest events."""
    key, before = thread_key_of(prompt), None
    latest: list[ThreadEvent] = []
    for _ in range(REPAIR_PAGES):
        page = events.recent(key, REPAIR_PAGE, before_seq=before)
        latest = latest or page
        found = closing_event_search(prompt, page)
        if found is not None:
            return found, latest
        if len(page) < REPAIR_PAGE:  # the whole thread read: none closes it
            return True, latest
        before = page[-1].seq
    logger.warning(
        "a finished prompt's closing event is too deep in its thread to look for", **log_keys(prompt)
    )
    return False, latest
