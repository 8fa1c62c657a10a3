"""Run the prompt a queue message names and settle the message; shared by both consumer hosts.

A message is either *done* (the host deletes it: Lambda by reporting success, the ECS worker by
DeleteMessage) or *kept* (its visibility is set to when it should come back: a retry's backoff, a
live lease's end). Nothing is lost: any fault that escapes the runner keeps the message too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

import msgspec
from aws_lambda_powertools import Logger

from promptsvc.adapters.prompt_queue import parse_body
from promptsvc.consumer.lease import KeepAlive
from promptsvc.consumer.outcome import Outcome
from promptsvc.consumer.runner import PromptRunner, Slot
from promptsvc.domain.retry import backoff_seconds

if TYPE_CHECKING:
    from promptsvc.domain.ports import QueueMessages

logger = Logger(child=True)


class ReceivedMessage(msgspec.Struct, frozen=True):
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1


class Settlement(StrEnum):
    DONE = "done"
    KEPT = "kept"


async def settle(
    runner: PromptRunner,
    messages: QueueMessages,
    message: ReceivedMessage,
    *,
    lease_seconds: float | None = None,
    keep_alive: KeepAlive | None = None,
    on_generated: Callable[[], None] | None = None,
    slot: Slot | None = None,
) -> Settlement:

    try:
        work = parse_body(message.body)
    except ValueError as error:
        reason = f"not a prompt message ({error}): moved to the dead-letter queue"
        logger.error(reason, message_id=message.message_id)
        await asyncio.to_thread(messages.dead_letter, message.body, reason)
        return Settlement.DONE
    prompt_id = work.prompt_id
    try:
        if work.removal is not None:
            result = await runner.close_removed(work.removal)
        else:
            result = await runner.run(
                prompt_id,
                user_id=work.user_id,
                keep_alive=keep_alive,
                lease_seconds=lease_seconds,
                on_generated=on_generated,
                slot=slot,
            )
    except Exception:
        # A fault outside the engine (a throttled table, a network blip): try again later.
        delay = backoff_seconds(message.receive_count)
        logger.exception(
            "could not process the message; it comes back later", prompt_id=prompt_id, delay=delay
        )
        await _keep(messages, message, delay)
        return Settlement.KEPT
    if result.keep_message:
        await _keep(messages, message, result.retry_after)
        return Settlement.KEPT
    if result.outcome is Outcome.DEAD_LETTER:
        await asyncio.to_thread(messages.dead_letter, message.body, result.error)
    return Settlement.DONE


async def _keep(messages: QueueMessages, message: ReceivedMessage, seconds: int) -> None:
    try:
        await asyncio.to_thread(messages.change_visibility, message.receipt_handle, seconds)
    except Exception:
        # The message still comes back, after the queue's own visibility timeout.
        logger.exception("could not change the message's visibility", message_id=message.message_id)
