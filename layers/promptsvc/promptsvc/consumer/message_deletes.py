"""The ECS worker's deletes of settled messages, ten to a call.

A worker at 32 prompts in flight settles a message every fraction of a second; each deleted on
its own is one DeleteMessage per prompt. Here a delete waits up to `linger` seconds (0.1) for
others to join it, and up to ten go in one DeleteMessageBatch. Meanwhile the message stays hidden
(its visibility is a minute). One whose delete fails comes back after its visibility timeout,
finds its prompt finished and is deleted then: nothing runs twice. A batch is of one queue (SQS's
rule): the worker keeps one of these per lane (domain/lanes.py).
"""

import asyncio
import contextlib

from aws_lambda_powertools import Logger

from promptsvc.adapters.prompt_queue import SqsMessages

logger = Logger(child=True)

BATCH = 10  # SQS's limit per DeleteMessageBatch


class MessageDeletes:
    def __init__(self, messages: SqsMessages, *, linger: float = 0.1) -> None:
        self._messages = messages
        self._linger = linger
        self._pending: list[str] = []
        self._full = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def delete(self, receipt_handle: str) -> None:
        """Delete the message soon (in this event loop)."""
        self._pending.append(receipt_handle)
        if len(self._pending) >= BATCH:
            self._full.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deleting())

    async def close(self) -> None:
        """Delete what is pending now (the worker is stopping)."""
        self._closing = True
        self._full.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _deleting(self) -> None:
        while self._pending:
            if len(self._pending) < BATCH and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._linger)
            self._full.clear()
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                failed = await asyncio.to_thread(self._messages.delete_many, batch)
            except Exception:
                failed = batch
                logger.exception("could not delete settled messages; they come back and are deleted then")
            if failed:
                logger.warning("some settled messages were not deleted", count=len(failed))
