"""A local SageMaker asynchronous endpoint: the InvokeEndpointAsync wire protocol over HTTP, with
S3 and SNS on moto, for `promptsvc dev --engine sagemaker-async` and the tests.

It does what SageMaker Asynchronous Inference does with a request:

- `POST /endpoints/{EndpointName}/async-invocations` (rest-json, API 2017-05-13) with the header
  `X-Amzn-SageMaker-InputLocation: s3://bucket/key` (and optionally `X-Amzn-SageMaker-Inference-Id`,
  `-InvocationTimeoutSeconds`, `-RequestTTLSeconds`): answers 202 at once, with
  `X-Amzn-SageMaker-OutputLocation`, `X-Amzn-SageMaker-FailureLocation` and the JSON body
  `{"InferenceId": ...}`; a request without an input location is a 400 ValidationError, as the
  service answers.
- Then, in the background (`delay` seconds later: the endpoint's queue), it reads the input object
  from S3, runs "the container" and writes its answer to the output location, or the container's
  error to the failure location, and publishes the notification SageMaker sends to the endpoint
  config's SuccessTopic or ErrorTopic (`notification`).

The container is an echo, like the mock engine: the Messages API (a body with `messages`) gets a
`chat.completion` whose content is the last user message; TGI's native schema (`inputs`) gets
`[{"generated_text": inputs, "details": {...}}]`. Tests script other outcomes (`script`): a
container error with a status, or a lost notification (the answer is written, nothing published).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote

from promptsvc.adapters.clients import client

REGION = "us-east-1"


@dataclass(frozen=True)
class Answer:
    """The container answers (the echo)."""


@dataclass(frozen=True)
class ContainerError:
    """The container answers `status`: an error notification whose failureReason names it."""

    status: int = 500
    message: str = '{"error": "boom"}'


@dataclass(frozen=True)
class LostNotification:
    """The answer is written, but no notification arrives (a topic misconfigured, say)."""


Outcome = Answer | ContainerError | LostNotification


@dataclass
class Invocation:
    """One accepted request, as the endpoint saw it."""

    endpoint: str
    inference_id: str
    input_location: str
    output_location: str
    failure_location: str
    headers: dict[str, str]
    notified: threading.Event = field(default_factory=threading.Event)  # processed (published or not)


class AsyncEndpoint:
    def __init__(
        self,
        bucket: str,
        success_topic: str,
        error_topic: str,
        *,
        output_prefix: str = "async/outputs/",
        failure_prefix: str = "async/failures/",
        delay: float = 0.0,
    ) -> None:
        self.bucket = bucket
        self.success_topic = success_topic
        self.error_topic = error_topic
        self.output_prefix = output_prefix
        self.failure_prefix = failure_prefix
        self.delay = delay
        self.invocations: list[Invocation] = []
        self._script: deque[Outcome] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *outcomes: Outcome) -> None:
        """The outcomes of the next requests, in order; after them, answers."""
        with self._lock:
            self._script.extend(outcomes)

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, name="async-endpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- what the endpoint does --------------------------------------------------------------

    def accept(self, endpoint: str, headers: dict[str, str]) -> Invocation:
        inference_id = headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
        invocation = Invocation(
            endpoint=endpoint,
            inference_id=inference_id,
            input_location=headers["x-amzn-sagemaker-inputlocation"],
            output_location=f"s3://{self.bucket}/{self.output_prefix}{inference_id}.out",
            failure_location=f"s3://{self.bucket}/{self.failure_prefix}{inference_id}-error.out",
            headers=headers,
        )
        with self._lock:
            self.invocations.append(invocation)
            outcome = self._script.popleft() if self._script else Answer()
        received = _now()
        worker = threading.Thread(
            target=self._process, args=(invocation, outcome, received), name="async-inference", daemon=True
        )
        worker.start()
        return invocation

    def _process(self, invocation: Invocation, outcome: Outcome, received: str) -> None:
        try:
            if self.delay:
                time.sleep(self.delay)
            bucket, key = _split(invocation.input_location)
            try:
                request = json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
            except Exception as error:
                reason = f"ClientError: Unable to read the input from {invocation.input_location}: {error}"
                self._fail(invocation, received, reason, "")
                return
            if isinstance(outcome, ContainerError):
                kind = "client" if outcome.status < 500 else "server"
                reason = (
                    f"ClientError: Received {kind} error ({outcome.status}) from primary with message "
                    f'"{outcome.message}". See the SageMaker Endpoint logs in your account for more '
                    "information."
                )
                self._fail(invocation, received, reason, outcome.message)
                return
            out_bucket, out_key = _split(invocation.output_location)
            body = json.dumps(container_answer(request)).encode()
            client("s3").put_object(Bucket=out_bucket, Key=out_key, Body=body, ContentType="application/json")
            if isinstance(outcome, LostNotification):
                return
            note = notification(invocation, received, completed=True)
            client("sns").publish(TopicArn=self.success_topic, Message=json.dumps(note))
        finally:
            invocation.notified.set()

    def _fail(self, invocation: Invocation, received: str, reason: str, body: str) -> None:
        bucket, key = _split(invocation.failure_location)
        client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
        note = notification(invocation, received, completed=False, reason=reason)
        client("sns").publish(TopicArn=self.error_topic, Message=json.dumps(note))


def container_answer(request: dict[str, Any]) -> Any:
    """The echo container's non-streaming answer, in the schema of the request."""
    if "messages" in request:
        users = [m for m in request["messages"] if m.get("role") == "user"]
        text = str(users[-1].get("content") or "") if users else ""
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": len(text.split()),
                "completion_tokens": len(text.split()),
                "total_tokens": 2 * len(text.split()),
            },
        }
    text = str(request.get("inputs") or "")
    details = {"finish_reason": "eos_token", "generated_tokens": len(text.split())}
    return [{"generated_text": text, "details": details}]


def notification(
    invocation: Invocation, received: str, *, completed: bool, reason: str = ""
) -> dict[str, Any]:
    """The message SageMaker publishes when an asynchronous inference ends."""
    note: dict[str, Any] = {
        "awsRegion": REGION,
        "eventTime": _now(),
        "receivedTime": received,
        "invocationStatus": "Completed" if completed else "Failed",
        "requestParameters": {
            "contentType": invocation.headers.get("x-amzn-sagemaker-content-type", "application/json"),
            "endpointName": invocation.endpoint,
            "inputLocation": invocation.input_location,
        },
        "responseParameters": {"contentType": "application/json"},
        "inferenceId": invocation.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if completed:
        note["responseParameters"]["outputLocation"] = invocation.output_location
    else:
        note["failureReason"] = reason
        note["responseParameters"]["failureLocation"] = invocation.failure_location
    return note


def _handler(endpoint: AsyncEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "async-invocations":
                self._error(404, "UnknownOperationException", f"no operation at {self.path}")
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            if not headers.get("x-amzn-sagemaker-inputlocation"):
                self._error(400, "ValidationError", "InputLocation is required")
                return
            invocation = endpoint.accept(unquote(parts[1]), headers)
            body = json.dumps({"InferenceId": invocation.inference_id}).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Amzn-SageMaker-OutputLocation", invocation.output_location)
            self.send_header("X-Amzn-SageMaker-FailureLocation", invocation.failure_location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"message": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-ErrorType", code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    return Handler


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
