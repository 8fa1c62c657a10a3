"""Runs one queued prompt: claim -> render -> engine -> store the answer. The core both hosts
share (the Lambda consumer and the ECS GPU worker); it never touches the queue itself, it tells
its host what to do with the message (`RunResult`).

Rules (DESIGN.md, "Prompt lifecycle"):
- a claim is a conditional write on the prompt exactly as read, and takes a *lease*: a consumer
  that dies leaves a `running` prompt whose lease runs out; the message comes back after its
  visibility timeout, the prompt is claimed again and the run counts, as does the crash; after
  `crash_limit` crashes the prompt is abandoned and the message dead-lettered;
- a duplicate delivery of a prompt that is running under a live lease, or already terminal,
  does nothing (the message comes back once the lease is over, or is deleted);
- retryable failures leave the prompt `errored` and the message comes back after an exponential
  backoff with jitter (the host changes its visibility: no consumer sleeps); others abandon it;
- a cancel is noticed within about `cancel_poll` seconds (a watcher reads the prompt while the
  engine streams): generation stops and the partial answer is kept;
- every engine call is bounded by the model's call timeout and stall timeout (retryable);
- a routed prompt (`domain.routing`) follows its plan: each attempt runs the plan's current model,
  a failure retries it or falls back to the next model, a cached answer completes it at once;
- an answer too large for the prompt's item goes to the answers bucket, the item keeps its key
  (`domain.answers`); one over `max_answer_bytes` stops the generation and abandons the prompt.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger

from promptsvc.consumer import telemetry
from promptsvc.consumer.lease import KeepAlive, LeaseKeeper
from promptsvc.consumer.removal_check import closing_event_needed
from promptsvc.consumer.run_events import NoEvents, RunEvents
from promptsvc.domain.answers import DEFAULT_MAX_ANSWER_BYTES, answer_key, answer_over_maximum, answer_size
from promptsvc.domain.catalog import Catalog, Model
from promptsvc.domain.clock import now_rfc3339, seconds_until
from promptsvc.domain.errors import InvalidRequest, ItemTooLarge
from promptsvc.domain.failure_policy import Failure, FailurePolicy
from promptsvc.domain.ports import AnswerBodies, PromptRepository, ResponseCache, ThreadEventLog
from promptsvc.domain.prompt import Prompt, RunState
from promptsvc.domain.prompt_variables import last_user_text
from promptsvc.domain.response_cache import cache_key
from promptsvc.domain.routing import TIMEOUT_CODE, RunPlan
from promptsvc.domain.status import Status, is_terminal
from promptsvc.domain.template import render
from promptsvc.domain.thread_events import (
    HOLE_SECONDS,
    REMOVED,
    RemovalCheck,
    closing_event_missing,
    reset_event,
    status_event,
    thread_key_of,
)
from promptsvc.engines.base import CALL_PARAMETERS, Delta, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.cached import CACHED, CachedEngine
from promptsvc.engines.registry import EngineRegistry

logger = Logger(child=True)
tracer = telemetry.tracer


class Outcome(StrEnum):
    COMPLETED = "completed"
    CANCELED = "canceled"  # canceled while running: stopped, partial answer kept
    SKIPPED = "skipped"  # nothing to do: gone, terminal, or changed under us (duplicate delivery)
    DISCARDED = "discarded"  # the prompt was removed or changed while the engine ran
    BUSY = "busy"  # running elsewhere under a live lease: look again when it runs out
    RETRY = "retry"  # errored: run again after the backoff
    ABANDONED = "abandoned"
    DEAD_LETTER = "dead-letter"  # abandoned because consumers kept dying on it


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    retry_after: int = 0  # seconds until the message should come back (BUSY, RETRY)
    error: str = ""

    @property
    def keep_message(self) -> bool:
        return self.outcome in (Outcome.BUSY, Outcome.RETRY)


@dataclass
class _Progress:
    events: "RunEvents | NoEvents" = field(default_factory=NoEvents)
    parts: list[str] = field(default_factory=list)
    size: int = 0  # UTF-8 bytes of the answer so far
    started: float = 0.0
    first_token: float | None = None
    finish: Finish | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True)
class _Attempt:
    """One run's model and request; a routed prompt's also has its place in the plan."""

    model: Model
    request: EngineRequest
    plan: RunPlan | None = None
    cache_key: str | None = None


class _FinalError(EngineError):
    """A failure no run of this prompt could avoid (its answer is over the maximum, or fits
    nowhere): the prompt is abandoned, whatever its retries or routing plan say."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, status_code=413)


