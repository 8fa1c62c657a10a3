"""The check a removal leaves when it deletes a prompt a consumer is running (RemovalCheck).

That consumer notices the removal within its cancel poll, stops the engine and ends the thread's
events with `removed`. If it dies first, nobody else knows the thread; so the removal also queues
this check, delivered once the run's lease is over. By then the run can write nothing more (its
writes are fenced by the lease), so the events after the removal either hold its closing event or
never will: then the check writes `removed`, and a subscriber's stream ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from promptsvc.domain.thread_events import RemovalCheck, closes

if TYPE_CHECKING:
    from promptsvc.domain.ports import ThreadEventLog

logger = Logger(child=True)

PAGE = 100
MAX_PAGES = 50  # events after the removal read at most (5,000): past that, leave the thread alone


def closing_event_needed(events: ThreadEventLog, check: RemovalCheck) -> bool | None:
    """True when no event after `check.after_seq` closes the prompt; False when one does (or the
    thread is too busy to tell: a second closing event is worse than none); None while a write
    is still in flight past the gapless run (look again once it lands or is filled)."""
    key = check.thread_key
    cursor = check.after_seq
    for _ in range(MAX_PAGES):
        page = events.after(key, cursor, PAGE)
        if any(closes(event, check.prompt_id) for event in page):
            return False
        if page:
            cursor = page[-1].seq
        if len(page) < PAGE:
            return True if events.last_seq(key) <= cursor else None
    logger.error("too many events after a removal to look for its closing event", prompt_id=check.prompt_id)
    return False
