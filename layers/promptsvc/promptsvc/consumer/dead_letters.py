"""Prompts whose messages reached the dead-letter queue are abandoned, with an error saying so.

SQS moves a message there after `maxReceiveCount` deliveries without it being deleted: consumers
kept dying on it, or kept failing before they could even claim it. The prompt must not be left
`scheduled` or `running` forever. The messages stay on the DLQ for operators (its depth alarms);
reading them again is harmless, as a terminal prompt is left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from aws_lambda_powertools import Logger

from promptsvc.adapters.clients import client
from promptsvc.adapters.prompt_queue import parse_body
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.status import Status, is_terminal
from promptsvc.domain.thread_events import status_event

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptStore, ThreadEventLog

logger = Logger(child=True)


class SweepReport(msgspec.Struct):
    read: int = 0
    abandoned: int = 0
    unreadable: int = 0


def abandon(
    repository: PromptStore,
    user_id: str,
    prompt_id: str,
    deliveries: int,
    events: ThreadEventLog | None = None,
) -> bool:
    prompt = repository.get(user_id, prompt_id)
    if prompt is None or is_terminal(prompt.status):
        return False
    error = (
        f"abandoned: its queue message was delivered {deliveries} times without an answer and moved "
        "to the dead-letter queue (consumers kept failing on it)"
    )
    moved = repository.transition(
        prompt, Status.ABANDONED, run_count=prompt.runCount, error=error, updatedAt=now_rfc3339()
    )
    if moved is not None and events is not None:
        events.append(status_event(moved, str(Status.ABANDONED), moved.updatedAt, error))
    if moved is not None:
        logger.error(
            "prompt abandoned from the dead-letter queue", prompt_id=prompt_id, deliveries=deliveries
        )
    return moved is not None


def sweep(
    repository: PromptStore,
    dead_letter_url: str,
    *,
    events: ThreadEventLog | None = None,
    batches: int = 10,
    hide_seconds: int = 300,
) -> SweepReport:
    """Read (without deleting) up to `batches` x 10 messages and abandon their prompts. Each read
    hides the message for `hide_seconds`, so one sweep does not see it twice."""
    report = SweepReport()
    sqs = client("sqs")
    for _ in range(batches):
        messages = sqs.receive_message(
            QueueUrl=dead_letter_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=hide_seconds,
            WaitTimeSeconds=0,
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            report.read += 1
            try:
                work = parse_body(message["Body"])
            except ValueError:
                report.unreadable += 1
                continue
            deliveries = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)) - 1
            if work.removal is not None:
                continue  # a removed prompt's check: nothing is left to abandon
            if abandon(repository, work.user_id, work.prompt_id, max(deliveries, 1), events):
                report.abandoned += 1
    return report
