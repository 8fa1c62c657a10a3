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
