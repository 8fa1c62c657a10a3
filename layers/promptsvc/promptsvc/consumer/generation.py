"""One attempt against the engine: its stream drained into the run's progress, bounded by the
model's call timeout and stall timeout (both retryable) and by the maximum answer size (final),
while a watcher looks at the prompt every `cancel_poll` seconds (one read for all the runs of the
process: consumer/run_watch.py), so a cancel, a removal or a lost lease stops the generation within
about that time, even while the engine is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from promptsvc.consumer import telemetry
from promptsvc.consumer.attempt import Attempt
from promptsvc.consumer.lease import LeaseKeeper
from promptsvc.consumer.progress import FinalError, Progress
from promptsvc.consumer.run_watch import RunWatch, Unread
from promptsvc.domain.answers import answer_over_maximum, answer_size
from promptsvc.domain.catalog import Model
from promptsvc.domain.prompt import Prompt, RunState
from promptsvc.domain.routing import TIMEOUT_CODE
from promptsvc.domain.status import Status
from promptsvc.domain.usage import CACHED
from promptsvc.engines.base import Delta, Engine, EngineError, EngineEvent
from promptsvc.engines.cached import CachedEngine
from promptsvc.engines.registry import EngineRegistry

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptStore, ResponseCache

tracer = telemetry.tracer


class LeaseLost(Exception):
    """The run's lease is about to end without a renewal: it must stop before another claims it."""


class Stopped(Exception):
    """The prompt changed while the engine ran (canceled, removed, or claimed again)."""

    def __init__(self, current: RunState | None) -> None:
        super().__init__("stopped")
        self.current = current


class Generation:
    def __init__(
        self,
        repository: PromptStore,
        engines: EngineRegistry,
        cache: ResponseCache | None,
        *,
        cancel_poll: float,
        max_answer_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self._runs = RunWatch(repository, cancel_poll)
        self._engines = engines
        self._cache = cache
        self._cancel_poll = cancel_poll
        self._max_answer_bytes = max_answer_bytes
        self._clock = clock

    async def run(self, claimed: Prompt, attempt: Attempt, progress: Progress, keeper: LeaseKeeper) -> None:
        """Stream the attempt into `progress` while watching the prompt. Raises the engine's
        EngineError, FinalError, Stopped when the prompt changed, LeaseLost when the lease is
        lost or about to end unrenewed (consumer/lease.py)."""
        stream = self._engine(attempt).stream(attempt.request)
        generation = asyncio.create_task(self._consume(stream, attempt.model, progress))
        try:
            await self._watch(claimed, generation, keeper)
        finally:
            if not generation.done():
                generation.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await generation
        generation.result()  # raises the engine's error, if any

    def _engine(self, attempt: Attempt) -> Engine:
        engine = self._engines.for_model(attempt.model)
        if attempt.cache_key is not None and self._cache is not None and attempt.plan is not None:
            engine = CachedEngine(engine, self._cache, attempt.cache_key, int(attempt.plan.cache_ttl or 0))
        return engine

    async def _watch(self, claimed: Prompt, generation: asyncio.Task[None], keeper: LeaseKeeper) -> None:
        """Look at the prompt each round of the process's watch until the generation is done."""
        with self._runs.watching(claimed) as watched:
            state: asyncio.Task[RunState | Unread | None] | None = None
            try:
                while True:
                    state = state or asyncio.ensure_future(watched.next())
                    # The read must not hold up noticing the end of the generation: under load it
                    # can wait its turn for a thread, and the engine slot would sit idle meanwhile.
                    either: set[asyncio.Future[Any]] = {generation, state}
                    done, _ = await asyncio.wait(
                        either, timeout=self._cancel_poll, return_when=asyncio.FIRST_COMPLETED
                    )
                    if generation in done:
                        return
                    if state in done:
                        self._check(claimed, state.result(), keeper)
                        state = None
                    if keeper.past_fence():
                        raise LeaseLost()  # another consumer may claim it now: stop writing at once
            finally:
                if state is not None:
                    state.cancel()  # its answer no longer matters (a late cancel finds the prompt done)

    @staticmethod
    def _check(claimed: Prompt, current: RunState | Unread | None, keeper: LeaseKeeper) -> None:
        """Stopped when the prompt read is no longer in the run that claimed it."""
        if isinstance(current, Unread):
            return  # not read this round: the next one tells
        if keeper.lost or not _still_ours(current, claimed):
            raise Stopped(current)

    @tracer.capture_method(capture_response=False)
    async def _consume(self, events: AsyncIterator[EngineEvent], model: Model, progress: Progress) -> None:
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
                    self._take(event, model, progress)
        except TimeoutError:
            raise EngineError(
                f"engine call exceeded {model.call_timeout:g} s", retryable=True, status_code=TIMEOUT_CODE
            ) from None
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    def _take(self, event: EngineEvent, model: Model, progress: Progress) -> None:
        if isinstance(event, Delta):
            if progress.first_token is None:
                progress.first_token = self._clock()
            progress.size += answer_size(event.text)
            if progress.size > self._max_answer_bytes:
                raise FinalError(answer_over_maximum(self._max_answer_bytes))
            progress.parts.append(event.text)
            progress.events.delta(event.text)
        else:
            progress.finish = event
            if event.reason == CACHED:
                telemetry.cache_hit(model.id)


def _still_ours(current: RunState | None, claimed: Prompt) -> bool:
    """The prompt is still in the run that claimed it: not canceled, removed or claimed again."""
    return current is not None and current.status is Status.RUNNING and current.runCount == claimed.runCount
