"""The mock engine, for `promptsvc dev` and tests: echoes the rendered prompt back in chunks."""

import asyncio
from collections.abc import AsyncIterator

from promptsvc.engines.base import Delta, EngineEvent, EngineRequest, Finish


class MockEngine:
    def __init__(self, *, chunks: int = 4, chunk_delay: float = 0.0, max_chars: int = 8192) -> None:
        self._chunks = chunks
        self._delay = chunk_delay
        self._max_chars = max_chars

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        text = request.prompt[: self._max_chars]
        size = max(1, -(-len(text) // self._chunks))
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        for piece in pieces:
            if self._delay:
                await asyncio.sleep(self._delay)
            yield Delta(piece)
        yield Finish("stop", prompt_tokens=len(request.prompt.split()), completion_tokens=len(text.split()))
