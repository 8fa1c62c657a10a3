"""A write that met another transaction is tried again; nothing else is (adapters/conflicts.py)."""

from typing import Any

import pytest
from botocore.exceptions import ClientError
from promptsvc.adapters.conflicts import TRIES, is_conflict, retry_conflicts


def error(code: str, *reasons: str) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": code}}
    if reasons:
        response["CancellationReasons"] = [{"Code": reason} for reason in reasons]
    return ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]


def test_only_a_conflict_that_wrote_nothing_is_one() -> None:
    assert is_conflict(error("TransactionConflictException"))
    assert is_conflict(error("TransactionCanceledException", "None", "TransactionConflict"))
    assert not is_conflict(
        error("TransactionCanceledException", "ConditionalCheckFailed", "TransactionConflict")
    )
    assert not is_conflict(error("TransactionCanceledException", "ConditionalCheckFailed", "None"))
    assert not is_conflict(error("ConditionalCheckFailedException"))
    assert not is_conflict(error("ValidationException"))


def test_conflicts_are_tried_again_with_growing_jittered_waits_then_the_write_lands() -> None:
    failures = [
        error("TransactionConflictException"),
        error("TransactionCanceledException", "TransactionConflict"),
    ]
    waits: list[float] = []

    def write() -> str:
        if failures:
            raise failures.pop(0)
        return "written"

    result = retry_conflicts(write, sleep=waits.append, jitter=lambda low, high: high)
    assert result == "written"
    assert waits == [0.02, 0.04]


def test_a_condition_that_failed_is_not_tried_again_and_endless_conflicts_end() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise error("TransactionCanceledException", "ConditionalCheckFailed", "None")

    with pytest.raises(ClientError):
        retry_conflicts(refused, sleep=lambda _: None)
    assert len(calls) == 1

    def busy() -> None:
        calls.append(1)
        raise error("TransactionConflictException")

    calls.clear()
    with pytest.raises(ClientError):
        retry_conflicts(busy, sleep=lambda _: None)
    assert len(calls) == TRIES
