"""The SageMaker engine: a real-time endpoint running a Hugging Face LLM container (LMI or TGI).

Streaming (the default) calls InvokeEndpointWithResponseStream. Its response is a botocore
EventStream of `{"PayloadPart": {"Bytes": ...}}` events whose bytes are the container's own
streaming body, cut anywhere: parts may split a line (even a UTF-8 character) or carry several,
so the bytes are buffered and split on newlines. Three line formats are understood:

- the Messages API of LMI and TGI (`model.api == "chat"`): SSE lines
  `data: {"choices":[{"delta":{"content":...},"finish_reason":...}],"usage":...}`, `data: [DONE]`;
- TGI's native stream (`api` "completions" or "tgi"):
  `data:{"token":{"text":...,"special":...},"generated_text":...,"details":{"finish_reason":...}}`;
- LMI's jsonlines stream: `{"token": {"text": ...}, "details"?: {...}}` lines.

Each line's chunk is read by engines/chunks.py, as the OpenAI engine's are: a malformed one is a
retryable EngineError from both.

Non-streaming (`SageMakerEngine(streaming=False)`) calls InvokeEndpoint and reads a
chat.completion object, `[{"generated_text": ...}]` (TGI) or `{"generated_text": ...}` (LMI).

boto3 blocks, so each call runs in its own daemon thread (not the default executor, whose few
workers a batch of long streams would hold for minutes) that hands events to the event loop
through an asyncio.Queue. Closing the generator early (aclose(), cancellation, a timeout) tells
that thread to stop, shuts the socket down so a read blocked in it returns at once, and the thread
closes the EventStream, which releases the connection. A thread can only stay blocked where there
is no stream yet to shut down (the invoke itself), and there the client's read timeout bounds it.

Timeouts are the caller's: the consumer bounds each event by `model.stall_timeout` and the call
by `model.call_timeout`, and the cancellation that follows releases the stream as above.

The catalog entry's `target` holds `endpointName` and optionally `inferenceComponentName`,
`modelName` (sent as the Messages API `model`, which old TGI releases require) and `accept`.
"""

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from promptsvc.adapters import clients
from promptsvc.engines.base import Delta, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.chunks import ChunkReader, chunk_error, finish_reason

# Error codes worth a retry whatever their HTTP status (throttling is a 400 in some AWS services).
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalDependencyException",
        "ModelNotReadyException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# Failures reported inside a started stream: the model or SageMaker broke off; a new try may work.
_STREAM_ERRORS = frozenset({"ModelStreamError", "InternalStreamFailure"})

# Sampling parameter names: the Messages API speaks OpenAI's, TGI/LMI's native schema its own.
_TO_CHAT = {"max_new_tokens": "max_tokens"}
_TO_NATIVE = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens"}


class SageMakerEngine:
    def __init__(
        self,
        *,
        streaming: bool = True,
        client: Callable[[], Any] = lambda: clients.client("sagemaker-runtime"),
    ) -> None:
        self._streaming = streaming
        self._client = client

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        model = request.model
        endpoint = model.target.get("endpointName")
        if not endpoint:
            raise EngineError(f"model {model.id!r} has no target.endpointName", retryable=False)
        kwargs: dict[str, Any] = {
            "EndpointName": endpoint,
            "Body": json.dumps(request_body(request, stream=self._streaming)).encode(),
            "ContentType": "application/json",
            "Accept": model.target.get("accept")
            or ("text/event-stream" if self._streaming else "application/json"),
        }
        if model.target.get("inferenceComponentName"):
            kwargs["InferenceComponentName"] = model.target["inferenceComponentName"]
        events = self._stream if self._streaming else self._invoke
        # aclosing: closing this generator early closes the inner one now, not when it is collected.
        async with contextlib.aclosing(events(endpoint, kwargs)) as inner:
            async for event in inner:
                yield event

    async def _stream(self, endpoint: str, kwargs: dict[str, Any]) -> AsyncGenerator[EngineEvent, None]:
        call = _Call(endpoint, lambda call: _read_stream(call, self._client(), kwargs))
        parser = StreamParser(f"SageMaker endpoint {endpoint!r}")
        try:
            while True:
                item = await call.next(endpoint)
                if item is _END:
                    break
                for text in parser.feed(_payload(item, endpoint)):
                    yield Delta(text)
            for text in parser.close():
                yield Delta(text)
            yield parser.finish()
        finally:
            call.close()

    async def _invoke(self, endpoint: str, kwargs: dict[str, Any]) -> AsyncGenerator[EngineEvent, None]:
        call = _Call(endpoint, lambda call: call.put(self._client().invoke_endpoint(**kwargs)["Body"].read()))
        try:
            body = await call.next(endpoint)
        finally:
            call.close()
        text, finish = parse_response(body, endpoint)
        if text:
            yield Delta(text)
        yield finish


