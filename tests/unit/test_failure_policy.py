"""What follows a failed attempt (domain/failure_policy.py), without AWS: retry after a backoff,
fall back to the plan's next model at once, or abandon."""

from msgspec.structs import replace
from promptsvc.domain.failure_policy import Failure, FailurePolicy
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.routing import RunPlan
from promptsvc.domain.status import Status

PLAIN = Prompt(id="p1", prompt="hi", modelId="m1", template="", threadId="t", userId="alice", maxRetries=2)
PLAN = RunPlan(models=("m1", "m2"), retry_count=1)
ROUTED = replace(PLAIN, plan=PLAN.to_json(), maxRetries=PLAN.attempts - 1)
BUSY = Failure("503 busy", retryable=True, status_code=503)
REFUSED = Failure("400 bad request", retryable=False, status_code=400)


def fixed_backoff(attempt: int, *, base: float, cap: float) -> int:
    return int(base) * 10 + attempt  # shows which attempt the delay was computed for


POLICY = FailurePolicy(retry_base=2, retry_cap=900, backoff=fixed_backoff)


def test_a_plain_prompt_is_retried_after_a_growing_backoff_while_retries_remain() -> None:
    first = POLICY.next_step(replace(PLAIN, runCount=1), BUSY, "m1", None)
    last = POLICY.next_step(replace(PLAIN, runCount=3), BUSY, "m1", None)

    assert (first.status, first.delay, first.error) == (Status.ERRORED, 21, "503 busy")
    assert last.status is Status.ABANDONED  # runCount 3 > maxRetries 2


def test_a_failure_that_cannot_succeed_is_abandoned_at_once() -> None:
    assert POLICY.next_step(replace(PLAIN, runCount=1), REFUSED, "m1", None).status is Status.ABANDONED
    final = replace(BUSY, final=True, message="the answer is over the maximum")
    step = POLICY.next_step(replace(ROUTED, runCount=1), final, "m1", PLAN)
    assert (step.status, step.error) == (Status.ABANDONED, "the answer is over the maximum")


def test_a_routed_prompt_retries_its_model_then_falls_back_to_the_next_at_once() -> None:
    retry = POLICY.next_step(replace(ROUTED, runCount=1), BUSY, "m1", PLAN)
    fallback = POLICY.next_step(replace(ROUTED, runCount=2), BUSY, "m1", PLAN)

    assert (retry.status, retry.delay, retry.changes) == (Status.ERRORED, 21, {})
    assert retry.error == "m1: 503 busy"  # names the model that failed
    assert (fallback.status, fallback.delay) == (Status.ERRORED, 0)
    assert fallback.changes == {"routeIndex": 1, "routeStart": 2}


def test_a_routed_prompt_gives_up_after_its_last_model_or_its_callers_budget() -> None:
    on_last = replace(ROUTED, runCount=4, routeIndex=1, routeStart=2)
    assert POLICY.next_step(on_last, BUSY, "m2", PLAN).status is Status.ABANDONED
    budget = replace(ROUTED, runCount=1, maxRetries=0)
    assert POLICY.next_step(budget, BUSY, "m1", PLAN).status is Status.ABANDONED
    assert POLICY.next_step(replace(ROUTED, runCount=1), REFUSED, "m1", PLAN).status is Status.ABANDONED
