"""Engines that answer later: the run is submitted, and a notification settles it
(engines/sagemaker_async.py; consumer/async_runs.py). Light on purpose: the runner imports it
whatever engine a deployment uses."""

from __future__ import annotations

from typing import Protocol, runtime_checkable
from urllib.parse import unquote

import msgspec

from promptsvc.engines.base import EngineError, EngineRequest, Finish

INPUT_PREFIX = "async/inputs/"  # where runs' requests are stored (the consumer may only put there)


class AsyncRun(msgspec.Struct, frozen=True):
    """Which run of which prompt a submitted request answers."""

    user_id: str
    prompt_id: str
    run_count: int

    @property
    def input_key(self) -> str:
        return f"{INPUT_PREFIX}{self.user_id}/{self.prompt_id}/{self.run_count}.json"

    @classmethod
    def from_input_location(cls, location: str) -> AsyncRun | None:
        """The run whose input is at `location` (s3://bucket/key); None when it is not one of ours."""
        _, key = split_s3_uri(location)
        if not key.startswith(INPUT_PREFIX) or not key.endswith(".json"):
            return None
        parts = key[len(INPUT_PREFIX) : -len(".json")].split("/")
        if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]))


class Submitted(msgspec.Struct, frozen=True):
    """An accepted request. `hold_seconds`: how long the run may wait for its notification (the
    endpoint drops the request after its TTL in the queue plus the invocation timeout)."""

    inference_id: str
    output_location: str
    hold_seconds: int


class AsyncResult(msgspec.Struct, frozen=True):
    """A notification, read: the run it settles and its answer (text, Finish), or why it failed."""

    run: AsyncRun
    answer: tuple[str, Finish] | EngineError


class NotificationReader(Protocol):
    def read_notification(self, message: str) -> AsyncResult | None:
        """The result the notification reports; None when it is not about one of our runs."""
        ...


@runtime_checkable
class Submitter(Protocol):
    async def submit(self, request: EngineRequest, run: AsyncRun) -> Submitted:
        """Hand the request over; an EngineError when it is refused."""
        ...


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of s3://bucket/key (a key the notification URL-encoded is decoded)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, unquote(key)
