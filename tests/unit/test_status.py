"""The prompt lifecycle state machine (promptsvc.domain.status)."""

import itertools

import pytest
from promptsvc.domain.status import (
    TERMINAL,
    Status,
    can_transition,
    is_terminal,
    sources_for,
    status_after_failure,
)

S = Status
ALLOWED: set[tuple[Status, Status]] = {
    (S.SCHEDULED, S.RUNNING),
    (S.SCHEDULED, S.CANCELED),
    (S.SCHEDULED, S.ABANDONED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.ERRORED),
    (S.RUNNING, S.ABANDONED),
    (S.RUNNING, S.CANCELED),
    (S.ERRORED, S.RUNNING),
    (S.ERRORED, S.CANCELED),
    (S.ERRORED, S.ABANDONED),
}


def test_wire_values() -> None:
    assert [str(s) for s in Status] == [
        "scheduled",
        "running",
        "completed",
        "errored",
        "abandoned",
        "canceled",
    ]


@pytest.mark.parametrize(("source", "target"), list(itertools.product(Status, Status)))
def test_transition_table(source: Status, target: Status) -> None:
    assert can_transition(source, target) is ((source, target) in ALLOWED)


def test_terminal_states() -> None:
    assert {S.COMPLETED, S.ABANDONED, S.CANCELED} == TERMINAL
    assert [s for s in Status if is_terminal(s)] == [S.COMPLETED, S.ABANDONED, S.CANCELED]


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_never_move(terminal: Status) -> None:
    assert not any(can_transition(terminal, target) for target in Status)
    assert all(terminal not in sources_for(target) for target in Status)


@pytest.mark.parametrize("target", list(Status))
def test_sources_for_is_the_inverse_of_can_transition(target: Status) -> None:
    assert sources_for(target) == {s for s in Status if can_transition(s, target)}


def test_sources_for_examples() -> None:
    assert sources_for(S.RUNNING) == {S.SCHEDULED, S.ERRORED}
    assert sources_for(S.COMPLETED) == {S.RUNNING}
    assert sources_for(S.SCHEDULED) == frozenset()


@pytest.mark.parametrize(
    ("run_count", "max_retries", "retryable", "expected"),
    [
        (1, 0, True, S.ABANDONED),  # no retries: the first failure is final
        (1, 1, True, S.ERRORED),
        (2, 1, True, S.ABANDONED),  # ran max_retries + 1 times
        (10, 10, True, S.ERRORED),
        (11, 10, True, S.ABANDONED),
        (1, 10, False, S.ABANDONED),  # not retryable: abandoned at once
    ],
)
def test_status_after_failure(run_count: int, max_retries: int, retryable: bool, expected: Status) -> None:
    assert status_after_failure(run_count, max_retries, retryable) is expected


@pytest.mark.parametrize("max_retries", [0, 1, 3, 10])
def test_a_prompt_runs_at_most_max_retries_plus_one_times(max_retries: int) -> None:
    runs = 1
    while status_after_failure(runs, max_retries, retryable=True) is S.ERRORED:
        runs += 1
    assert runs == max_retries + 1
