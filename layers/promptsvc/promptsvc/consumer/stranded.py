"""Re-queue stranded prompts: stored `scheduled` but whose message may never have been sent.

An add writes the prompt, then sends its message (two calls, no transaction across DynamoDB and
SQS). A function that dies between the two (timeout, out of memory, a throttled SendMessage)
leaves a prompt no consumer will ever see. The scheduled sweeper finds `scheduled` prompts
untouched for `grace` seconds and sends their message again, at most once per `grace` per prompt:
a conditional write (`requeuedAt`) picks one sweeper per prompt and period. A message that was
not lost after all only makes a duplicate delivery, which the consumer's conditional claim turns
into nothing (never a second run).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
from aws_lambda_powertools import Logger

from promptsvc.domain.clock import now_rfc3339

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptQueue, PromptStore

logger = Logger(child=True)

DEFAULT_GRACE_SECONDS = 300
MAX_PER_SWEEP = 100


class RequeueReport(msgspec.Struct):
    found: int = 0
    requeued: int = 0


def requeue_stranded(
    repository: PromptStore,
    queue: PromptQueue,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    limit: int = MAX_PER_SWEEP,
    now: datetime | None = None,
) -> RequeueReport:

    moment = now or datetime.now(UTC)
    cutoff = now_rfc3339(moment - timedelta(seconds=grace_seconds))
    report = RequeueReport()
    for prompt in repository.waiting_since(cutoff, limit):
        report.found += 1
        if not repository.mark_requeued(prompt, now_rfc3339(moment), cutoff):
            continue  # claimed, canceled or re-queued by another sweep meanwhile
        queue.send(prompt.id, prompt.userId, prompt.lane)  # its own lane, as the add sent it
        report.requeued += 1
        logger.warning("re-queued a stranded prompt", prompt_id=prompt.id, created_at=prompt.createdAt)
    return report
