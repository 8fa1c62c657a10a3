"""A fake SageMaker Runtime that speaks the real wire protocol, for a real boto3 client.

It is a stdlib `ThreadingHTTPServer` on 127.0.0.1 (a free port) in a background thread, answering
the two operations of the `runtime.sagemaker` rest-json protocol (API 2017-05-13) as the service
does, with the body a Hugging Face LLM container (LMI or TGI) behind the endpoint would produce::

    with FakeSageMakerRuntime(Behaviour(text="Hello there", format="tgi", part_size=3)) as server:
        sm = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
        ...
        assert server.last.endpoint == "my-endpoint" and server.last.json["stream"] is True
        assert server.last.wait().disconnected is False

The wire protocol (requests are not signature-checked):

- `POST /endpoints/{EndpointName}/invocations` (InvokeEndpoint): 200 with the container's body
  (`Content-Type: application/json`, `x-Amzn-Invoked-Production-Variant`).
- `POST /endpoints/{EndpointName}/invocations-response-stream` (InvokeEndpointWithResponseStream):
  200, `Content-Type: application/vnd.amazon.eventstream`, chunked transfer encoding, one binary
  event-stream message (`encode_message`) per PayloadPart (`:event-type: PayloadPart`) whose
  payload is a piece of the container's streaming body; a mid-stream failure is an exception
  message (`:message-type: exception`, `:exception-type: ModelStreamError`, JSON payload
  `{"Message", "ErrorCode"}`) after which the body ends.
- Errors as the service sends them: the HTTP status, `x-amzn-ErrorType: <Code>` and a JSON body
  `{"message": ...}`; a ModelError (424) carries `OriginalStatusCode`, `OriginalMessage` and
  `LogStreamArn` (see the `throttling`, `validation_error`, `model_error`, ... helpers).

The container bodies (`Behaviour.format`):

- `messages`: the Messages API (OpenAI chat schema) of LMI and TGI: SSE lines
  `data: {"choices":[{"delta":{"content":...},"finish_reason":...}]}`, a usage chunk, `data: [DONE]`;
  non-streaming, one `chat.completion` object.
- `tgi`: TGI's native stream, `data:{"token":{"text":...,"special":false},"generated_text":null,
  "details":null}` per token, the last one (an EOS special token when the model stopped) with
  `generated_text` and, if the request asked for `details`, `details`; non-streaming,
  `[{"generated_text": ...}]`.
- `jsonlines`: LMI's default stream, `{"token": {"text": ...}}` lines, the last (an empty-text
  end-of-sequence token when the model stopped) with `generated_text` (and `details` if asked);
  non-streaming, `{"generated_text": ...}`.

Every request is recorded (`server.requests`, `server.last`) with its endpoint, lower-cased
headers (`accept` and `inference_component` read the X-Amzn-SageMaker-* ones) and body, and, once the
server is done with it (`wait()`), how many PayloadParts it sent and whether the client hung up.
"""

import json
import re
import select
import socket
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import unquote

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog."
ACCOUNT = "123456789012"
REGION = "us-east-1"

Format = Literal["messages", "tgi", "jsonlines"]


@dataclass(frozen=True)
class HttpError:
    """An error answer: `code` goes in x-amzn-ErrorType, `fields` are extra JSON body members."""

    status: int
    code: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def throttling(status: int = 429) -> HttpError:
    return HttpError(status, "ThrottlingException", "Rate exceeded")


def validation_error(message: str = "Invalid request") -> HttpError:
    return HttpError(400, "ValidationError", message)


def endpoint_not_found(endpoint: str) -> HttpError:
    return validation_error(f"Endpoint {endpoint} of account {ACCOUNT} not found.")


def service_unavailable() -> HttpError:
    return HttpError(503, "ServiceUnavailable", "The service is unavailable. Try your call again.")


def internal_failure() -> HttpError:
    return HttpError(500, "InternalFailure", "An internal failure occurred.")


