"""An engine with a response cache in front (a routed prompt's `cache` setting): a hit answers
from the cache without calling the engine (one delta, finish reason `cached`); a miss streams the
engine and keeps the whole answer, with the tokens the engine reported, for `ttl` seconds once the
stream has finished. The cache is best effort: one that cannot be read is a miss, one that cannot
be written keeps nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from promptsvc.domain.errors import ItemTooLarge
from promptsvc.domain.response_cache import CachedAnswer
from promptsvc.domain.usage import CACHED
from promptsvc.engines.base import Delta, Engine, EngineEvent, EngineRequest, Finish

if TYPE_CHECKING:
    from promptsvc.domain.ports import ResponseCache

logger = Logger(child=True)


class CachedEngine:
    def __init__(self, engine: Engine, cache: ResponseCache, key: str, ttl: int) -> None:
        self._engine = engine
        self._cache = cache
        self._key = key
        self._ttl = ttl

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        model_id = request.model.id
        try:
            answer = await asyncio.to_thread(self._cache.get, self._key)
        except Exception:
            logger.exception("response cache read failed; calling the engine", model_id=model_id)
            answer = None
        if answer is not None:
            # A hit shows the usage the answer had when it was made (the counters count a hit,
            # not the tokens again: domain/usage.py).
            yield Delta(answer.answer)
            yield Finish(CACHED, answer.prompt_tokens, answer.completion_tokens)
            return
        parts: list[str] = []
        finish: Finish | None = None
        async for event in self._engine.stream(request):
            if isinstance(event, Delta):
                parts.append(event.text)
            else:
                finish = event
            yield event
        if finish is not None:
            kept = CachedAnswer("".join(parts), finish.prompt_tokens, finish.completion_tokens)
            await self._keep(kept, model_id)

    async def _keep(self, answer: CachedAnswer, model_id: str) -> None:
        try:
            await asyncio.to_thread(self._cache.put, self._key, answer, self._ttl)
        except ItemTooLarge:
            logger.info(
                "answer too large to cache", model_id=model_id, answer_bytes=len(answer.answer.encode())
            )
        except Exception:
            logger.exception("response cache write failed", model_id=model_id)
