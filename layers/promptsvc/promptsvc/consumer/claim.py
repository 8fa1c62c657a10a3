"""Claiming the prompt a message names, or deciding what becomes of the message instead.

A claim is a conditional write on the prompt exactly as read, and takes a *lease*: a consumer
that dies leaves a `running` prompt whose lease runs out; the message comes back after its
visibility timeout, the prompt is claimed again and the run counts, as does the crash; after
`crash_limit` crashes (or once the run that died was its last allowed one) the prompt is
abandoned and the message dead-lettered. A duplicate delivery of a prompt running under a live
lease is kept until the lease ends; one of a finished prompt is deleted, once its thread's closing
event is known to be stored (consumer/closing_events.py).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from promptsvc.consumer import telemetry
from promptsvc.consumer.closing_events import ClosingEvents
from promptsvc.consumer.outcome import Outcome, RunResult
from promptsvc.consumer.telemetry import log_keys
from promptsvc.domain.clock import now_rfc3339, seconds_until
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.status import Status, is_terminal
from promptsvc.domain.thread_events import status_event

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptStore, ThreadEventLog

logger = Logger(child=True)

CLAIM_ROUNDS = 3  # reads of a prompt whose claim keeps losing races, before the message is kept
# Claims get threads of their own: an engine slot may be waiting for one (the ECS worker's runs
# claimed ahead of a slot), so they must not queue behind the answers and reads of finished runs
# on the default pool, which come in bursts when answers of one length end together.
_CLAIMS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="claims")


class Claims:
    def __init__(
        self,
        repository: PromptStore,
        events: ThreadEventLog | None,
        closing: ClosingEvents,
        *,
        crash_limit: int,
        clock: Callable[[], float],
    ) -> None:
        self._repo = repository
        self._events = events
        self._closing = closing
        self._crash_limit = crash_limit
        self._clock = clock

    async def claim(self, prompt_id: str, user_id: str, lease: float) -> Prompt | RunResult:
        """The prompt, claimed under a lease of `lease` seconds; or, when it is not to run here,
        what to do with its message."""
        # The common case, a waiting prompt: one write, no read. A refused write says what it found.
        lease_until = self._now_ms() + int(lease * 1000)
        write = partial(self._repo.claim_waiting, prompt_id, user_id, now_rfc3339(), lease_until)
        context = contextvars.copy_context()  # as asyncio.to_thread does (tracing's segment)
        claim = await asyncio.get_running_loop().run_in_executor(_CLAIMS, context.run, write)
        if claim.claimed is not None:
            return claim.claimed
        # The message of an unfinished prompt is never let go: a claim that loses a race (another
        # delivery of the same prompt changed it between our read and our write) reads it again.
        prompt = claim.found
        for round_ in range(CLAIM_ROUNDS):
            if round_ or prompt is None:
                prompt = await asyncio.to_thread(self._repo.get, user_id, prompt_id)
            if prompt is None:
                return RunResult(Outcome.SKIPPED)
            taken = await self._claim_as_read(prompt, lease)
            if taken is not None:
                return taken
        return RunResult(Outcome.BUSY, retry_after=1)  # still changing: look again in a moment

    async def _claim_as_read(self, prompt: Prompt, lease: float) -> Prompt | RunResult | None:
        """One round on the prompt as read: claimed, what to do with the message, or None when it
        changed meanwhile (read it again)."""
        if is_terminal(prompt.status):
            return await self._closing.close_if_missing(prompt)
        now_ms = self._now_ms()
        if prompt.status is Status.RUNNING:
            if prompt.leaseUntil > now_ms:
                return RunResult(Outcome.BUSY, retry_after=seconds_until(prompt.leaseUntil, now_ms))
            if prompt.crashCount + 1 >= self._crash_limit or prompt.runCount > prompt.maxRetries:
                return await self._give_up_after_crashes(prompt)
            logger.warning("reclaiming a prompt whose consumer stopped", **log_keys(prompt))
        until = now_ms + int(lease * 1000)
        return await asyncio.to_thread(self._repo.claim, prompt, now_rfc3339(), until)

    async def _give_up_after_crashes(self, prompt: Prompt) -> RunResult | None:
        """Abandon a prompt whose last allowed run died; None when it changed meanwhile."""
        crashes = prompt.crashCount + 1
        message = _retries_spent(prompt) if crashes < self._crash_limit else _dead_lettered(crashes)
        moved = await asyncio.to_thread(
            self._repo.transition,
            prompt,
            Status.ABANDONED,
            run_count=prompt.runCount,
            error=message,
            crashCount=crashes,
            updatedAt=now_rfc3339(),
        )
        if moved is None:
            return None
        if self._events is not None:
            event = status_event(prompt, str(Status.ABANDONED), now_rfc3339(), message)
            await asyncio.to_thread(self._events.append, event)
        telemetry.outcome("abandoned", prompt.modelId)
        logger.error("prompt abandoned after repeated consumer crashes", crashes=crashes, **log_keys(prompt))
        return RunResult(Outcome.DEAD_LETTER, error=message)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _dead_lettered(crashes: int) -> str:
    return (
        f"abandoned: the consumer stopped {crashes} times while running this prompt "
        "(crashed, ran out of time or was killed); the message was moved to the dead-letter queue"
    )


def _retries_spent(prompt: Prompt) -> str:
    """The run that died was its last allowed one, before the crash limit."""
    return (
        f"abandoned: retries spent ({prompt.runCount} runs, maxRetries {prompt.maxRetries}); "
        "the consumer stopped during the last one (crashed, ran out of time or was killed)"
    )