_CLAIM_ROUNDS = 3  # reads of a prompt whose claim keeps losing races, before the message is kept
_REPAIR_LOOKBACK = 50  # recent thread events searched for a finished prompt's closing event
_CLOSE_GRACE_SECONDS = 10  # how long the consumer that finished a prompt may take to write its closing event


class _LeaseLost(Exception):
    """The run's lease is about to end without a renewal: it must stop before another claims it."""


class _Stopped(Exception):
    """The prompt changed while the engine ran (canceled, removed, or claimed again)."""

    def __init__(self, current: RunState | None) -> None:
        super().__init__("stopped")
        self.current = current


class PromptRunner:
    def __init__(
        self,
        repository: PromptRepository,
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
    ) -> None:
        self._repo = repository
        self._catalog = catalog
        self._engines = engines
        self._lease_seconds = lease_seconds
        self._cancel_poll = cancel_poll
        self._crash_limit = crash_limit
        self._policy = FailurePolicy(retry_base, retry_cap)
        self._events = events
        self._delta_interval = delta_interval
        self._cache = cache
        self._answers = answers
        self._max_answer_bytes = max_answer_bytes
        self._clock = clock

    # -- entry point ----------------------------------------------------------------------------

    async def run(
        self,
        prompt_id: str,
        *,
        user_id: str,
        keep_alive: KeepAlive | None = None,
        lease_seconds: float | None = None,
        on_generated: Callable[[], None] | None = None,
    ) -> RunResult:
        """Run the prompt if it is due.

        `user_id` (from the message: prompt ids are per user) allows a one-write claim;
        `keep_alive` is called as the lease is renewed (the ECS worker extends the message's
        visibility there); `lease_seconds` overrides the lease (the Lambda host uses its
        remaining time); `on_generated` is called once the engine is done with the prompt, before
        the answer is written (the ECS worker gives the engine slot to the next prompt then).
        """
        lease = lease_seconds or self._lease_seconds
        # The common case, a waiting prompt: one write, no read.
        lease_until = self._now_ms() + int(lease * 1000)
        claimed = await asyncio.to_thread(
            self._repo.claim_waiting, prompt_id, user_id, now_rfc3339(), lease_until
        )
        if claimed is not None:
            return await self._started(claimed, lease, keep_alive, on_generated)
        # The message of an unfinished prompt is never let go: a claim that loses a race (another
        # delivery of the same prompt changed it between our read and our write) reads it again.
        for _ in range(_CLAIM_ROUNDS):
            prompt = await asyncio.to_thread(self._repo.get, user_id, prompt_id)
            if prompt is None:
                return RunResult(Outcome.SKIPPED)
            if is_terminal(prompt.status):
                return await self._close_events_if_missing(prompt)
            now_ms = self._now_ms()
            if prompt.status is Status.RUNNING:
                if prompt.leaseUntil > now_ms:
                    return RunResult(Outcome.BUSY, retry_after=seconds_until(prompt.leaseUntil, now_ms))
                if prompt.crashCount + 1 >= self._crash_limit or prompt.runCount > prompt.maxRetries:
                    given_up = await self._give_up_after_crashes(prompt)
                    if given_up is not None:
                        return given_up
                    continue  # changed meanwhile: read it again
                logger.warning("reclaiming a prompt whose consumer stopped", **_log_keys(prompt))
            until = now_ms + int(lease * 1000)
            claimed = await asyncio.to_thread(self._repo.claim, prompt, now_rfc3339(), until)
            if claimed is not None:
                return await self._started(claimed, lease, keep_alive, on_generated)
        return RunResult(Outcome.BUSY, retry_after=1)  # still changing: look again in a moment

    async def close_removed(self, check: RemovalCheck) -> RunResult:
        """A removal's check (consumer/removal_check.py): once the removed run's lease is over,
        end the thread's events with `removed` unless its consumer did."""
        if self._events is None:
            return RunResult(Outcome.SKIPPED)
        now_ms = self._now_ms()
        if now_ms < check.lease_until_ms:  # early (SQS delays 15 minutes at most): the run may still write
            return RunResult(Outcome.BUSY, retry_after=seconds_until(check.lease_until_ms, now_ms))
        needed = await asyncio.to_thread(closing_event_needed, self._events, check)
        if needed is None:
            return RunResult(Outcome.BUSY, retry_after=math.ceil(HOLE_SECONDS))
        if needed:
            await asyncio.to_thread(self._events.append, check.removed_event(now_rfc3339()))
            logger.warning(
                "ended a removed prompt's thread events: its consumer stopped before it could",
                prompt_id=check.prompt_id,
                thread_id=check.thread_id,
            )
        return RunResult(Outcome.SKIPPED)

    async def _close_events_if_missing(self, prompt: Prompt) -> RunResult:
        """A finished prompt's message came back: maybe its consumer died after finishing it but
        before storing the thread's closing status event (the events follow the status change).
        If the thread's recent events hold no closing event of this prompt, store it now, so every
        prompt's events end with its final status. Within `_CLOSE_GRACE_SECONDS` of the finish the
        consumer that finished it may still be writing it (this is a duplicate delivery racing
        it): then the message is kept, to look again once that time has passed."""
        if self._events is None:
            return RunResult(Outcome.SKIPPED)
        try:
            recent = await asyncio.to_thread(self._events.recent, thread_key_of(prompt), _REPAIR_LOOKBACK)
            if not closing_event_missing(prompt, recent, complete=len(recent) < _REPAIR_LOOKBACK):
                return RunResult(Outcome.SKIPPED)
            waited = self._clock() - _epoch(prompt.updatedAt)
            if waited < _CLOSE_GRACE_SECONDS:
                return RunResult(Outcome.BUSY, retry_after=max(1, math.ceil(_CLOSE_GRACE_SECONDS - waited)))
            event = status_event(prompt, str(prompt.status), now_rfc3339(), prompt.error)
            await asyncio.to_thread(self._events.append, event)
            logger.warning("stored a finished prompt's missing closing event", **_log_keys(prompt))
        except Exception:
            logger.exception("could not check the thread's closing event", **_log_keys(prompt))
        return RunResult(Outcome.SKIPPED)

    async def _started(
        self,
        claimed: Prompt,
        lease: float,
        keep_alive: KeepAlive | None,
        on_generated: Callable[[], None] | None,
    ) -> RunResult:
        if claimed.runCount == 1:
            telemetry.queued(self._clock() - _epoch(claimed.createdAt), claimed.modelId)
        events = self._run_events(claimed)
        keeper = LeaseKeeper(
            self._repo, claimed, lease, clock=self._clock, on_renewed=events.fence, keep_alive=keep_alive
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
        try:
            return await self._run_claimed(claimed, keeper, on_generated, events)
        finally:
            keeping.cancel()
            await events.close()

    def _run_events(self, prompt: Prompt) -> "RunEvents | NoEvents":
        if self._events is None:
            return NoEvents()
        return RunEvents(self._events, prompt, interval=self._delta_interval)

    # -- one run --------------------------------------------------------------------------------

    async def _run_claimed(
        self,
        claimed: Prompt,
        keeper: LeaseKeeper,
        on_generated: Callable[[], None] | None,
        events: "RunEvents | NoEvents",
    ) -> RunResult:
        progress = _Progress(events=events, started=self._clock())
        attempt: _Attempt | None = None
        try:
            attempt = self._attempt(claimed)
            try:
                await self._generate_watched(claimed, attempt, progress, keeper)
            finally:
                if on_generated is not None:
                    on_generated()
        except asyncio.CancelledError:
            # The host is shutting down (an ECS worker past its drain time): give the run back,
            # uncounted, so another consumer starts it at once instead of waiting out the lease.
            # The next run starts over as a first run (scheduled, running, ... and no `reset` of its
            # own), so this run's `reset` is stored now, before the release, and nothing after it.
            events.drop()
            await asyncio.shield(events.close())  # lets a write already under way land first
            if self._events is not None:
                reset = reset_event(claimed, now_rfc3339())
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.to_thread(self._events.append, reset))
            await asyncio.shield(asyncio.to_thread(self._repo.release, claimed, now_rfc3339()))
            logger.info("prompt released by a stopping consumer", **_log_keys(claimed))
            raise
        except _Stopped as stopped:
            return await self._stopped(claimed, stopped.current, progress)
        except _LeaseLost:
            return self._lease_lost(claimed, events)
        except EngineError as error:
            return await self._fail(claimed, progress, error, attempt)
        except InvalidRequest as error:
            return await self._fail(claimed, progress, EngineError(str(error), retryable=False), attempt)
        except Exception as error:  # an unexpected fault is treated as transient
            logger.exception("prompt run failed unexpectedly", **_log_keys(claimed))
            fault = EngineError(f"{type(error).__name__}: {error}", retryable=True)
            return await self._fail(claimed, progress, fault, attempt)
        self._record_generation(claimed, progress)
        await events.flush()  # every delta stored before the prompt reads as completed
        if events.fenced:
            return self._lease_lost(claimed, events)
        complete = partial(
            self._repo.transition,
            claimed,
            Status.COMPLETED,
            run_count=claimed.runCount,
            answeredBy=attempt.model.id,
            error="",
            updatedAt=now_rfc3339(),
        )
        try:
            done = await self._write_answer(claimed, progress.text, complete)
        except ItemTooLarge:
            unstorable = (
                f"the answer ({progress.size} bytes) is too large for the prompt's item "
                "and no answers bucket is configured"
            )
            return await self._fail(claimed, progress, _FinalError(unstorable), attempt)
        except EngineError as error:  # the bucket could not be written: the next run answers again
            return await self._fail(claimed, progress, error, attempt)
        if done is None:
            return await self._stopped(claimed, await self._state(claimed), progress)
        events.fence(None)  # finished by our own conditional write: nobody else runs it now
        events.status(str(Status.COMPLETED))
        telemetry.outcome("completed", claimed.modelId)
        return RunResult(Outcome.COMPLETED)

    def _lease_lost(self, claimed: Prompt, events: "RunEvents | NoEvents") -> RunResult:
        """Past our lease another consumer may already run it: write nothing more (its reset must
        not be followed by our deltas). The message comes back soon, and a consumer reclaims the
        prompt (counting the lost run like a crash) unless one already has."""
        events.drop()
        logger.warning("lease ran out before it could be renewed; run stopped", **_log_keys(claimed))
        return RunResult(Outcome.BUSY, retry_after=1)

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
            logger.exception("could not store the answer's body in the answers bucket", **_log_keys(claimed))
            raise EngineError(
                f"could not store the answer: {type(error).__name__}", retryable=True
            ) from error
        logger.info(
            "answer stored in the answers bucket", answer_bytes=answer_size(text), **_log_keys(claimed)
        )
        return await asyncio.to_thread(write, answer="", answerRef=key)

    def _attempt(self, claimed: Prompt) -> _Attempt:
        """The model this run uses and what it is sent. A routed prompt runs the model its plan
        has reached, bounded by the plan's call timeout, with the stored prompt's messages and
        parameters over the catalog's defaults."""
        plan = claimed.run_plan
        model_id = plan.models[min(claimed.routeIndex, len(plan.models) - 1)] if plan else claimed.modelId
        model = self._catalog().resolve(model_id)
        if plan and plan.call_timeout_ms:
            model = replace(model, call_timeout=plan.call_timeout_ms / 1000)
        stored = plan.messages if plan else ()
        # The prompt's own template is for its first model; another model gets its own.
        template = claimed.template if model.id == claimed.modelId else model.template
        if not stored and model.api == "chat" and template != model.template:
            # The caller chose a template: a chat API would apply the server's own and ignore it,
            # so the prompt goes as a completion, rendered with the caller's template.
            model = replace(model, api="completions")
        parameters = plan.parameters if plan else {}
        request = EngineRequest(
            model=model,
            prompt=render(template, last_user_text(stored) if stored else claimed.prompt),
            messages=tuple(stored) or ({"role": "user", "content": claimed.prompt},),
            parameters={**model.parameters, **{k: v for k, v in parameters.items() if k in CALL_PARAMETERS}},
        )
        if plan is None:
            return _Attempt(model, request)
        key = None
        if plan.cache_ttl and self._cache is not None:
            every = {**model.parameters, **parameters}
            key = cache_key(claimed.userId, model.id, request.messages, request.prompt, every)
        return _Attempt(model, request, plan, key)

    async def _generate_watched(
        self, claimed: Prompt, attempt: _Attempt, progress: _Progress, keeper: LeaseKeeper
    ) -> None:
        """Stream from the engine while a watcher reads the prompt every `cancel_poll` seconds
        (a cancel is seen even while the engine is silent) and stops the run when its lease is
        lost or about to end unrenewed (consumer/lease.py)."""
        engine = self._engines.for_model(attempt.model)
        if attempt.cache_key is not None and self._cache is not None and attempt.plan is not None:
            engine = CachedEngine(engine, self._cache, attempt.cache_key, int(attempt.plan.cache_ttl or 0))
        stream = engine.stream(attempt.request)
        generation: asyncio.Future[Any] = asyncio.create_task(self._consume(stream, attempt.model, progress))
        try:
            while True:
                done, _ = await asyncio.wait({generation}, timeout=self._cancel_poll)
                if done:
                    break
                # The read must not hold up noticing the end of the generation: under load it can
                # wait its turn for a thread, and the engine slot would sit idle meanwhile.
                read = asyncio.ensure_future(self._state(claimed))
                done, _ = await asyncio.wait({generation, read}, return_when=asyncio.FIRST_COMPLETED)
                if generation in done:
                    read.cancel()  # its answer no longer matters (a late cancel finds the prompt done)
                    break
                current = read.result()
                if (
                    keeper.lost
                    or current is None
                    or current.status is not Status.RUNNING
                    or current.runCount != claimed.runCount
                ):
                    raise _Stopped(current)
                if keeper.past_fence():
                    raise _LeaseLost()  # another consumer may claim it now: stop writing at once
        finally:
            if not generation.done():
                generation.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await generation
        generation.result()  # raises the engine's error, if any

    @tracer.capture_method(capture_response=False)
    async def _consume(self, events: AsyncIterator[EngineEvent], model: Model, progress: _Progress) -> None:
        """Drain the engine's stream, bounded by the model's call timeout and stall timeout."""
        try:
            async with asyncio.timeout(model.call_timeout):
                while True:
                    try:
                        event = await asyncio.wait_for(anext(events), model.stall_timeout)
                    except StopAsyncIteration:
                        return
                    except TimeoutError:
                        raise EngineError(
                            f"engine stalled: no output for {model.stall_timeout:g} s",
                            retryable=True,
                            status_code=TIMEOUT_CODE,
                        ) from None
                    if isinstance(event, Delta):
                        if progress.first_token is None:
                            progress.first_token = self._clock()
                        progress.size += answer_size(event.text)
                        if progress.size > self._max_answer_bytes:
                            raise _FinalError(answer_over_maximum(self._max_answer_bytes))
                        progress.parts.append(event.text)
                        progress.events.delta(event.text)
                    else:
                        progress.finish = event
                        if event.reason == CACHED:
                            telemetry.cache_hit(model.id)
        except TimeoutError:
            raise EngineError(
                f"engine call exceeded {model.call_timeout:g} s", retryable=True, status_code=TIMEOUT_CODE
            ) from None
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    # -- endings --------------------------------------------------------------------------------

    async def _state(self, prompt: Prompt) -> RunState | None:
        """What the watcher needs of the stored prompt (status and run), not the whole item."""
        return await asyncio.to_thread(self._repo.run_state, prompt.userId, prompt.id)

    async def _stopped(self, claimed: Prompt, current: RunState | None, progress: _Progress) -> RunResult:
        """The prompt changed under the run. A cancel keeps the partial answer (what the thread's
        deltas showed up to the cancel); a removal ends the thread's events with `removed`;
        anything else (claimed again after our lease ran out) discards what we have."""
        if current is None:
            progress.events.status(REMOVED)
            logger.info("prompt removed while running; generation stopped", **_log_keys(claimed))
            return RunResult(Outcome.DISCARDED)
        if current is not None and current.status is Status.CANCELED and current.runCount == claimed.runCount:
            keep = partial(self._repo.update_if, claimed, Status.CANCELED)
            try:
                await self._write_answer(claimed, progress.text, keep)
            except Exception:
                logger.exception(
                    "could not keep the partial answer of a canceled prompt", **_log_keys(claimed)
                )
            progress.events.fence(None)  # canceled is final: no other run will write after this
            progress.events.status(str(Status.CANCELED))
            telemetry.outcome("canceled", claimed.modelId)
            logger.info("prompt canceled while running; partial answer kept", **_log_keys(claimed))
            return RunResult(Outcome.CANCELED)
        return RunResult(Outcome.DISCARDED)

    async def _fail(
        self, prompt: Prompt, progress: _Progress, error: EngineError, attempt: _Attempt | None
    ) -> RunResult:
        final = isinstance(error, _FinalError)
        failure = Failure(str(error), error.retryable, error.status_code, final=final)
        model_id = attempt.model.id if attempt is not None else prompt.modelId
        step = self._policy.next_step(prompt, failure, model_id, attempt.plan if attempt else None)
        await progress.events.flush()  # the run's deltas land before its status changes
        if progress.events.fenced:
            return self._lease_lost(prompt, progress.events)
        moved = await asyncio.to_thread(
            self._repo.transition,
            prompt,
            step.status,
            run_count=prompt.runCount,
            error=step.error,
            updatedAt=now_rfc3339(),
            **step.changes,
        )
        if moved is None:  # canceled or removed meanwhile: a cancel still keeps what was generated
            return await self._stopped(prompt, await self._state(prompt), progress)
        progress.events.fence(None)  # the run ended by our own conditional write
        progress.events.status(str(step.status), step.error)
        telemetry.outcome(str(step.status), prompt.modelId)
        if attempt is not None and attempt.plan is not None and "routeIndex" in step.changes:
            nxt = attempt.plan.models[step.changes["routeIndex"]]
            logger.info("falling back to the next model", failed=model_id, next=nxt, **_log_keys(prompt))
        logger.warning("prompt run failed", status=str(step.status), error=step.error, **_log_keys(prompt))
        if step.status is Status.ERRORED:
            return RunResult(Outcome.RETRY, retry_after=step.delay, error=step.error)
        return RunResult(Outcome.ABANDONED, error=step.error)

    async def _give_up_after_crashes(self, prompt: Prompt) -> RunResult | None:
        """Abandon a prompt whose last allowed run died; None when it changed meanwhile."""
        crashes = prompt.crashCount + 1
        message = (
            f"abandoned: the consumer stopped {crashes} times while running this prompt "
            "(crashed, ran out of time or was killed); the message was moved to the dead-letter queue"
        )
        if crashes < self._crash_limit:  # the run that died was its last allowed one
            message = (
                f"abandoned: retries spent ({prompt.runCount} runs, maxRetries {prompt.maxRetries}); "
                "the consumer stopped during the last one (crashed, ran out of time or was killed)"
            )
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
        logger.error("prompt abandoned after repeated consumer crashes", crashes=crashes, **_log_keys(prompt))
        return RunResult(Outcome.DEAD_LETTER, error=message)

    def _record_generation(self, prompt: Prompt, progress: _Progress) -> None:
        ended = self._clock()
        telemetry.generation(
            prompt.modelId,
            first_token_seconds=None
            if progress.first_token is None
            else progress.first_token - progress.started,
            seconds=ended - progress.started,
            completion_tokens=progress.finish.completion_tokens if progress.finish else 0,
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def _log_keys(prompt: Prompt) -> dict[str, Any]:
    """Per-line keys: records of a batch run concurrently, so shared logger state would mix them."""
    return {"prompt_id": prompt.id, "thread_id": prompt.threadId, "model_id": prompt.modelId}
