"""How a claimed run ends: each ending is one conditional write on the prompt (the run's own
status and run count), then the thread's closing event and the outcome's metric.

- completed: the answer stored (in the item when it fits; else its body in the answers bucket and
  only its key in the item, `domain.answers`) with the run's usage (`domain.usage`), in the same
  write, which also adds it to the usage counters (the store's transaction: exactly once);
- failed: the failure policy (domain/failure_policy.py) says retry after a backoff, fall back to
  the next model of the routing plan, or abandon; the counters count a failed attempt;
- stopped: canceled (the partial answer is kept), removed (the events end with `removed`), or
  claimed again after our lease ran out (nothing is written);
- lease lost: past the lease another consumer may run it, so nothing more is written;
- released: the host is stopping, the run is given back uncounted.

A failed attempt is added to the counters once the ending's own write has succeeded (a duplicate
delivery or a cancel meanwhile never counts it twice); that add is best effort (logged, never
fails the prompt), so a consumer that dies between the two writes leaves one attempt uncounted.

The run's deltas are flushed before its status changes, so a reader who sees it finished finds
every delta stored; a run whose deltas were fenced off (past its lease) does not finish it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from promptsvc.consumer import telemetry
from promptsvc.consumer.attempt import Attempt
from promptsvc.consumer.outcome import Outcome, RunResult
from promptsvc.consumer.progress import FinalError, Progress
from promptsvc.consumer.run_events import NoEvents, RunEvents
from promptsvc.consumer.telemetry import log_keys
from promptsvc.domain.answers import answer_key, answer_size
from promptsvc.domain.clock import epoch_seconds, now_rfc3339
from promptsvc.domain.errors import ItemTooLarge
from promptsvc.domain.failure_policy import Failure, FailurePolicy
from promptsvc.domain.prompt import Prompt, PromptChanges, RunState
from promptsvc.domain.status import Status
from promptsvc.domain.thread_events import CLOSING_WRITE_SECONDS, REMOVED, reset_event
from promptsvc.domain.usage import (
    FAILED_ATTEMPT,
    PromptUsage,
    day_of,
    prompt_usage,
)
from promptsvc.engines.base import EngineError, EngineRequest

if TYPE_CHECKING:
    from promptsvc.domain.ports import AnswerBodies, PromptStore, ThreadEventLog, UsageCounter

logger = Logger(child=True)


class Endings:
    def __init__(
        self,
        repository: PromptStore,
        events: ThreadEventLog | None,
        policy: FailurePolicy,
        answers: AnswerBodies | None,
        clock: Callable[[], float],
        usage: UsageCounter | None = None,
    ) -> None:
        self._repo = repository
        self._events = events
        self._policy = policy
        self._answers = answers
        self._clock = clock
        self._usage = usage

    async def completed(self, claimed: Prompt, attempt: Attempt, progress: Progress) -> RunResult:
        self._record_generation(claimed, progress)
        events = progress.events
        await events.flush()  # every delta stored before the prompt reads as completed
        if events.fenced:
            return self.lease_lost(claimed, events)
        usage = _usage(attempt.request, progress)
        complete = partial(
            self._repo.transition,
            claimed,
            Status.COMPLETED,
            run_count=claimed.runCount,
            answeredBy=attempt.model.id,
            error="",
            updatedAt=now_rfc3339(),
            promptTokens=usage.prompt_tokens,
            completionTokens=usage.completion_tokens,
            finishReason=usage.finish_reason,
            usageEstimated=usage.estimated,
        )
        try:
            done = await self._write_answer(claimed, progress.text, complete)
        except ItemTooLarge:
            unstorable = (
                f"the answer ({progress.size} bytes) is too large for the prompt's item "
                "and no answers bucket is configured"
            )
            return await self.failed(claimed, progress, FinalError(unstorable), attempt)
        except EngineError as error:  # the bucket could not be written: the next run answers again
            return await self.failed(claimed, progress, error, attempt)
        if done is None:
            return await self.stopped(claimed, await self._state(claimed), progress)
        events.fence(_closing_fence(done.updatedAt))  # finished by our own write: nobody else runs it
        events.status(str(Status.COMPLETED))
        telemetry.outcome("completed", claimed.modelId)
        return RunResult(Outcome.COMPLETED)

    async def failed(
        self, prompt: Prompt, progress: Progress, error: EngineError, attempt: Attempt | None
    ) -> RunResult:
        """`attempt` is None when the run failed before it had one (an unknown model, say)."""
        failure = Failure(str(error), error.retryable, error.status_code, final=isinstance(error, FinalError))
        model_id = attempt.model.id if attempt is not None else prompt.modelId
        step = self._policy.next_step(prompt, failure, model_id, attempt.plan if attempt else None)
        await progress.events.flush()  # the run's deltas land before its status changes
        if progress.events.fenced:
            return self.lease_lost(prompt, progress.events)
        changes = PromptChanges(error=step.error, updatedAt=now_rfc3339(), **step.changes)
        moved = await asyncio.to_thread(
            self._repo.transition, prompt, step.status, run_count=prompt.runCount, **changes
        )
        if moved is None:  # canceled or removed meanwhile: a cancel still keeps what was generated
            return await self.stopped(prompt, await self._state(prompt), progress)
        progress.events.fence(_closing_fence(moved.updatedAt))  # the run ended by our own write
        progress.events.status(str(step.status), step.error)
        telemetry.outcome(str(step.status), prompt.modelId)
        progress.counted = (moved, model_id, FAILED_ATTEMPT)
        if attempt is not None and attempt.plan is not None and "routeIndex" in step.changes:
            nxt = attempt.plan.models[step.changes["routeIndex"]]
            logger.info("falling back to the next model", failed=model_id, next=nxt, **log_keys(prompt))
        logger.warning("prompt run failed", status=str(step.status), error=step.error, **log_keys(prompt))
        if step.status is Status.ERRORED:
            return RunResult(Outcome.RETRY, retry_after=step.delay, error=step.error)
        return RunResult(Outcome.ABANDONED, error=step.error)

    async def stopped(self, claimed: Prompt, current: RunState | None, progress: Progress) -> RunResult:
        """The prompt changed under the run. A cancel keeps the partial answer (what the thread's
        deltas showed up to the cancel); a removal ends the thread's events with `removed`;
        anything else (claimed again after our lease ran out) discards what we have."""
        if current is None:
            progress.events.status(REMOVED)
            logger.info("prompt removed while running; generation stopped", **log_keys(claimed))
            return RunResult(Outcome.DISCARDED)
        if current.status is Status.CANCELED and current.runCount == claimed.runCount:
            keep = partial(self._repo.update_if, claimed, Status.CANCELED)
            kept = None
            try:
                kept = await self._write_answer(claimed, progress.text, keep)
            except Exception:
                logger.exception(
                    "could not keep the partial answer of a canceled prompt", **log_keys(claimed)
                )
            progress.events.fence(_closing_fence(kept.updatedAt if kept else None))  # canceled is final
            progress.events.status(str(Status.CANCELED))
            telemetry.outcome("canceled", claimed.modelId)
            logger.info("prompt canceled while running; partial answer kept", **log_keys(claimed))
            return RunResult(Outcome.CANCELED)
        return RunResult(Outcome.DISCARDED)

    def lease_lost(self, claimed: Prompt, events: RunEvents | NoEvents) -> RunResult:
        """Past our lease another consumer may already run it: write nothing more (its reset must
        not be followed by our deltas). The message comes back soon, and a consumer reclaims the
        prompt (counting the lost run like a crash) unless one already has."""
        events.drop()
        logger.warning("lease ran out before it could be renewed; run stopped", **log_keys(claimed))
        return RunResult(Outcome.BUSY, retry_after=1)

    async def released(self, claimed: Prompt, events: RunEvents | NoEvents) -> None:
        """The host is shutting down (an ECS worker past its drain time): give the run back,
        uncounted, so another consumer starts it at once instead of waiting out the lease. The
        next run starts over as a first run (scheduled, running, ... and no `reset` of its own),
        so this run's `reset` is stored now, before the release, and nothing after it."""
        events.drop()
        await asyncio.shield(events.close())  # lets a write already under way land first
        if self._events is not None:
            reset = reset_event(claimed, now_rfc3339())
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.to_thread(self._events.append, reset))
        await asyncio.shield(asyncio.to_thread(self._repo.release, claimed, now_rfc3339()))
        logger.info("prompt released by a stopping consumer", **log_keys(claimed))

    async def _write_answer(
        self, claimed: Prompt, text: str, write: Callable[..., Prompt | None]
    ) -> Prompt | None:
        """Store the run's answer with `write(answer=..., answerRef=...)`: in the item when it fits;
        else the body in the answers bucket and only its key in the item (the claim check).
        ItemTooLarge when it does not fit and there is no bucket; a retryable EngineError when the
        bucket cannot be written."""
        try:
            return await asyncio.to_thread(write, answer=text, answerRef="")
        except ItemTooLarge:
            if self._answers is None:
                raise
        key = answer_key(claimed.userId, claimed.id, claimed.runCount)
        try:
            await asyncio.to_thread(self._answers.put, key, text)
        except Exception as error:
            logger.exception("could not store the answer's body in the answers bucket", **log_keys(claimed))
            raise EngineError(
                f"could not store the answer: {type(error).__name__}", retryable=True
            ) from error
        logger.info(
            "answer stored in the answers bucket", answer_bytes=answer_size(text), **log_keys(claimed)
        )
        return await asyncio.to_thread(write, answer="", answerRef=key)

    async def count(self, progress: Progress) -> None:
        """Add a failed attempt to the counters of the prompt's user, the day of its ending (UTC)
        and the model (a completion counts in its own write: the store's transaction). Called once
        the run's events are closed: their last write then brings the thread's counter along,
        which it does only as the run's final write."""
        if self._usage is None or progress.counted is None:
            return
        prompt, model_id, count = progress.counted
        try:
            await asyncio.to_thread(self._usage.add, prompt.userId, day_of(prompt.updatedAt), model_id, count)
        except Exception:
            logger.exception("could not add to the usage counters", **log_keys(prompt))

    async def _state(self, prompt: Prompt) -> RunState | None:
        return await asyncio.to_thread(self._repo.run_state, prompt.userId, prompt.id)

    def _record_generation(self, prompt: Prompt, progress: Progress) -> None:
        telemetry.generation(
            prompt.modelId,
            first_token_seconds=None
            if progress.first_token is None
            else progress.first_token - progress.started,
            seconds=self._clock() - progress.started,
            completion_tokens=(progress.finish.completion_tokens or 0) if progress.finish else 0,
        )


def _usage(request: EngineRequest, progress: Progress) -> PromptUsage:
    """The run's usage: what the engine reported; a count it did not report is estimated from the
    text sent (the chat messages, or the rendered prompt) or from the answer."""
    finish = progress.finish
    if request.model.api == "chat":
        sent = "".join(str(message.get("content") or "") for message in request.messages)
    else:
        sent = request.prompt
    if finish is None:
        return prompt_usage("stop", None, None, sent, progress.text)
    return prompt_usage(finish.reason, finish.prompt_tokens, finish.completion_tokens, sent, progress.text)


def _closing_fence(finished_at: str | None) -> float:
    """Where a finished run's writes stop: its closing event takes a seq within
    `CLOSING_WRITE_SECONDS` of the finish or is left to the repair after `CLOSE_GRACE_SECONDS`
    (consumer/closing_events.py), so the two never both store one."""
    base = epoch_seconds(finished_at) if finished_at else time.time()
    return base + CLOSING_WRITE_SECONDS
