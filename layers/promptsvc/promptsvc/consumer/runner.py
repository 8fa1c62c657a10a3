"""Runs one queued prompt: claim -> render -> engine -> store the answer. The core both hosts
share (the Lambda consumer and the ECS GPU worker); it never touches the queue itself, it tells
its host what to do with the message (`RunResult`).

Rules (DESIGN.md, "Prompt lifecycle"), each kept by one part:
- a claim is a conditional write on the prompt exactly as read, and takes a *lease*: a consumer
  that dies leaves a `running` prompt whose lease runs out; the message comes back after its
  visibility timeout, the prompt is claimed again and the run counts, as does the crash; after
  `crash_limit` crashes the prompt is abandoned and the message dead-lettered (claim.py);
- a duplicate delivery of a prompt that is running under a live lease, or already terminal,
  does nothing (the message comes back once the lease is over, or is deleted) (claim.py), and a
  finished prompt's missing closing event is stored then (closing_events.py);
- the lease is renewed for as long as the run lasts, and its writes stop at its fence (lease.py);
- a routed prompt (`domain.routing`) follows its plan: each attempt runs the plan's current model
  (attempt.py), a failure retries it or falls back to the next model, a cached answer completes it
  at once;
- a cancel is noticed within about `cancel_poll` seconds (a watcher reads the prompt while the
  engine streams): generation stops and the partial answer is kept; every engine call is bounded
  by the model's call timeout and stall timeout (retryable) (generation.py);
- retryable failures leave the prompt `errored` and the message comes back after an exponential
  backoff with jitter (the host changes its visibility: no consumer sleeps); others abandon it;
- an answer too large for the prompt's item goes to the answers bucket, the item keeps its key
  (`domain.answers`); one over `max_answer_bytes` stops the generation and abandons the prompt
  (endings.py);
- a model served by an async endpoint (engines/submission.py) is submitted instead of streamed:
  the prompt stays running without a consumer and the endpoint's notification settles it
  (consumer/async_runs.py, `settle_async`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
from aws_lambda_powertools import Logger

from promptsvc.consumer import telemetry
from promptsvc.consumer.async_runs import AsyncRuns, Requeue
from promptsvc.consumer.attempt import Attempt, attempt_for
from promptsvc.consumer.claim import Claims
from promptsvc.consumer.closing_events import ClosingEvents
from promptsvc.consumer.endings import Endings
from promptsvc.consumer.generation import Generation, LeaseLost, Stopped
from promptsvc.consumer.lease import KeepAlive, LeaseKeeper
from promptsvc.consumer.outcome import FINISHED, Outcome, RunResult
from promptsvc.consumer.progress import Progress
from promptsvc.consumer.run_events import NoEvents, RunEvents
from promptsvc.consumer.telemetry import log_keys
from promptsvc.domain.answers import DEFAULT_MAX_ANSWER_BYTES
from promptsvc.domain.catalog import Catalog
from promptsvc.domain.clock import epoch_seconds
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.failure_policy import FailurePolicy
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.status import Status
from promptsvc.domain.thread_events import CLOSE_GRACE_SECONDS, RemovalCheck
from promptsvc.engines.base import EngineError, Finish
from promptsvc.engines.registry import EngineRegistry
from promptsvc.engines.submission import AsyncRun, Submitter

if TYPE_CHECKING:
    from promptsvc.domain.ports import AnswerBodies, PromptStore, ResponseCache, ThreadEventLog, UsageCounter

__all__ = ["Outcome", "PromptRunner", "RunResult"]

logger = Logger(child=True)

Slot = Callable[[], Awaitable[None]]  # waits for a free engine slot


class _Host(msgspec.Struct, frozen=True):
    """What the host gives a run (PromptRunner.run)."""

    keep_alive: KeepAlive | None = None
    on_generated: Callable[[], None] | None = None
    slot: Slot | None = None


class PromptRunner:
    def __init__(
        self,
        repository: PromptStore,
        catalog: Callable[[], Catalog],
        engines: EngineRegistry,
        *,
        lease_seconds: float = 90.0,
        cancel_poll: float = 0.5,
        crash_limit: int = 3,
        retry_base: float = 2.0,
        retry_cap: float = 900.0,
        events: ThreadEventLog | None = None,
        delta_interval: float = 0.25,
        cache: ResponseCache | None = None,
        answers: AnswerBodies | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        clock: Callable[[], float] = time.time,
        usage: UsageCounter | None = None,
    ) -> None:
        self._repo = repository
        self._catalog = catalog
        self._lease_seconds = lease_seconds
        self._events = events
        self._delta_interval = delta_interval
        self._caching = cache is not None
        self._clock = clock
        self._closing = ClosingEvents(repository, events, clock)
        self._claims = Claims(repository, events, self._closing, crash_limit=crash_limit, clock=clock)
        self._generation = Generation(
            repository,
            engines,
            cache,
            cancel_poll=cancel_poll,
            max_answer_bytes=max_answer_bytes,
            clock=clock,
        )
        self._endings = Endings(
            repository, events, FailurePolicy(retry_base, retry_cap), answers, clock, usage=usage
        )
        self._engines = engines
        self._async = AsyncRuns(
            repository,
            catalog,
            self._endings,
            events,
            lease_seconds=lease_seconds,
            delta_interval=delta_interval,
            max_answer_bytes=max_answer_bytes,
            clock=clock,
        )

    async def run(
        self,
        prompt_id: str,
        *,
        user_id: str,
        keep_alive: KeepAlive | None = None,
        lease_seconds: float | None = None,
        on_generated: Callable[[], None] | None = None,
        slot: Slot | None = None,
    ) -> RunResult:
        """Run the prompt if it is due.

        `user_id` (from the message: prompt ids are per user) allows a one-write claim;
        `keep_alive` is called as the lease is renewed (the ECS worker extends the message's
        visibility there); `lease_seconds` overrides the lease (the Lambda host uses its
        remaining time); `on_generated` is called once the engine is done with the prompt, before
        the answer is written (the ECS worker gives the engine slot to the next prompt then);
        `slot` is awaited once the prompt is claimed, before the engine is called (the ECS worker
        claims a few prompts ahead of a free engine slot, so a freed slot waits for no claim; a
        run cancelled while it waits is released, uncounted).
        """
        lease = lease_seconds or self._lease_seconds
        claimed = await self._claims.claim(prompt_id, user_id, lease)
        if isinstance(claimed, RunResult):
            return claimed
        return await self._started(claimed, lease, _Host(keep_alive, on_generated, slot))

    async def settle_async(
        self, run: AsyncRun, answer: tuple[str, Finish] | EngineError, requeue: Requeue | None = None
    ) -> RunResult:
        """An async endpoint's notification: end `run` with its answer or failure, as a streamed
        run ends (consumer/async_runs.py); `requeue` sends a retry's message."""
        return await self._async.settle(run, answer, requeue)

    async def close_removed(self, check: RemovalCheck) -> RunResult:
        """A removal's check (consumer/removal_check.py): once the removed run's lease is over,
        end the thread's events with `removed` unless its consumer did."""
        return await self._closing.close_removed(check)

    async def _started(self, claimed: Prompt, lease: float, host: _Host) -> RunResult:
        """Run the claimed prompt under its lease, kept by a LeaseKeeper for as long as the run
        lasts, with the run's thread events."""
        if claimed.runCount == 1:
            telemetry.queued(self._clock() - epoch_seconds(claimed.createdAt), claimed.modelId)
        events = self._run_events(claimed)
        keeper = LeaseKeeper(
            self._repo, claimed, lease, clock=self._clock, on_renewed=events.fence, keep_alive=host.keep_alive
        )
        events.fence(keeper.fence)
        keeping = asyncio.create_task(keeper.keep())
        # A first run tells the thread the prompt was scheduled (the API writes no event, to keep
        # an add at two AWS calls); a later run starts the answer over.
        if claimed.runCount == 1:
            events.status(str(Status.SCHEDULED))
        else:
            events.reset()
        events.status(str(Status.RUNNING))
        progress = Progress(events=events, started=self._clock())
        try:
            result = await self._run_claimed(claimed, keeper, host, progress)
        finally:
            keeping.cancel()
            await events.close()
        if result.outcome is Outcome.SUBMITTED:
            return await self._async.hold(claimed, result)
        await self._endings.count(progress)  # the usage counters, after the run's last event
        if events.fenced and result.outcome in FINISHED:
            # Its closing event missed the finished run's fence (endings.py): the message comes
            # back after the grace, and its repair stores the event (closing_events.py).
            return RunResult(Outcome.BUSY, retry_after=math.ceil(CLOSE_GRACE_SECONDS))
        return result

    def _run_events(self, prompt: Prompt) -> RunEvents | NoEvents:
        if self._events is None:
            return NoEvents()
        return RunEvents(self._events, prompt, interval=self._delta_interval)

    async def _run_claimed(
        self,
        claimed: Prompt,
        keeper: LeaseKeeper,
        host: _Host,
        progress: Progress,
    ) -> RunResult:
        """One attempt, then its ending; every way it can go maps to one of `Endings`."""
        events = progress.events
        attempt: Attempt | None = None
        try:
            attempt = attempt_for(claimed, self._catalog(), caching=self._caching)
            engine = self._engines.for_model(attempt.model)
            if isinstance(engine, Submitter):  # an async endpoint: no slot, no stream
                return await self._async.submit(claimed, attempt, engine)
            if host.slot is not None:
                await host.slot()
                progress.started = self._clock()
            try:
                await self._generation.run(claimed, attempt, progress, keeper)
            finally:
                if host.on_generated is not None:
                    host.on_generated()
        except asyncio.CancelledError:
            await self._endings.released(claimed, events)
            raise
        except Stopped as stopped:
            return await self._endings.stopped(claimed, stopped.current, progress)
        except LeaseLost:
            return self._endings.lease_lost(claimed, events)
        except EngineError as error:
            return await self._endings.failed(claimed, progress, error, attempt)
        except InvalidRequest as error:
            invalid = EngineError(str(error), retryable=False)
            return await self._endings.failed(claimed, progress, invalid, attempt)
        except Exception as error:  # an unexpected fault is treated as transient
            logger.exception("prompt run failed unexpectedly", **log_keys(claimed))
            fault = EngineError(f"{type(error).__name__}: {error}", retryable=True)
            return await self._endings.failed(claimed, progress, fault, attempt)
        return await self._endings.completed(claimed, attempt, progress)
