"""Runs on an async endpoint (engines/sagemaker_async.py): submitted by the consumer, settled by
the endpoint's notification (functions/settle), with the endings of any run (endings.py).

- submit: the claimed run's request goes to the endpoint; the run stays `running` without a
  consumer, its lease extended to cover the endpoint's own deadline (the request's TTL in its
  queue plus the invocation timeout). The message is kept hidden as long (`Outcome.SUBMITTED`):
  if no notification ever comes, it comes back once the lease is over and the prompt is claimed
  again, the lost run counted like a consumer crash (claim.py), so `crash_limit` still bounds it.
- settle: a notification settles the run it names (prompt and run count) only while that run is
  still the prompt's: running on the same runCount. A duplicate or late notification, or one for
  a prompt canceled, removed or claimed again meanwhile, does nothing. The run's lease is renewed
  first (the conditional write that makes this the one writer), then the answer goes to the
  thread as deltas and the prompt is completed, or the failure goes through the failure policy
  (retry after a backoff, fall back to the next model, abandon), exactly as a streamed run ends.
  A retry or fallback needs a new message: `settle_notification` sends it, delayed by the
  backoff, on the prompt's lane.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from promptsvc.consumer.attempt import Attempt, attempt_for
from promptsvc.consumer.endings import Endings
from promptsvc.consumer.lease import fence_of
from promptsvc.consumer.outcome import FINISHED, Outcome, RunResult
from promptsvc.consumer.progress import FinalError, Progress
from promptsvc.consumer.run_events import NoEvents, RunEvents
from promptsvc.consumer.telemetry import log_keys
from promptsvc.domain.answers import answer_over_maximum, answer_size
from promptsvc.domain.catalog import Catalog
from promptsvc.domain.clock import epoch_seconds
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.status import Status
from promptsvc.domain.thread_events import CLOSE_GRACE_SECONDS
from promptsvc.engines.base import EngineError, Finish
from promptsvc.engines.submission import AsyncRun, NotificationReader, Submitter

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptStore, ThreadEventLog

Requeue = Callable[[str, str, int, str], None]  # (prompt id, user id, delay seconds, lane)

logger = Logger(child=True)

MAX_HOLD_SECONDS = 43_000  # within SQS's 12 hours of visibility from a receive


class AsyncRuns:
    def __init__(
        self,
        repository: PromptStore,
        catalog: Callable[[], Catalog],
        endings: Endings,
        events: ThreadEventLog | None,
        *,
        lease_seconds: float,
        delta_interval: float,
        max_answer_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self._repo = repository
        self._catalog = catalog
        self._endings = endings
        self._events = events
        self._lease_seconds = lease_seconds
        self._delta_interval = delta_interval
        self._max_answer_bytes = max_answer_bytes
        self._clock = clock

    async def submit(self, claimed: Prompt, attempt: Attempt, engine: Submitter) -> RunResult:
        """Hand the run to the endpoint; an EngineError (the runner's failure path) when it refuses."""
        run = AsyncRun(claimed.userId, claimed.id, claimed.runCount)
        submitted = await engine.submit(attempt.request, run)
        logger.info(
            "prompt submitted to an async endpoint",
            inference_id=submitted.inference_id,
            hold_seconds=submitted.hold_seconds,
            **log_keys(claimed),
        )
        return RunResult(Outcome.SUBMITTED, retry_after=min(MAX_HOLD_SECONDS, submitted.hold_seconds))

    async def hold(self, claimed: Prompt, result: RunResult) -> RunResult:
        """Extend the submitted run's lease over its wait (after the run's lease keeper stopped:
        a renewal of its own would shorten it again)."""
        until = int((self._clock() + result.retry_after) * 1000)
        try:
            await asyncio.to_thread(self._repo.renew_lease, claimed, until)
        except Exception:  # its notification still settles it; a duplicate message may reclaim it early
            logger.exception("could not extend a submitted run's lease", **log_keys(claimed))
        return result

    async def settle(
        self, run: AsyncRun, answer: tuple[str, Finish] | EngineError, requeue: Requeue | None = None
    ) -> RunResult:
        """Settle `run` with its notification's answer or failure (see the module's docstring);
        `requeue` sends a retry's or fallback's message."""
        prompt = await asyncio.to_thread(self._repo.get, run.user_id, run.prompt_id)
        if prompt is None or prompt.status is not Status.RUNNING or prompt.runCount != run.run_count:
            logger.info("async result for a run that is over; ignored", prompt_id=run.prompt_id)
            return RunResult(Outcome.SKIPPED)
        until = int((self._clock() + self._lease_seconds) * 1000)
        if not await asyncio.to_thread(self._repo.renew_lease, prompt, until):
            return RunResult(Outcome.SKIPPED)  # canceled, removed or claimed again just now
        events = self._run_events(prompt)
        events.fence(fence_of(until, self._lease_seconds))
        started = epoch_seconds(prompt.lastRun) if prompt.lastRun else self._clock()
        progress = Progress(events=events, started=started)
        try:
            result = await self._end(prompt, answer, progress)
        finally:
            await events.close()
        await self._endings.count(progress)
        if result.outcome is Outcome.RETRY and requeue is not None:
            await asyncio.to_thread(requeue, prompt.id, prompt.userId, result.retry_after, prompt.lane)
        elif events.fenced and result.outcome in FINISHED and requeue is not None:
            # Its closing event missed the finished run's fence (endings.py): a message after the
            # grace brings the repair (closing_events.py), as a streamed run's own message does. The
            # run's own message, held for the endpoint's deadline, would bring it hours later.
            grace = math.ceil(CLOSE_GRACE_SECONDS)
            await asyncio.to_thread(requeue, prompt.id, prompt.userId, grace, prompt.lane)
        return result

    async def _end(
        self, prompt: Prompt, answer: tuple[str, Finish] | EngineError, progress: Progress
    ) -> RunResult:
        attempt: Attempt | None = None
        try:
            attempt = attempt_for(prompt, self._catalog(), caching=False)
        except InvalidRequest as error:
            invalid = EngineError(str(error), retryable=False)
            return await self._endings.failed(prompt, progress, invalid, None)
        if isinstance(answer, EngineError):
            return await self._endings.failed(prompt, progress, answer, attempt)
        text, finish = answer
        size = answer_size(text)
        if size > self._max_answer_bytes:
            final = FinalError(answer_over_maximum(self._max_answer_bytes))
            return await self._endings.failed(prompt, progress, final, attempt)
        if text:
            progress.first_token = self._clock()
            progress.parts.append(text)
            progress.size = size
            progress.events.delta(text)
        progress.finish = finish
        return await self._endings.completed(prompt, attempt, progress)

    def _run_events(self, prompt: Prompt) -> RunEvents | NoEvents:
        if self._events is None:
            return NoEvents()
        return RunEvents(self._events, prompt, interval=self._delta_interval)


async def settle_notification(
    settle: Callable[[AsyncRun, tuple[str, Finish] | EngineError, Requeue], Awaitable[RunResult]],
    reader: NotificationReader,
    requeue: Requeue,
    message: str,
) -> RunResult:
    """One SNS message from an async endpoint: read it, settle its run (`PromptRunner.settle_async`)."""
    result = await asyncio.to_thread(reader.read_notification, message)
    if result is None:
        logger.warning("not a notification of one of our async runs; ignored", message=message[:500])
        return RunResult(Outcome.SKIPPED)
    return await settle(result.run, result.answer, requeue)
