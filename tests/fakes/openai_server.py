"""A fake OpenAI-compatible inference server that speaks the real wire protocol.

A small Starlette app served by uvicorn on 127.0.0.1 (a free port) in a background thread. It
implements `POST /v1/chat/completions`, `POST /v1/completions` (streamed as Server-Sent Events, or
as one JSON body when `stream` is false) and `GET /v1/models`, with OpenAI's response and chunk
shapes, and behaviours to provoke every failure an engine must handle::

    with FakeOpenAIServer(text="Hello there", tokens=2) as server:
        engine = OpenAIEngine(server.base_url)
        ...
        server.behaviour = Behaviour(error_status=503)  # later requests fail
        assert server.last_request.body["model"] == "m"
        assert server.last_request.wait() == "completed"

Every request is recorded (`server.requests`) with its headers, its JSON body and, once the
server is done with it, its outcome (see `RecordedRequest.outcome`), so tests can check both
what an engine sent and whether it hung up early.
"""

import asyncio
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog."

# What OpenAI answers for each status (type, code); vLLM-style bodies use the status as code.
_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    429: ("requests", "rate_limit_exceeded"),
}
_VLLM_TYPES = {400: "BadRequestError", 401: "Unauthorized", 404: "NotFoundError", 500: "InternalServerError"}


@dataclass(frozen=True)
class Behaviour:
    """How the server answers. Chunk counts (`cut_after`, `stall_after`, `stream_error_after`)
    count text chunks only, not the leading role chunk of a chat stream."""

    text: str = DEFAULT_TEXT
    tokens: int | None = None  # pieces `text` is split into; None: one per word (with its spacing)
    token_delay: float = 0.0  # seconds before each text chunk
    finish_reason: str = "stop"
    # Answer with this HTTP status and an error body instead of generating.
    error_status: int | None = None
    error_message: str | None = None  # default: a message like the real one for that status
    error_style: Literal["openai", "vllm"] = "openai"  # {"error": {...}} or {"object": "error", ...}
    # Send an in-stream error object (vLLM's shape, with this code) after K text chunks, then [DONE].
    stream_error_after: int | None = None
    stream_error_code: int = 500
    # Stop after K text chunks without finish_reason or [DONE]: drop the connection mid-body
    # (abruptly=True), or end the HTTP body cleanly (False).
    cut_after: int | None = None
    cut_abruptly: bool = True
    # Go silent for `stall_seconds` after K text chunks (a disconnect during the stall is recorded).
    stall_after: int | None = None
    stall_seconds: float = 0.0
    api_key: str | None = None  # when set, requests without "Authorization: Bearer <key>" get a 401
    models: tuple[str, ...] | None = None  # when set, any other `model` gets a 404 model_not_found
    crlf: bool = False  # frame events with \r\n, as sse-starlette servers (llama-cpp-python) do
    pings: bool = False  # send `: ping` comment lines between events, as sse-starlette does

    def pieces(self) -> list[str]:
        """The text chunks, whose concatenation is `text`."""
        if self.tokens is None:
            return re.findall(r"\s*\S+|\s+$", self.text) or [""]
        size = max(1, -(-len(self.text) // max(1, self.tokens)))
        return [self.text[i : i + size] for i in range(0, len(self.text), size)] or [""]


@dataclass
class RecordedRequest:
    """One request as the server saw it.

    `outcome` is "pending" while the server is handling it, then one of: "completed" (the whole
    answer, up to `[DONE]`, was sent), "rejected" (an HTTP error was returned), "stream_error"
    (an in-stream error was sent), "cut" (the server cut the stream, per `cut_after`),
    "disconnected" (the client hung up before the answer was complete), or "failed" (a bug here).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    outcome: str = "pending"
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float = 10.0) -> str:
        """The outcome once the server is done with the request (or "pending" after `timeout`)."""
        self._ended.wait(timeout)
        return self.outcome

    def _end(self, outcome: str) -> None:
        self.outcome = outcome
        self._ended.set()


class _CutConnection(Exception):
    """Raised inside a streaming body so that uvicorn drops the connection mid-response."""


class _HideCuts(logging.Filter):
    """Keeps uvicorn from logging a deliberate cut as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _CutConnection))