def request_body(request: EngineRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON the container gets: the Messages API for `chat`, TGI's native schema otherwise."""
    model = request.model
    if model.api == "chat":
        messages = list(request.messages) or [{"role": "user", "content": request.prompt}]
        body: dict[str, Any] = {"model": model.target["modelName"]} if model.target.get("modelName") else {}
        body.update({_TO_CHAT.get(name, name): value for name, value in request.parameters.items()})
        body.update(messages=messages, stream=stream)
        return body
    if model.api in ("completions", "tgi"):
        parameters = {_TO_NATIVE.get(name, name): value for name, value in request.parameters.items()}
        parameters.setdefault("details", True)  # the finish reason and token count
        return {"inputs": request.prompt, "parameters": parameters, "stream": stream}
    raise EngineError(
        f"model {model.id!r}: the SageMaker engine does not speak api {model.api!r}", retryable=False
    )


class StreamParser:
    """Turns the container's streaming bytes, fed in any cuts, into text pieces and a Finish: the
    lines are cut here, each line's chunk is read by engines/chunks.py (as the OpenAI engine's)."""

    def __init__(self, source: str = "the endpoint") -> None:
        self._buffer = b""
        self._reader = ChunkReader(source)

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        if b"\n" not in data:
            return []
        *lines, self._buffer = self._buffer.split(b"\n")
        return [text for line in lines for text in self._line(line)]

    def close(self) -> list[str]:
        """The pieces of a last line that ended without a newline."""
        rest, self._buffer = self._buffer, b""
        return self._line(rest)

    def finish(self) -> Finish:
        return self._reader.finish()

    def _line(self, raw: bytes) -> list[str]:
        line = raw.decode("utf-8", errors="replace").strip()  # whole lines: UTF-8 sequences are whole
        if not line or line.startswith(":"):  # blank separator, SSE comment (keep-alive)
            return []
        if line.startswith("data:"):
            line = line[5:].strip()
        elif line.startswith(("event:", "id:", "retry:")):
            return []
        text = self._reader.read(line)
        return [text] if text else []


def parse_response(body: bytes, endpoint: str = "") -> tuple[str, Finish]:
    """The text and Finish of a non-streaming answer."""
    try:
        data = json.loads(body)
    except ValueError:
        raise EngineError(
            f"endpoint {endpoint!r} answered non-JSON: {body[:200]!r}", retryable=False
        ) from None
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict) and data.get("error"):
        raise chunk_error(data, f"SageMaker endpoint {endpoint!r}")
    if isinstance(data, dict) and data.get("choices"):
        choice = data["choices"][0]
        text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
        usage = data.get("usage") or {}
        reason = choice.get("finish_reason") or "stop"
        finish = Finish(
            finish_reason(reason),
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
        )
        return text, finish
    if isinstance(data, dict) and isinstance(data.get("generated_text"), str):
        details = data.get("details") or {}
        reason = details.get("finish_reason") or "stop"
        return data["generated_text"], Finish(
            finish_reason(reason), completion_tokens=_count(details.get("generated_tokens"))
        )
    raise EngineError(f"endpoint {endpoint!r} answered an unknown shape: {body[:200]!r}", retryable=False)


def _count(value: object) -> int | None:
    """A token count the server reported, or None when it did not."""
    return int(value) if isinstance(value, int | float | str) and str(value).isdigit() else None