def model_error(original_status: int, original_message: str = '{"error": "boom"}') -> HttpError:
    """The container answered `original_status`: SageMaker relays it as a 424 ModelError."""
    kind = "client" if original_status < 500 else "server"
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/fake"
    message = (
        f"Received {kind} error ({original_status}) from primary with message "
        f'"{original_message}". See the CloudWatch log group for more information.'
    )
    return HttpError(
        424,
        "ModelError",
        message,
        {
            "OriginalStatusCode": original_status,
            "OriginalMessage": original_message,
            "LogStreamArn": log_group,
        },
    )


@dataclass(frozen=True)
class Behaviour:
    """How the endpoint answers. Part counts (`stream_error_after`, `stall_after`) count PayloadParts."""

    text: str = DEFAULT_TEXT
    tokens: Sequence[str] | None = None  # the pieces the model emits; None: one per word (with spacing)
    format: Format = "messages"
    finish_reason: Literal["stop", "length"] = "stop"  # TGI/LMI say eos_token / length
    prompt_tokens: int = 7
    usage: bool = True  # messages format: end the stream with a usage chunk
    # None: one PayloadPart per line/event, as containers flush. An int or sizes (cycled): cut the
    # whole body into parts of these many bytes, splitting lines (and UTF-8 characters) anywhere
    # and joining several lines in one part.
    part_size: int | Sequence[int] | None = None
    part_delay: float = 0.0  # seconds before each PayloadPart
    error: HttpError | None = None  # answer this instead, for either operation
    stream_error_after: int | None = None  # send K parts, then a mid-stream exception
    stream_error: str = "ModelStreamError"  # or "InternalStreamFailure"
    # Send K parts (streaming; nothing at all for InvokeEndpoint), then hang until the client goes
    # away or the server stops.
    stall_after: int | None = None

    def pieces(self) -> list[str]:
        if self.tokens is not None:
            assert "".join(self.tokens) == self.text, "tokens must spell text"
            return list(self.tokens)
        return [piece for piece in re.findall(r"\S*\s*", self.text) if piece]


@dataclass
class Received:
    """One request as the server saw it, and (after `wait()`) what became of it."""

    operation: str  # "InvokeEndpoint" | "InvokeEndpointWithResponseStream"
    endpoint: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    parts_sent: int = 0
    disconnected: bool = False  # the client hung up before the answer was complete
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def accept(self) -> str | None:
        """The Accept the caller asked for (the stream operation sends it as X-Amzn-SageMaker-Accept)."""
        if self.operation == "InvokeEndpointWithResponseStream":
            return self.headers.get("x-amzn-sagemaker-accept")
        return self.headers.get("accept")

    @property
    def inference_component(self) -> str | None:
        return self.headers.get("x-amzn-sagemaker-inference-component")

    def wait(self, timeout: float = 10.0) -> "Received":
        """This record once the server is done answering (a generous bound, not a timing check)."""
        if not self.done.wait(timeout):
            raise AssertionError(f"the fake still answers {self.operation} after {timeout}s")
        return self


# --- the AWS event-stream encoding ------------------------------------------------------------


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: total length, headers length, prelude CRC32, headers (all of type
    7, string), payload, message CRC32; integers big-endian."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += bytes([len(raw_name)]) + raw_name + b"\x07" + len(raw_value).to_bytes(2, "big") + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + encoded + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def payload_part(data: bytes) -> bytes:
    headers = {
        ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }
    return encode_message(headers, data)


def stream_exception(kind: str, message: str, error_code: str = "ModelInvocationTimeExceeded") -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    body = (
        {"Message": message, "ErrorCode": error_code} if kind == "ModelStreamError" else {"Message": message}
    )
    return encode_message(headers, json.dumps(body).encode())


