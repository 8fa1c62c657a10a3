"""Retry timing: exponential backoff with jitter, so retries of many prompts spread out instead
of hammering a recovering engine in lockstep."""

import random
from collections.abc import Callable

BASE_SECONDS = 2.0
CAP_SECONDS = 900.0  # 15 min between attempts at most
SQS_MAX_VISIBILITY = 43_200  # 12 h: the most ChangeMessageVisibility accepts


def backoff_seconds(
    attempt: int,
    *,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
    uniform: Callable[[float, float], float] = random.uniform,
) -> int:
    """Delay before retry number `attempt` (1 for the first retry): "equal jitter", i.e. half of
    min(cap, base * 2^(attempt-1)) fixed plus a random share of the other half. Whole seconds,
    as SQS visibility timeouts are."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    delay = ceiling / 2 + uniform(0, ceiling / 2)
    return max(1, min(SQS_MAX_VISIBILITY, round(delay)))
