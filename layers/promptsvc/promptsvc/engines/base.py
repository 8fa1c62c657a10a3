"""The engine interface every inference backend implements."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from promptsvc.domain.catalog import Model


@dataclass(frozen=True)
class EngineRequest:
    model: Model
    prompt: str  # the rendered prompt (template applied)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finish:
    reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


EngineEvent = Delta | Finish


class EngineError(Exception):
    """An engine call failed. `retryable` decides between errored (retry) and abandoned."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


class Engine(Protocol):
    def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        """Yield Delta events as text arrives, then exactly one Finish."""
        ...