# --- what the container says ----------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def stream_body(behaviour: Behaviour, request: Any) -> list[bytes]:
    """The container's streaming body as the units it flushes (lines or SSE events)."""
    pieces = behaviour.pieces()
    details = bool(isinstance(request, dict) and (request.get("parameters") or {}).get("details"))
    if behaviour.format == "messages":
        events = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            choice = {
                "index": 0,
                "delta": {"role": "assistant", "content": piece},
                "logprobs": None,
                "finish_reason": behaviour.finish_reason if last else None,
            }
            events.append(_chat_chunk([choice]))
        if not pieces:
            events.append(_chat_chunk([{"index": 0, "delta": {}, "finish_reason": behaviour.finish_reason}]))
        if behaviour.usage:
            events.append(_chat_chunk([], usage=_usage(behaviour, len(pieces))))
        return [f"data: {_dumps(event)}\n\n".encode() for event in events] + [b"data: [DONE]\n\n"]

    reason = "eos_token" if behaviour.finish_reason == "stop" else "length"
    tokens = [
        {"id": 100 + i, "text": piece, "logprob": -0.25, "special": False} for i, piece in enumerate(pieces)
    ]
    if behaviour.finish_reason == "stop" or not tokens:
        tokens.append({"id": 2, "text": "</s>", "logprob": -0.01, "special": True})
    lines = []
    for index, token in enumerate(tokens):
        last = index == len(tokens) - 1
        if behaviour.format == "tgi":
            line: dict[str, Any] = {"index": index, "token": token, "generated_text": None, "details": None}
        else:  # LMI jsonlines: no special flag; it skips special tokens' text when detokenizing
            text = "" if token["special"] else token["text"]
            line = {"token": {"id": token["id"], "text": text, "log_prob": token["logprob"]}}
        if last:
            line["generated_text"] = behaviour.text
            if details:
                line["details"] = {"finish_reason": reason, "generated_tokens": len(tokens), "seed": None}
        lines.append(line)
    if behaviour.format == "tgi":
        return [f"data:{_dumps(line)}\n\n".encode() for line in lines]
    return [f"{_dumps(line)}\n".encode() for line in lines]


def invocation_body(behaviour: Behaviour, request: Any) -> bytes:
    """The container's non-streaming answer."""
    pieces = behaviour.pieces()
    if behaviour.format == "messages":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": behaviour.text},
            "logprobs": None,
            "finish_reason": behaviour.finish_reason,
        }
        answer: Any = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "fake",
            "choices": [choice],
            "usage": _usage(behaviour, len(pieces)),
        }
    else:
        answer = {"generated_text": behaviour.text}
        if isinstance(request, dict) and (request.get("parameters") or {}).get("details"):
            reason = "eos_token" if behaviour.finish_reason == "stop" else "length"
            answer["details"] = {"finish_reason": reason, "generated_tokens": len(pieces), "seed": None}
        if behaviour.format == "tgi":
            answer = [answer]
    return _dumps(answer).encode()


def _chat_chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _usage(behaviour: Behaviour, completion_tokens: int) -> dict[str, int]:
    total = behaviour.prompt_tokens + completion_tokens
    return {
        "prompt_tokens": behaviour.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
    }


def cut(units: list[bytes], part_size: int | Sequence[int] | None) -> list[bytes]:
    """PayloadParts: the units as they are, or their bytes re-cut into parts of `part_size`."""
    if part_size is None:
        return units
    sizes = [part_size] if isinstance(part_size, int) else list(part_size)
    assert sizes and all(size > 0 for size in sizes)
    data, parts, index = b"".join(units), [], 0
    while data:
        size = sizes[index % len(sizes)]
        parts.append(data[:size])
        data, index = data[size:], index + 1
    return parts


# --- the server -----------------------------------------------------------------------------------

_PATH = re.compile(r"^/endpoints/([^/]+)/(invocations|invocations-response-stream)$")