class FakeOpenAIServer:
    """The server; a context manager (or `start()`/`stop()`). `behaviour` may be replaced at any
    time and applies to requests that arrive afterwards; keyword arguments amend `behaviour`."""

    def __init__(self, behaviour: Behaviour | None = None, **changes: Any) -> None:
        self.behaviour = replace(behaviour or Behaviour(), **changes)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        uvicorn_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _HideCuts) for f in uvicorn_log.filters):
            uvicorn_log.addFilter(_HideCuts())
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        # log_config=None: leave the test process's logging configuration alone.
        config = uvicorn.Config(
            self.app, http="h11", lifespan="off", log_config=None, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop at once: open streams (a stall, say) are not waited for."""
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the fake OpenAI server is not running")
        return self._socket.getsockname()[1]

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as its base URL: `http://127.0.0.1:<port>/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- records ---------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError("the fake OpenAI server received no request")
            return self._requests[-1]

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- endpoints -------------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        names = self.behaviour.models or ("fake-model",)
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": "fake"} for name in names]
        return JSONResponse({"object": "list", "data": data})

    async def _completions(self, request: Request) -> Response:
        behaviour = self.behaviour
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        record = RecordedRequest(request.method, request.url.path, dict(request.headers), body)
        with self._lock:
            self._requests.append(record)

        chat = request.url.path.endswith("/chat/completions")
        rejection = self._rejection(behaviour, request, body, chat)
        if rejection is not None:
            record._end("rejected")
            return rejection

        model = body["model"]
        prompt_tokens = _count_prompt_tokens(body, chat)
        if not body.get("stream"):
            record._end("completed")
            return JSONResponse(_full_response(behaviour, model, chat, prompt_tokens))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = self._events(behaviour, record, model, chat, prompt_tokens, include_usage)
        return StreamingResponse(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    def _rejection(self, behaviour: Behaviour, request: Request, body: Any, chat: bool) -> Response | None:
        """The HTTP error to answer with, if any: auth, configured error, bad body, unknown model."""
        if behaviour.api_key and request.headers.get("authorization") != f"Bearer {behaviour.api_key}":
            return _error_response(behaviour, 401, "Incorrect API key provided.")
        if behaviour.error_status is not None:
            return _error_response(behaviour, behaviour.error_status, behaviour.error_message)
        if not isinstance(body, dict):
            return _error_response(behaviour, 400, "The request body is not valid JSON.")
        field_name = "messages" if chat else "prompt"
        if not isinstance(body.get("model"), str) or field_name not in body:
            return _error_response(behaviour, 400, f"'model' and '{field_name}' are required.")
        if behaviour.models is not None and body["model"] not in behaviour.models:
            return _error_response(behaviour, 404, f"The model `{body['model']}` does not exist.")
        return None

    async def _events(
        self,
        behaviour: Behaviour,
        record: RecordedRequest,
        model: str,
        chat: bool,
        prompt_tokens: int,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        """The SSE body. Records the outcome, including a client disconnect (the stream task is
        cancelled, or the generator closed, before the end)."""
        newline = "\r\n" if behaviour.crlf else "\n"
        chunk_id = f"{'chatcmpl' if chat else 'cmpl'}-fake{next(self._ids)}"
        created = int(time.time())
        usage_field = {"usage": None} if include_usage else {}

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {
                "id": chunk_id,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
                **usage_field,
                **extra,
            }
            return _frame(json.dumps(chunk, ensure_ascii=False), newline, behaviour.pings)

        def choice(text: str, finish_reason: str | None = None, role: bool = False) -> dict[str, Any]:
            if not chat:
                return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            delta = {"role": "assistant", "content": text} if role else ({"content": text} if text else {})
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        outcome = "failed"  # a bug in this generator; anything else sets its own outcome
        try:
            pieces = behaviour.pieces()
            if chat:
                yield event([choice("", role=True)])
            for sent, piece in enumerate(pieces):
                if sent == behaviour.stall_after:
                    await asyncio.sleep(behaviour.stall_seconds)
                if sent == behaviour.cut_after:
                    outcome = "cut"
                    if behaviour.cut_abruptly:
                        raise _CutConnection()
                    return
                if sent == behaviour.stream_error_after:
                    outcome = "stream_error"
                    yield _frame(json.dumps(_vllm_stream_error(behaviour.stream_error_code)), newline, False)
                    yield _frame("[DONE]", newline, False)
                    return
                if behaviour.token_delay:
                    await asyncio.sleep(behaviour.token_delay)
                yield event([choice(piece)])
            yield event([choice("", behaviour.finish_reason)])
            if include_usage:
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(pieces),
                    "total_tokens": prompt_tokens + len(pieces),
                }
                yield event([], usage=usage)
            yield _frame("[DONE]", newline, False)
            outcome = "completed"
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "disconnected"
            raise
        finally:
            record._end(outcome)


def _frame(data: str, newline: str, ping: bool) -> bytes:
    comment = f": ping{newline}{newline}" if ping else ""
    return f"{comment}data: {data}{newline}{newline}".encode()


def _count_prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    """A stand-in for a tokenizer: words in the prompt, or in the messages' string contents."""
    if chat:
        messages = body.get("messages") or []
        return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    return len(str(body.get("prompt", "")).split())


def _full_response(behaviour: Behaviour, model: str, chat: bool, prompt_tokens: int) -> dict[str, Any]:
    """The non-streamed answer (`stream` false)."""
    completion_tokens = len(behaviour.pieces())
    if chat:
        message = {"role": "assistant", "content": behaviour.text}
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None}
    else:
        choice = {"index": 0, "text": behaviour.text, "logprobs": None}
    choice["finish_reason"] = behaviour.finish_reason
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-fake",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error_response(behaviour: Behaviour, status: int, message: str | None) -> JSONResponse:
    message = message or _default_error_message(status)
    if behaviour.error_style == "vllm":
        kind = _VLLM_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError")
        body: dict[str, Any] = {
            "object": "error",
            "message": message,
            "type": kind,
            "param": None,
            "code": status,
        }
    else:
        kind, code = _OPENAI_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def _default_error_message(status: int) -> str:
    return {
        400: "Invalid request.",
        401: "Incorrect API key provided.",
        404: "The model does not exist.",
        408: "Request timed out.",
        429: "Rate limit reached for requests.",
        503: "The server is overloaded or not ready yet.",
    }.get(status, "The server had an error while processing your request.")


def _vllm_stream_error(code: int) -> dict[str, Any]:
    """What vLLM sends as a `data:` line when generation fails after the stream started."""
    kind = _VLLM_TYPES.get(code, "BadRequestError" if code < 500 else "InternalServerError")
    message = "Generation failed in the engine." if code >= 500 else "The request is invalid."
    return {"error": {"object": "error", "message": message, "type": kind, "param": None, "code": code}}
