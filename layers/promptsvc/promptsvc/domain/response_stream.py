"""A thread's events as the seed client's stream chunks (`GET /prompt-svc/prompts/{threadId}/
responses/subscribe`, `PromptSvcStreamChunk` of `@1backend/client`): `{messageId, text, type}` with
`type` `progress` (more answer text) or `done` (the prompt ended).

- a `delta` event is a `progress` chunk with its text; the prompt's id is the `messageId` (its
  answer's message id, as `responseMessage.id` shows it);
- a `reset` event (a retry starts the answer again) is a `progress` chunk with no text and
  `"reset": true`: drop the text shown so far for that `messageId`;
- the prompt's closing status event (`completed`, `abandoned`, `canceled`, `removed`) is the `done`
  chunk, with `status` and, when there is one, `error` (fields the client's model does not name:
  a JSON reader sees them, the generated model drops them);
- the other events (`scheduled`, `running`, `errored`, `gap`) are not chunks.

A response ends with its first `done` chunk (or at its time bound); each chunk carries its event's
`seq` as its SSE id, so the next subscription goes on after it (`Last-Event-ID`, `after`).
"""

from datetime import datetime
from typing import Any

from promptsvc.domain.thread_events import (
    HOLE_SECONDS,
    TERMINAL_STATUSES,
    EventType,
    ThreadEvent,
    age_seconds,
    young_holes,
)

PROGRESS = "progress"
DONE = "done"
CHUNK_TYPES = (PROGRESS, DONE)
# An unfinished prompt whose last event is older than this is not followed from its start: it is
# not being answered now (a run writes at least every few seconds; the sweeper re-queues a prompt
# untouched for STRANDED_AFTER_SECONDS, 300).
FOLLOW_SECONDS = 300.0


def chunk_of(event: ThreadEvent) -> dict[str, Any] | None:
    """The stream chunk an event shows as; None for an event that is none."""
    if event.type is EventType.DELTA:
        return {"messageId": event.promptId, "text": event.text or "", "type": PROGRESS}
    if event.type is EventType.RESET:
        return {"messageId": event.promptId, "text": "", "type": PROGRESS, "reset": True}
    if event.type is EventType.STATUS and event.status in TERMINAL_STATUSES:
        chunk: dict[str, Any] = {"messageId": event.promptId, "text": "", "type": DONE}
        chunk["status"] = event.status
        if event.error:
            chunk["error"] = event.error
        return chunk
    return None


def is_done(chunk: dict[str, Any]) -> bool:
    return bool(chunk["type"] == DONE)


def start_after(
    recent: list[ThreadEvent],
    now: datetime,
    *,
    hole_seconds: float = HOLE_SECONDS,
    follow_seconds: float = FOLLOW_SECONDS,
) -> int:
    """Where a subscription that names no cursor starts, from the thread's latest stored events
    (newest first): just before the first event of the oldest prompt among them that is still
    being answered (no closing event yet, a recent last event), so its whole answer is shown;
    without one, at the top (below a write still in flight, as `young_holes` finds), so the next
    prompt is shown. 0 for a thread with no events: it starts with its first."""
    if not recent:
        return 0
    holes = young_holes([(event.seq, event.createdAt) for event in recent], now, hole_seconds)
    start = holes[-1] if holes else recent[0].seq
    closed: set[str] = set()
    followed: set[str] = set()
    for event in recent:  # newest first: a prompt's closing event comes before its other events
        prompt_id = event.promptId
        if not prompt_id or prompt_id in closed:
            continue
        if event.type is EventType.STATUS and event.status in TERMINAL_STATUSES:
            closed.add(prompt_id)
            continue
        if prompt_id not in followed:  # the unfinished prompt's newest event: is it recent?
            if age_seconds(event.createdAt, now) >= follow_seconds:
                closed.add(prompt_id)  # not being answered now: not followed
                continue
            followed.add(prompt_id)
        start = min(start, event.seq - 1)
    return start