def engine_error(error: BaseException, endpoint: str) -> EngineError:
    """The EngineError for whatever boto3 raised."""
    if isinstance(error, EngineError):
        return error
    where = f"SageMaker endpoint {endpoint!r}"
    if isinstance(error, ClientError):  # also EventStreamError, raised for in-stream exceptions
        response: Any = error.response
        code = response.get("Error", {}).get("Code", "")
        message = response.get("Error", {}).get("Message", "") or str(error)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "ModelError":
            original = response.get("OriginalStatusCode")
            detail = response.get("OriginalMessage") or message
            if isinstance(original, int):
                return EngineError.from_status(original, f"{where}: model answered {original}: {detail}")
            return EngineError(f"{where}: ModelError: {detail}", retryable=True, status_code=status)
        if code in _STREAM_ERRORS or code in _RETRYABLE_CODES:
            return EngineError(f"{where}: {code}: {message}", retryable=True, status_code=status)
        if isinstance(status, int) and status >= 400:
            return EngineError.from_status(status, f"{where}: {code}: {message}")
        return EngineError(f"{where}: {code}: {message}", retryable=True, status_code=status)
    if isinstance(error, BotoConnectionError | HTTPClientError | Urllib3Error | OSError):
        # connection refused or reset, connect or read timeout, a body cut short
        return EngineError(f"{where}: {type(error).__name__}: {error}", retryable=True)
    if isinstance(error, ParamValidationError | NoRegionError | NoCredentialsError):
        return EngineError(f"{where}: {error}", retryable=False)
    if isinstance(error, BotoCoreError):
        return EngineError(f"{where}: {type(error).__name__}: {error}", retryable=True)
    return EngineError(f"{where}: {type(error).__name__}: {error}", retryable=True)


def _payload(event: Any, endpoint: str) -> bytes:
    """The bytes of a PayloadPart; older botocore hands in-stream exceptions over as events."""
    if "PayloadPart" in event:
        return event["PayloadPart"].get("Bytes") or b""
    for code in _STREAM_ERRORS:
        if code in event:
            detail = event[code] or {}
            message = detail.get("Message") or detail.get("ErrorCode") or ""
            raise EngineError(f"SageMaker endpoint {endpoint!r}: {code}: {message}", retryable=True)
    return b""  # an event type this engine does not know: nothing to say


def _read_stream(call: "_Call", client: Any, kwargs: dict[str, Any]) -> None:
    """In the worker thread: invoke, then pass on every event until the end or `close()`."""
    stream = client.invoke_endpoint_with_response_stream(**kwargs)["Body"]
    try:
        if not call.attach(stream):
            return
        for event in stream:
            if call.closing:
                return
            call.put(event)
    finally:
        stream.close()


# --- a blocking call in a thread, its results on an asyncio.Queue ---------------------------------

_END = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Call:
    """Runs `work` in a daemon thread; `work` hands results over with `put`. `next()` awaits them
    on the loop; `close()` asks the thread to stop and unblocks a read it is stuck in."""

    def __init__(self, endpoint: str, work: Callable[["_Call"], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._finished = False  # the thread said its last word (the end, or an error)
        self._thread = threading.Thread(
            target=self._run, args=(work,), name=f"sagemaker-{endpoint}", daemon=True
        )
        self._thread.start()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def _run(self, work: Callable[["_Call"], None]) -> None:
        try:
            work(self)
        except BaseException as error:
            self.put(_Raised(error))
        else:
            self.put(_END)

    def put(self, item: Any) -> None:
        if self._closing.is_set():
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._closing.set()

    def attach(self, stream: Any) -> bool:
        """Remember the open stream, so `close()` can interrupt it; False if already closing."""
        with self._lock:
            if self._closing.is_set():
                return False
            self._stream = stream
            return True

    async def next(self, endpoint: str) -> Any:
        item = await self._queue.get()
        self._finished = item is _END or isinstance(item, _Raised)
        if isinstance(item, _Raised):
            raise engine_error(item.error, endpoint) from item.error
        return item

    def close(self) -> None:
        """Never blocks: closing the stream here could wait on the reader's buffer lock, so the
        socket is shut down instead (a blocked read returns), and the thread closes the stream."""
        self._closing.set()
        with self._lock:
            stream = self._stream
        if stream is not None and not self._finished:  # finished: the thread closed it already
            _shutdown(stream)


def _shutdown(stream: Any) -> None:
    """shutdown(SHUT_RD) the socket under a botocore EventStream (urllib3 >= 2.3 has the method;
    without it the reader wakes at the next part or at the client's read timeout)."""
    shutdown = getattr(getattr(stream, "_raw_stream", None), "shutdown", None)
    if shutdown is not None:
        # Errors: the stream was closed meanwhile, or its connection already went back to the pool.
        with contextlib.suppress(OSError, ValueError, RuntimeError, TypeError):
            shutdown()
