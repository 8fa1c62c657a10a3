"""The engine interface every inference backend implements."""

from collections.abc import AsyncIterator
from typing import Any, Protocol

import msgspec

from promptsvc.domain.catalog import Model

# The parameters of a stored prompt an engine is sent: OpenAI chat-completion request keys that
# vLLM, TGI and the SageMaker containers understand. The rest of a stored prompt (guardrails,
# plugins, thinking, ...) is kept and shown, and counts in the cache key, but is not sent: a server
# that rejects unknown keys (TGI answers 422) would otherwise fail every run.
CALL_PARAMETERS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "n",
        "response_format",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)


class EngineRequest(msgspec.Struct, frozen=True):
    """One generation. Chat-style APIs (`model.api == "chat"`) send `messages`; completion-style
    APIs send `prompt`, which is the user's prompt already rendered with the model's template."""

    model: Model
    prompt: str
    messages: tuple[dict[str, Any], ...] = ()
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class Delta(msgspec.Struct, frozen=True):
    text: str


class Finish(msgspec.Struct, frozen=True):
    """The end of an answer: the finish reason, and the tokens the server counted (None: it did
    not say; the consumer then estimates them, `domain.usage`)."""

    reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


EngineEvent = Delta | Finish


class EngineError(Exception):
    """An engine call failed. `retryable` decides between errored (retry) and abandoned."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code

    @classmethod
    def from_status(cls, status_code: int, message: str) -> "EngineError":
        """Throttling (429), timeouts (408) and server errors (5xx) may succeed on retry; other
        client errors (a bad request, an unknown model or endpoint) never will."""
        return cls(message, retryable=is_retryable_status(status_code), status_code=status_code)


def is_retryable_status(status_code: int) -> bool:
    return status_code in (408, 429) or status_code >= 500


class Engine(Protocol):
    def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        """Yield Delta events as text arrives, then exactly one Finish."""
        ...
