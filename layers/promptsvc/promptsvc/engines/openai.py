"""The OpenAI-compatible engine: streams from vLLM, TGI, SGLang, llama.cpp server, Ollama or OpenAI.

It speaks the streaming `/chat/completions` and `/completions` APIs over Server-Sent Events (each
event's chunk read by engines/chunks.py, as the SageMaker engine's are) and maps every failure to
an `EngineError` whose `retryable` flag tells the runner whether another attempt may succeed.
Call and stall timeouts are the runner's job; this module only bounds the connection setup, so a
long prefill or a slow model is never cut short here.
"""

import functools
import json
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx

from promptsvc.engines.base import Delta, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.chunks import ChunkReader, error_message, truncate


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The CA-verifying TLS context every client shares (building one is the expensive part)."""
    return httpx.create_ssl_context()


_PATHS = {"chat": "/chat/completions", "completions": "/completions"}
# Body keys the engine owns: the model's sampling parameters may not override them.
_RESERVED = frozenset({"model", "messages", "prompt", "stream"})


class OpenAIEngine:
    """One engine for every model served by OpenAI-compatible servers.

    A model's `target["baseUrl"]` overrides `base_url` (e.g. one vLLM server per model), and
    `target["servedModelName"]` is the `model` sent (default: the catalog id).

    HTTP client lifetime: when `http` is injected, it is shared by every call and owned by the
    caller. Otherwise each `stream()` call opens and closes its own `httpx.AsyncClient`. An httpx
    client's connection pool is bound to the event loop it first ran in, and the consumer may run
    each batch in a fresh loop (`asyncio.run`), so a long-lived client would end up holding sockets
    of dead loops. A streamed generation needs its own connection anyway (HTTP/1.1 cannot
    multiplex). What is *not* cheap is the TLS context a new client builds from the CA bundle
    (about 20 ms of CPU, blocking the event loop a worker shares with 31 other streams), so every
    client shares one, built once.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._http = http
        # No read limit: the runner's stall timeout decides how long a silent stream may last.
        self._timeout = httpx.Timeout(connect=connect_timeout, read=None, write=30.0, pool=30.0)

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        """Yield a Delta per non-empty text chunk, then exactly one Finish.

        Closing the generator early (`aclose()`, or the consumer being cancelled) exits the
        `client.stream(...)` context, which closes the connection so the server stops generating.
        """
        url, body = self._prepare(request)
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        async with AsyncExitStack() as stack:
            client = self._http
            if client is None:
                client = await stack.enter_async_context(
                    httpx.AsyncClient(timeout=self._timeout, verify=_tls_context())
                )
            try:
                response = await stack.enter_async_context(
                    client.stream("POST", url, json=body, headers=headers, timeout=self._timeout)
                )
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
                raise EngineError(f"invalid engine URL {url!r}: {error}", retryable=False) from error
            except httpx.RequestError as error:  # connect errors and timeouts, the connection dropping
                raise EngineError(f"cannot reach {url}: {_describe(error)}", retryable=True) from error
            if response.status_code >= 300:
                raise await _status_error(response, url)

            reader = ChunkReader(url)
            try:
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server or gateway that ignored `stream` (or reports an error with a 200).
                    await response.aread()
                    for event in _deltas(reader, [response.text]):
                        yield event
                    reader.done = True
                else:
                    decoder = SSEDecoder()
                    async for chunk in response.aiter_bytes():
                        for event in _deltas(reader, decoder.feed(chunk)):
                            yield event
                        if reader.done:
                            break
                    else:
                        for event in _deltas(reader, decoder.close()):
                            yield event
            except httpx.RequestError as error:  # read errors, a body cut mid-chunk, bad encoding
                raise EngineError(f"stream from {url} broke: {_describe(error)}", retryable=True) from error
            yield _finish(reader, url)

    def _prepare(self, request: EngineRequest) -> tuple[str, dict[str, Any]]:
        """The URL and JSON body for one request; configuration errors are never retryable."""
        model = request.model
        path = _PATHS.get(model.api)
        if path is None:
            raise EngineError(f"model {model.id!r} has unsupported api {model.api!r}", retryable=False)
        base = str(model.target.get("baseUrl") or self._base_url or "").rstrip("/")
        if not base:
            raise EngineError(f"no baseUrl configured for model {model.id!r}", retryable=False)
        body: dict[str, Any] = {"model": model.target.get("servedModelName") or model.id}
        if model.api == "chat":
            body["messages"] = list(request.messages)
        else:
            body["prompt"] = request.prompt
        parameters = {**model.parameters, **request.parameters}
        body.update((key, value) for key, value in parameters.items() if key not in _RESERVED)
        body["stream"] = True
        body["stream_options"] = {**(parameters.get("stream_options") or {}), "include_usage": True}
        return base + path, body


def _deltas(reader: ChunkReader, payloads: list[str]) -> Iterator[Delta]:
    """The deltas of decoded SSE payloads, up to `[DONE]` (anything after it is ignored); each
    one before a bad payload is out before the error, as when they come in separate reads."""
    for data in payloads:
        if reader.done:
            return
        text = reader.read(data)
        if text:
            yield Delta(text)


def _finish(reader: ChunkReader, url: str) -> Finish:
    if not reader.done and reader.reason is None:
        raise EngineError(
            f"stream from {url} ended before the answer was complete (no finish_reason, no [DONE])",
            retryable=True,
        )
    return reader.finish()


_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEDecoder:
    """An incremental Server-Sent Events decoder yielding each event's `data`.

    It splits lines on bytes (CRLF, LF or CR, as the SSE spec says) rather than with
    `httpx.Response.aiter_lines`, which also splits on U+2028, U+0085 and friends: servers send JSON
    with raw non-ASCII text, so such a character in a token would cut a `data:` line in two.
    Comments (`:`) and fields other than `data` are ignored; multi-line data is joined with `\\n`.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._first = True

    def feed(self, chunk: bytes) -> list[str]:
        """The data of every event completed by `chunk`."""
        self._buffer += chunk
        events: list[str] = []
        start = 0
        for match in _LINE_END.finditer(self._buffer):
            if match.group() == b"\r" and match.end() == len(self._buffer):
                break  # maybe the first half of a CRLF split across chunks
            self._line(self._buffer[start : match.start()], events)
            start = match.end()
        self._buffer = self._buffer[start:]
        return events

    def close(self) -> list[str]:
        """At end of stream: an event missing its final blank line is still dispatched, so that a
        server ending with `data: [DONE]\\n` works; a truncated JSON payload fails to parse later."""
        events: list[str] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r"), events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[str]) -> None:
        line = raw.decode("utf-8", errors="replace")
        if self._first:
            line = line.removeprefix("\ufeff")
            self._first = False
        if not line:
            if self._data:
                events.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))


async def _status_error(response: httpx.Response, url: str) -> EngineError:
    """An HTTP error with the server's own message: OpenAI's `{"error": {"message": ...}}`, vLLM's
    `{"object": "error", "message": ...}`, FastAPI's `{"detail": ...}`, or the raw text."""
    try:
        await response.aread()
        text = response.text
    except httpx.HTTPError as error:
        text = f"(body unreadable: {_describe(error)})"
    try:
        detail = error_message(json.loads(text))
    except ValueError:
        detail = None
    reason = response.reason_phrase or ""
    message = f"HTTP {response.status_code} {reason}".rstrip() + f" from {url}: {truncate(detail or text)}"
    return EngineError.from_status(response.status_code, message)


def _describe(error: Exception) -> str:
    """httpx errors often have an empty message (e.g. a read timeout): name the type as well."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