class FakeSageMakerRuntime:
    """The fake service. `behaviour` answers every endpoint; with `endpoints`, only those names
    exist (each with its own behaviour) and others get the real "not found" ValidationError.
    `queue(...)` makes the next requests answer with the given behaviours, in order."""

    def __init__(self, behaviour: Behaviour | None = None, *, endpoints: dict[str, Behaviour] | None = None):
        self.behaviour = behaviour or Behaviour()
        self.endpoints = endpoints
        self.requests: list[Received] = []
        self._queued: list[Behaviour] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-sagemaker",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def last(self) -> Received:
        assert self.requests, "no request received"
        return self.requests[-1]

    def queue(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queued.extend(behaviours)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases stalls
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def _receive(self, received: Received) -> Behaviour | HttpError:
        with self._lock:
            self.requests.append(received)
            if self._queued:
                return self._queued.pop(0)
        if self.endpoints is None:
            return self.behaviour
        return self.endpoints.get(received.endpoint) or endpoint_not_found(received.endpoint)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as botocore's pool expects
    timeout = 60  # an idle kept-alive connection does not hold its thread forever
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake: FakeSageMakerRuntime = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = _PATH.match(self.path.split("?")[0])
        if match is None:
            self._error(HttpError(404, "UnknownOperationException", f"no operation at {self.path}"))
            return
        streaming = match[2] == "invocations-response-stream"
        received = Received(
            operation="InvokeEndpointWithResponseStream" if streaming else "InvokeEndpoint",
            endpoint=unquote(match[1]),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        try:
            behaviour = fake._receive(received)
            if isinstance(behaviour, HttpError):
                self._error(behaviour)
            elif behaviour.error is not None:
                self._error(behaviour.error)
            elif streaming:
                self._stream(behaviour, received)
            elif behaviour.stall_after is not None:
                received.disconnected = self._stall()
                self.close_connection = True
            else:
                self._respond(200, invocation_body(behaviour, _json_or_none(body)), "application/json")
        except OSError:  # the client went away while we wrote
            received.disconnected = True
            self.close_connection = True
        finally:
            received.done.set()

    def _stream(self, behaviour: Behaviour, received: Received) -> None:
        parts = cut(stream_body(behaviour, _json_or_none(received.body)), behaviour.part_size)
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("X-Amzn-SageMaker-Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(len(parts) + 1):
            if behaviour.stream_error_after is not None and index == min(
                behaviour.stream_error_after, len(parts)
            ):
                self._chunk(stream_exception(behaviour.stream_error, "Model stream failed (fake)."))
                break
            if behaviour.stall_after is not None and index == min(behaviour.stall_after, len(parts)):
                received.disconnected = self._stall()
                self.close_connection = True
                return
            if index == len(parts):
                break
            if behaviour.part_delay and self._client_gone(behaviour.part_delay):
                received.disconnected = True
                self.close_connection = True
                return
            self._chunk(payload_part(parts[index]))
            received.parts_sent += 1
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stall(self) -> bool:
        """Hang until the client hangs up (True) or the server stops (False)."""
        while not self.server.fake._stopping.is_set():
            if self._client_gone(0.05):
                return True
        return False

    def _client_gone(self, seconds: float) -> bool:
        """Wait `seconds`; True as soon as the client has closed its end of the connection."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([self.connection], [], [], min(remaining, 0.05))
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                time.sleep(min(remaining, 0.01))  # unexpected bytes: keep waiting without spinning

    def _error(self, error: HttpError) -> None:
        body = {"message": error.message} if error.code != "ModelError" else {"Message": error.message}
        body.update(error.fields)
        self._respond(error.status, _dumps(body).encode(), "application/json", error_type=error.code)

    def _respond(self, status: int, body: bytes, content_type: str, *, error_type: str | None = None) -> None:
        self.send_response(status)
        self._common_headers()
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _common_headers(self) -> None:
        self.send_header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")
        self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
