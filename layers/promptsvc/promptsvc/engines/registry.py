"""Picks the engine that serves a model: the catalog's choice, or one engine for every model."""

from promptsvc.domain.catalog import Model
from promptsvc.engines.base import Engine, EngineError
from promptsvc.engines.mock import MockEngine
from promptsvc.settings import Settings


class EngineRegistry:
    def __init__(self, settings: Settings) -> None:
        self._override = settings.engine
        self._engines: dict[str, Engine] = {
            "mock": MockEngine(
                chunks=settings.mock_chunks,
                chunk_delay=settings.mock_chunk_delay_seconds,
                max_chars=settings.mock_max_answer_chars,
            ),
        }

    def for_model(self, model: Model) -> Engine:
        name = self._override or model.engine
        try:
            return self._engines[name]
        except KeyError:
            raise EngineError(
                f"engine {name!r} for model {model.id!r} is not available in this deployment",
                retryable=False,
            ) from None
