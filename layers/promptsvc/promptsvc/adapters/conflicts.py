"""Transaction conflicts, retried. DynamoDB rejects a write to an item that an ongoing transaction
includes (`TransactionConflictException`), and cancels a transaction that meets another one on an
item (`TransactionCanceledException`, reason `TransactionConflict`); in both nothing was written,
and the SDK does not retry them. The hot item here is a key's in-flight counter: every add of the
key's prompts and every end of one writes it."""

import random
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")

TRIES = 8
BASE_SECONDS = 0.02
CAP_SECONDS = 0.5


def is_conflict(error: ClientError) -> bool:
    """Whether nothing was written because of another transaction (and a condition did not fail)."""
    code = error.response.get("Error", {}).get("Code")
    if code == "TransactionConflictException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons") or []]
    return "TransactionConflict" in reasons and "ConditionalCheckFailed" not in reasons


def retry_conflicts(
    write: Callable[[], T],
    *,
    tries: int = TRIES,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[float, float], float] = random.uniform,
) -> T:
    """`write()`, again after a conflict (full jitter, from 20 ms doubling up to 0.5 s), at most
    `tries` times in all; the last conflict is raised."""
    for attempt in range(tries):
        try:
            return write()
        except ClientError as error:
            if not is_conflict(error) or attempt == tries - 1:
                raise
            sleep(jitter(0, min(CAP_SECONDS, BASE_SECONDS * 2**attempt)))
    raise AssertionError("unreachable")
