"""Runs one queued prompt: claim -> render -> engine -> store the answer.

Every write is conditional (domain.status), so a duplicate delivery, a cancel or a removal while
the engine runs can never produce a second answer or move a terminal prompt.
"""

import asyncio
from collections.abc import Callable
from enum import StrEnum

from aws_lambda_powertools import Logger

from promptsvc.domain.catalog import Catalog
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.ports import PromptRepository
from promptsvc.domain.prompt import Prompt, now_rfc3339
from promptsvc.domain.status import Status, sources_for, status_after_failure
from promptsvc.domain.template import render
from promptsvc.engines.base import Delta, EngineError, EngineRequest
from promptsvc.engines.registry import EngineRegistry

logger = Logger(child=True)


class Outcome(StrEnum):
    COMPLETED = "completed"
    SKIPPED = "skipped"  # not claimable: gone, running elsewhere, terminal (duplicate delivery)
    DISCARDED = "discarded"  # canceled or removed while the engine ran: the answer is dropped
    RETRY = "retry"  # errored; the message must come back
    ABANDONED = "abandoned"


class RetryLater(Exception):
    """Raised so the batch reports the record as failed and SQS delivers it again."""


class PromptRunner:
    def __init__(
        self,
        repository: PromptRepository,
        catalog: Catalog,
        engines: EngineRegistry,
        *,
        clock: Callable[[], str] = now_rfc3339,
    ) -> None:
        self._repo = repository
        self._catalog = catalog
        self._engines = engines
        self._now = clock

    async def run(self, prompt_id: str) -> Outcome:
        prompt = await asyncio.to_thread(self._repo.get, prompt_id)
        if prompt is None or prompt.status not in sources_for(Status.RUNNING):
            return Outcome.SKIPPED
        claimed = await asyncio.to_thread(self._repo.claim, prompt, self._now())
        if claimed is None:
            return Outcome.SKIPPED
        try:
            answer = await self._generate(claimed)
        except EngineError as error:
            return await self._fail(claimed, str(error), retryable=error.retryable)
        except InvalidRequest as error:
            return await self._fail(claimed, str(error), retryable=False)
        except Exception as error:  # an unexpected fault is treated as transient
            logger.exception("engine call failed", **_log_keys(claimed))
            return await self._fail(claimed, f"{type(error).__name__}: {error}", retryable=True)
        done = await asyncio.to_thread(
            self._repo.transition,
            claimed,
            Status.COMPLETED,
            run_count=claimed.runCount,
            answer=answer,
            error="",
            updatedAt=self._now(),
        )
        return Outcome.COMPLETED if done else Outcome.DISCARDED

    async def _generate(self, prompt: Prompt) -> str:
        model = self._catalog.resolve(prompt.modelId)
        engine = self._engines.for_model(model)
        request = EngineRequest(
            model=model,
            prompt=render(prompt.template, prompt.prompt),
            messages=({"role": "user", "content": prompt.prompt},),
            parameters=dict(model.parameters),
        )
        parts: list[str] = []
        async for event in engine.stream(request):
            if isinstance(event, Delta):
                parts.append(event.text)
        return "".join(parts)

    async def _fail(self, prompt: Prompt, message: str, *, retryable: bool) -> Outcome:
        target = status_after_failure(prompt.runCount, prompt.maxRetries, retryable)
        moved = await asyncio.to_thread(
            self._repo.transition,
            prompt,
            target,
            run_count=prompt.runCount,
            error=message,
            updatedAt=self._now(),
        )
        if moved is None:
            return Outcome.DISCARDED
        logger.warning("prompt run failed", status=str(target), error=message, **_log_keys(prompt))
        if target is Status.ERRORED:
            raise RetryLater(message)
        return Outcome.ABANDONED


def _log_keys(prompt: Prompt) -> dict[str, str]:
    """Per-line keys: records of a batch run concurrently, so shared logger state would mix them."""
    return {"prompt_id": prompt.id, "thread_id": prompt.threadId, "model_id": prompt.modelId}
