"""The prompt lifecycle as a pure state machine (DESIGN.md, "Prompt lifecycle").

scheduled -> running -> completed; a failed attempt goes to errored and is retried while
runCount <= maxRetries, else abandoned; canceled by request. completed, abandoned and canceled are
terminal. Stores turn `sources_for(target)` into conditional writes, so a duplicate delivery or a
race can never move a terminal prompt.
"""

from enum import StrEnum


class Status(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    ERRORED = "errored"
    ABANDONED = "abandoned"
    CANCELED = "canceled"


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETED, Status.ABANDONED, Status.CANCELED})

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.SCHEDULED: frozenset({Status.RUNNING, Status.CANCELED, Status.ABANDONED}),
    Status.RUNNING: frozenset({Status.COMPLETED, Status.ERRORED, Status.ABANDONED, Status.CANCELED}),
    Status.ERRORED: frozenset({Status.RUNNING, Status.CANCELED, Status.ABANDONED}),
    Status.COMPLETED: frozenset(),
    Status.ABANDONED: frozenset(),
    Status.CANCELED: frozenset(),
}


def is_terminal(status: Status) -> bool:
    return status in TERMINAL


def can_transition(source: Status, target: Status) -> bool:
    return target in _ALLOWED[source]


def sources_for(target: Status) -> frozenset[Status]:
    """Every status a prompt may be in for a write that moves it to `target` to succeed."""
    return frozenset(s for s, targets in _ALLOWED.items() if target in targets)


def status_after_failure(run_count: int, max_retries: int, retryable: bool) -> Status:
    """Where a failed attempt leaves the prompt.

    `run_count` counts attempts so far, the failed one included; the first run is not a retry, so
    a prompt may run `max_retries + 1` times in all.
    """
    if retryable and run_count <= max_retries:
        return Status.ERRORED
    return Status.ABANDONED
