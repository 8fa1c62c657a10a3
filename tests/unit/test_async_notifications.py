"""Reading an async endpoint's notification (engines/sagemaker_async.py): which run it settles,
and what its failure means for the failure policy."""

import json
from typing import Any

import pytest
from promptsvc.engines.base import EngineError
from promptsvc.engines.sagemaker_async import SageMakerAsyncEngine, failure_error
from promptsvc.engines.submission import AsyncRun


def note(status: str = "Failed", **fields: Any) -> str:
    return json.dumps(
        {
            "invocationStatus": status,
            "inferenceId": "id-1",
            "requestParameters": {
                "endpointName": "promptsvc-x",
                "inputLocation": "s3://bucket/async/inputs/alice/prm_1/2.json",
            },
            "responseParameters": {"failureLocation": "s3://bucket/async/failures/id-1-error.out"},
            **fields,
        }
    )


def test_a_runs_input_key_names_it_and_is_read_back() -> None:
    run = AsyncRun("alice", "prm_1", 2)

    assert run.input_key == "async/inputs/alice/prm_1/2.json"
    assert AsyncRun.from_input_location(f"s3://bucket/{run.input_key}") == run
    assert AsyncRun.from_input_location("s3://bucket/async/inputs/alice%40x/prm_1/2.json") == AsyncRun(
        "alice@x", "prm_1", 2
    )


@pytest.mark.parametrize(
    "location",
    [
        "s3://bucket/other/alice/prm_1/2.json",
        "s3://bucket/async/inputs/alice/prm_1/two.json",
        "s3://bucket/async/inputs/alice/2.json",
        "s3://bucket/async/inputs//prm_1/2.json",
        "",
    ],
)
def test_an_input_that_is_not_one_of_ours_names_no_run(location: str) -> None:
    assert AsyncRun.from_input_location(location) is None


@pytest.mark.parametrize(
    ("reason", "retryable", "status"),
    [
        ("ClientError: Received server error (500) from primary with message ...", True, 500),
        ("ClientError: Received client error (429) from primary with message ...", True, 429),
        ("ClientError: Received client error (400) from primary with message ...", False, 400),
        ("Inference request timed out.", True, 504),
        ("Request expired: RequestTTLSeconds passed.", True, None),
    ],
)
def test_a_failures_reason_decides_whether_it_is_worth_a_retry(
    reason: str, retryable: bool, status: int | None
) -> None:
    error = failure_error(reason, "promptsvc-x")

    assert (error.retryable, error.status_code) == (retryable, status)
    assert reason in str(error) and "promptsvc-x" in str(error)


def test_a_failed_notification_is_read_without_touching_s3() -> None:
    def no_s3() -> Any:
        raise AssertionError("a failure's notification says all there is")

    engine = SageMakerAsyncEngine("bucket", s3=no_s3)
    result = engine.read_notification(note(failureReason="ClientError: Received server error (503) ..."))

    assert result is not None and result.run == AsyncRun("alice", "prm_1", 2)
    assert isinstance(result.answer, EngineError) and result.answer.status_code == 503


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        json.dumps({"invocationStatus": "Completed"}),  # no requestParameters
        json.dumps({"invocationStatus": "Completed", "requestParameters": {"inputLocation": "s3://b/x"}}),
    ],
)
def test_a_message_that_is_not_about_one_of_our_runs_is_ignored(message: str) -> None:
    assert SageMakerAsyncEngine("bucket").read_notification(message) is None


class _Body:
    """A stand-in for S3's streaming body: what was read, in how large a read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[int] = []
        self.closed = False

    def read(self, amount: int) -> bytes:
        self.asked.append(amount)
        return self.data[:amount]

    def close(self) -> None:
        self.closed = True


class _S3:
    def __init__(self, data: bytes, length: int | None = None) -> None:
        self.body = _Body(data)
        self.length = len(data) if length is None else length

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": self.body, "ContentLength": self.length}


OUTPUT = "s3://bucket/async/outputs/id-1.out"
ANSWER = json.dumps({"choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}]}).encode()


def test_an_output_is_read_with_a_bound_and_one_over_it_is_a_failure_not_worth_a_retry() -> None:
    fits = _S3(ANSWER)
    read = SageMakerAsyncEngine("bucket", s3=lambda: fits, max_output_bytes=len(ANSWER))
    result = read.read_notification(note("Completed", responseParameters={"outputLocation": OUTPUT}))
    assert result is not None and not isinstance(result.answer, EngineError)
    assert fits.body.asked == [len(ANSWER) + 1] and fits.body.closed

    for s3 in (_S3(ANSWER + b" " * 10), _S3(ANSWER + b" " * 10, length=0)):  # said, or found, too long
        engine = SageMakerAsyncEngine("bucket", s3=lambda s3=s3: s3, max_output_bytes=len(ANSWER))
        over = engine.read_notification(note("Completed", responseParameters={"outputLocation": OUTPUT}))
        assert over is not None and isinstance(over.answer, EngineError)
        assert over.answer.retryable is False and "is over" in str(over.answer)
        assert all(amount <= len(ANSWER) + 1 for amount in s3.body.asked) and s3.body.closed
