"""The chunks an inference server streams, read by pydantic models: one parser for both engines.

engines/openai.py (vLLM, TGI, SGLang, llama.cpp, Ollama, OpenAI) and engines/sagemaker.py (the
LMI and TGI containers) take each chunk's JSON text out of their framing (SSE events, lines) and
hand it to a `ChunkReader`, so they read every chunk alike. A chunk is one of:

- an OpenAI `chat.completion.chunk`, a completions chunk, or the whole `chat.completion` of a
  server that ignored `stream`: the text of choice 0, its finish reason, the usage;
- a token of TGI's native stream or LMI's jsonlines: `{"token": {"text", "special"}, "details"}`;
- an error object: OpenAI's `{"error": {"message", "code"}}`, vLLM's `{"object": "error", ...}`
  (alone or wrapped in `{"error": ...}`), TGI's `{"error", "error_type"}`: an EngineError,
  retryable unless its code is a client error (or TGI calls it a validation error);
- `[DONE]`, the end.

Anything else is a *malformed chunk*, a **retryable** EngineError from either engine: the request
was accepted (a refused one gets an HTTP error status or an error object) and the answer was
streaming when the server, or a proxy in between, sent bytes no such server sends. That is a
fault of the moment (a cut and stitched body, a gateway's HTML page, an engine bug hit by this
generation) far more often than of the request; the prompt's retry budget bounds the retries.
"""

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from promptsvc.domain.validation import describe
from promptsvc.engines.base import EngineError, Finish, is_retryable_status

DONE = "[DONE]"
ERROR_TEXT_LIMIT = 300  # characters of a server's text quoted in an error
# TGI/LMI finish reasons in OpenAI's words.
_REASONS = {"eos_token": "stop", "stop_sequence": "stop"}


# Only what is read is modelled: servers add keys (ids, logprobs, tool calls) freely, and a model
# ignores the keys it does not name (pydantic's default).


class Usage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Content(BaseModel):
    """A choice's `delta` (streamed) or `message` (whole)."""

    content: str | None = None


class Choice(BaseModel):
    index: int = 0
    delta: Content | None = None
    message: Content | None = None
    text: str | None = None  # completions
    finish_reason: str | None = None

    def content(self) -> str:
        for part in (self.delta, self.message):
            if part is not None and part.content:
                return part.content
        return self.text or ""


class Token(BaseModel):
    text: str = ""
    special: bool = False  # TGI streams the end-of-sequence token too; it is not part of the text


class Details(BaseModel):
    finish_reason: str | None = None
    generated_tokens: int | None = None


class Chunk(BaseModel):
    choices: list[Choice] | None = None  # present: an OpenAI chunk; absent: a TGI/LMI token
    usage: Usage | None = None
    token: Token | None = None
    details: Details | None = None

    def choice(self) -> Choice | None:
        """Choice 0: `n > 1` is not used, but servers may still interleave other indexes."""
        return next((choice for choice in self.choices or () if choice.index == 0), None)


def finish_reason(reason: str) -> str:
    return _REASONS.get(reason, reason)


class ChunkReader:
    """Reads one answer's chunks, each given as its JSON text: the text of each, then the Finish.

    `source` names the server in errors (a URL, an endpoint).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.done = False  # `[DONE]` was read
        self.reason: str | None = None
        self._prompt_tokens: int | None = None  # None: not reported
        self._completion_tokens: int | None = None
        self._tokens = 0  # TGI/LMI tokens read, for a stream that gives no count

    def read(self, data: str) -> str:
        """The text of one chunk ("" if it has none); EngineError for an error or a malformed chunk."""
        if data.strip() == DONE:
            self.done = True
            return ""
        chunk = parse_chunk(data, self.source)
        if chunk.choices is None:
            return self._token(chunk)
        self._usage(chunk.usage)
        choice = chunk.choice()
        if choice is None:
            return ""
        if choice.finish_reason:
            self.reason = finish_reason(choice.finish_reason)
        return choice.content()

    def finish(self) -> Finish:
        completion = self._completion_tokens if self._completion_tokens is not None else self._tokens or None
        return Finish(self.reason or "stop", self._prompt_tokens, completion)

    def _token(self, chunk: Chunk) -> str:
        details = chunk.details or Details()
        if details.finish_reason:
            self.reason = finish_reason(details.finish_reason)
        if details.generated_tokens:
            self._completion_tokens = details.generated_tokens
        self._usage(chunk.usage)
        if chunk.token is None:
            return ""
        self._tokens += 1
        return "" if chunk.token.special else chunk.token.text

    def _usage(self, usage: Usage | None) -> None:
        if usage is not None:
            if usage.prompt_tokens is not None:
                self._prompt_tokens = usage.prompt_tokens
            if usage.completion_tokens is not None:
                self._completion_tokens = usage.completion_tokens


def parse_chunk(data: str, source: str) -> Chunk:
    """One chunk; EngineError for an error object, or (retryable) for a malformed chunk."""
    try:
        raw = json.loads(data)
    except ValueError:
        raise malformed(source, truncate(data)) from None
    if not isinstance(raw, dict):
        raise malformed(source, truncate(data))
    if raw.get("error") or raw.get("object") == "error":
        raise chunk_error(raw, source)
    try:
        return Chunk.model_validate(raw)
    except ValidationError as error:
        raise malformed(source, describe(error.errors(include_url=False))) from None


def malformed(source: str, detail: str) -> EngineError:
    return EngineError(f"malformed stream chunk from {source}: {detail}", retryable=True)


def chunk_error(data: dict[str, Any], source: str) -> EngineError:
    """The error object a server sent for its answer: retryable unless its code is a client error."""
    error = data.get("error") or data  # vLLM's `{"object": "error", ...}` is the error itself
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]  # vLLM wraps its ErrorResponse in {"error": ...}
    code = error.get("code") if isinstance(error, dict) else data.get("code")
    status = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
    if status is not None and 400 <= status < 600:
        retryable = is_retryable_status(status)
    else:  # TGI's error types: overloaded, generation, incomplete_generation, validation
        retryable = data.get("error_type") != "validation"
    detail = error_message(data) or json.dumps(data)
    label = f"error {code}" if code is not None else "error"
    return EngineError(f"{label} from {source}: {truncate(detail)}", retryable=retryable, status_code=status)


def error_message(body: Any) -> str | None:
    """The message of an error body: OpenAI's `{"error": {"message"}}`, vLLM's `{"message"}`,
    FastAPI's `{"detail"}`, TGI's `{"error": "..."}`."""
    if isinstance(body, str):
        return body or None
    if not isinstance(body, dict):
        return None
    for key in ("error", "message", "detail"):
        value = body.get(key)
        if isinstance(value, dict):
            found = error_message(value)
            if found:
                return found
        elif isinstance(value, str) and value:
            return value
        elif isinstance(value, list) and value:
            return json.dumps(value)
    return None


def truncate(text: str) -> str:
    text = text.strip()
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 3] + "..."
