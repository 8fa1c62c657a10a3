"""The SageMaker asynchronous engine: an async endpoint (SageMaker Asynchronous Inference) running
the same Hugging Face LLM containers as the real-time engine (engines/sagemaker.py).

A run does not wait for the answer. `submit` writes the request (the body the real-time engine
sends, non-streaming) to S3 under a key naming the prompt and its run (`AsyncRun.input_key`) and
calls InvokeEndpointAsync with that InputLocation; SageMaker queues it, runs it, writes the
container's answer to S3 and publishes a notification to the endpoint config's success or error
SNS topic. `read_notification` turns that notification into the run it settles and its answer
(the output object parsed as the real-time engine parses a non-streaming answer) or its failure
(an EngineError, retryable unless the container refused the request with a 4xx).

The run is found again from the notification's `requestParameters.inputLocation` (the key this
engine chose, engines/submission.py): no table maps inference ids to prompts.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from promptsvc.adapters import clients
from promptsvc.domain.answers import DEFAULT_MAX_ANSWER_BYTES
from promptsvc.domain.routing import TIMEOUT_CODE
from promptsvc.engines.base import EngineError, EngineEvent, EngineRequest, is_retryable_status
from promptsvc.engines.sagemaker import engine_error, parse_response, request_body
from promptsvc.engines.submission import AsyncResult, AsyncRun, Submitted, split_s3_uri

MAX_INVOCATION_SECONDS = 3600  # InvokeEndpointAsync's InvocationTimeoutSeconds, at most
HOLD_MARGIN_SECONDS = 60  # the lease outlasts SageMaker's own deadline by this much
# The most of an output object read: its JSON envelope around the longest answer kept
# (domain.answers.DEFAULT_MAX_ANSWER_BYTES), escaped (up to 6 bytes a byte), with room to spare.
MAX_OUTPUT_BYTES = 6 * DEFAULT_MAX_ANSWER_BYTES + 64 * 1024
_STATUS = re.compile(r"\((\d{3})\)")  # "Received server error (500) from primary ..."


class SageMakerAsyncEngine:
    def __init__(
        self,
        bucket: str,
        *,
        request_ttl_seconds: int = 3600,
        default_endpoint: str = "",
        client: Callable[[], Any] = lambda: clients.client("sagemaker-runtime"),
        s3: Callable[[], Any] = lambda: clients.client("s3"),
        max_output_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        self._bucket = bucket
        self._max_output = max_output_bytes
        self._ttl = request_ttl_seconds
        self._default_endpoint = default_endpoint
        self._client = client
        self._s3 = s3

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        """Never streams: the runner submits (`submit`) and the notification settles the run."""
        raise EngineError("the sagemaker-async engine answers through its notifications", retryable=False)
        yield  # pragma: no cover - makes this an async generator

    async def submit(self, request: EngineRequest, run: AsyncRun) -> Submitted:
        """Write the request to S3, then InvokeEndpointAsync; an EngineError when either fails."""
        model = request.model
        endpoint = model.target.get("endpointName") or self._default_endpoint
        if not endpoint:
            raise EngineError(f"model {model.id!r} has no target.endpointName", retryable=False)
        if not self._bucket:
            raise EngineError("SAGEMAKER_ASYNC_BUCKET is not set", retryable=False)
        body = json.dumps(request_body(request, stream=False)).encode()
        timeout = max(1, min(MAX_INVOCATION_SECONDS, int(model.call_timeout)))
        return await asyncio.to_thread(self._submit, endpoint, run, body, timeout, model.target.get("accept"))

    def _submit(
        self, endpoint: str, run: AsyncRun, body: bytes, timeout: int, accept: str | None
    ) -> Submitted:
        try:
            self._s3().put_object(
                Bucket=self._bucket, Key=run.input_key, Body=body, ContentType="application/json"
            )
        except Exception as error:
            stored = f"could not store the async request: {type(error).__name__}"
            raise EngineError(stored, retryable=True) from error
        try:
            answer = self._client().invoke_endpoint_async(
                EndpointName=endpoint,
                InputLocation=f"s3://{self._bucket}/{run.input_key}",
                ContentType="application/json",
                Accept=accept or "application/json",
                InvocationTimeoutSeconds=timeout,
                RequestTTLSeconds=self._ttl,
            )
        except Exception as error:
            raise engine_error(error, endpoint) from error
        return Submitted(
            inference_id=str(answer.get("InferenceId", "")),
            output_location=str(answer.get("OutputLocation", "")),
            hold_seconds=self._ttl + timeout + HOLD_MARGIN_SECONDS,
        )

    def read_notification(self, message: str) -> AsyncResult | None:
        """The result a notification (the SNS message SageMaker publishes) reports; None when it is
        not about one of our runs. A success's output that cannot be read or parsed is a failure."""
        try:
            note = Notification.model_validate_json(message)
        except ValidationError:
            return None
        run = AsyncRun.from_input_location(note.requestParameters.inputLocation)
        if run is None:
            return None
        endpoint = note.requestParameters.endpointName
        if note.invocationStatus != "Completed":
            return AsyncResult(run, failure_error(note.failureReason, endpoint))
        try:
            body = self._read(note.responseParameters.outputLocation)
            return AsyncResult(run, parse_response(body, endpoint))
        except EngineError as error:
            return AsyncResult(run, error)

    def _read(self, location: str) -> bytes:
        bucket, key = split_s3_uri(location)
        try:
            output = self._s3().get_object(Bucket=bucket, Key=key)
            size = int(output.get("ContentLength") or 0)
            body = b"" if size > self._max_output else bytes(output["Body"].read(self._max_output + 1))
            output["Body"].close()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            unread = f"could not read the async output {location}: {code}"
            raise EngineError(unread, retryable=True) from error
        if size > self._max_output or len(body) > self._max_output:
            # Never read into memory: the same answer again would be as long (and a longer answer
            # than MAX_ANSWER_BYTES abandons its prompt anyway).
            too_long = f"the async output {location} is over {self._max_output:,} bytes"
            raise EngineError(too_long, retryable=False)
        return body


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    endpointName: str = ""
    inputLocation: str = ""


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")

    outputLocation: str = ""
    failureLocation: str = ""


class Notification(BaseModel):
    """What SageMaker publishes to the endpoint config's SuccessTopic or ErrorTopic."""

    model_config = ConfigDict(extra="ignore")

    invocationStatus: str  # "Completed" | "Failed"
    inferenceId: str = ""
    failureReason: str = ""
    eventName: str = "InferenceResult"
    requestParameters: _Request
    responseParameters: _Response = _Response()


def failure_error(reason: str, endpoint: str) -> EngineError:
    """An error notification's failure: the container's status when the reason names one (a 4xx
    other than 408/429 never succeeds on retry); else (a timeout, an expired request, an instance
    lost) worth another run; a timeout counts as a 504, as a streamed run's does."""
    message = f"SageMaker async endpoint {endpoint!r}: {reason or 'inference failed'}"
    found = _STATUS.search(reason)
    if found:
        status = int(found.group(1))
        return EngineError(message, retryable=is_retryable_status(status), status_code=status)
    if "timed out" in reason.lower() or "timeout" in reason.lower():  # as a gateway reports one
        return EngineError(message, retryable=True, status_code=TIMEOUT_CODE)
    return EngineError(message, retryable=True)
