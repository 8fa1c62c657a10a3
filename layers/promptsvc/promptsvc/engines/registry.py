"""Picks the engine that serves a model: the catalog's choice, or one engine for every model."""

from collections.abc import Callable, Mapping

from promptsvc.domain.catalog import Model
from promptsvc.engines.base import Engine, EngineError
from promptsvc.settings.engines import EngineSettings


def _mock(settings: EngineSettings) -> Engine:
    from promptsvc.engines.mock import MockEngine, MockFaults

    mock = settings.mock
    faults = MockFaults(
        seed=mock.mock_fault_seed,
        error_rate=mock.mock_error_rate,
        error_codes=tuple(int(code) for code in mock.mock_error_codes.split(",") if code.strip()),
        stall_rate=mock.mock_stall_rate,
        cut_rate=mock.mock_cut_rate,
        kill_rate=mock.mock_kill_rate,
        slow_first_token_rate=mock.mock_slow_first_token_rate,
        slow_first_token_seconds=mock.mock_slow_first_token_seconds,
        log_file=mock.mock_attempt_log,
    )
    return MockEngine(
        chunks=mock.mock_chunks,
        chunk_delay=mock.mock_chunk_delay_seconds,
        max_chars=mock.mock_max_answer_chars,
        faults=faults,
    )


def _openai(settings: EngineSettings) -> Engine:
    from promptsvc.engines.openai import OpenAIEngine

    return OpenAIEngine(settings.openai_base_url, settings.openai_api_key or None)


def _sagemaker(settings: EngineSettings) -> Engine:
    from promptsvc.engines.sagemaker import SageMakerEngine

    return SageMakerEngine(streaming=settings.sagemaker_streaming)


def _sagemaker_async(settings: EngineSettings) -> Engine:
    from promptsvc.engines.sagemaker_async import SageMakerAsyncEngine

    return SageMakerAsyncEngine(
        settings.sagemaker_async_bucket,
        request_ttl_seconds=settings.sagemaker_async_request_ttl_seconds,
        default_endpoint=settings.sagemaker_async_endpoint,
    )


FACTORIES: dict[str, Callable[[EngineSettings], Engine]] = {
    "mock": _mock,
    "openai": _openai,
    "sagemaker": _sagemaker,
    "sagemaker-async": _sagemaker_async,
}


class EngineRegistry:
    """Engines are made on first use (an ECS worker never imports what only Lambda uses), unless
    given by name (`engines`: e.g. a test's scripted engine as "mock")."""

    def __init__(self, settings: EngineSettings, engines: Mapping[str, Engine] | None = None) -> None:
        self._settings = settings
        self._engines: dict[str, Engine] = dict(engines or {})

    def for_model(self, model: Model) -> Engine:
        name = self._settings.engine or model.engine
        if name not in self._engines:
            factory = FACTORIES.get(name)
            if factory is None:
                raise EngineError(
                    f"engine {name!r} for model {model.id!r} is not available in this deployment",
                    retryable=False,
                )
            self._engines[name] = factory(self._settings)
        return self._engines[name]
