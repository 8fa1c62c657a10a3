"""What follows a failed attempt of a prompt: retry it (after a backoff), fall back to the next
model of its routing plan (at once), or abandon it. Pure: the consumer turns the decision into
one conditional write and, for a retry, the message's visibility.

- a failure no run could avoid (`final`: an answer over the maximum, or one that fits nowhere) is
  abandoned, whatever the retries or the plan say;
- a plain prompt is retried while `runCount <= maxRetries` and the failure is retryable;
- a routed prompt follows its plan (domain/routing.py): retries of the same model, then the next
  model; the caller's `maxRetries` ends the plan early. The error names the model that failed.
"""

from collections.abc import Callable

import msgspec

from promptsvc.domain.prompt import Prompt, PromptChanges
from promptsvc.domain.retry import BASE_SECONDS, CAP_SECONDS, backoff_seconds
from promptsvc.domain.routing import TRANSPORT_CODE, RunPlan, StepKind, after_failure
from promptsvc.domain.status import Status, status_after_failure


class Failure(msgspec.Struct, frozen=True):
    """A failed attempt as the policy sees it."""

    message: str
    retryable: bool
    status_code: int | None = None  # the engine's HTTP status, or a timeout/transport code
    final: bool = False  # no run of this prompt could avoid it


class NextStep(msgspec.Struct, frozen=True):
    status: Status  # ERRORED (run again) or ABANDONED
    delay: int = 0  # seconds before the next run (its message's visibility)
    error: str = ""  # what the prompt's `error` says
    # the plan's place (routeIndex, routeStart)
    changes: PromptChanges = msgspec.field(default_factory=lambda: PromptChanges())


class FailurePolicy(msgspec.Struct, frozen=True):
    retry_base: float = BASE_SECONDS
    retry_cap: float = CAP_SECONDS
    backoff: Callable[..., int] = backoff_seconds

    def next_step(self, prompt: Prompt, failure: Failure, model_id: str, plan: RunPlan | None) -> NextStep:
        """What follows `failure` of `prompt`'s current run (its `runCount` counts that run) on
        `model_id`, as routed by `plan` (None: a plain prompt, or a run that never got a model)."""
        if failure.final:
            return NextStep(Status.ABANDONED, error=failure.message)
        if plan is None:
            status = status_after_failure(prompt.runCount, prompt.maxRetries, failure.retryable)
            return NextStep(status, self._delay(prompt.runCount), failure.message)
        code = failure.status_code or (TRANSPORT_CODE if failure.retryable else 400)
        model_attempts = prompt.runCount - prompt.routeStart
        step = after_failure(plan, prompt.routeIndex, model_attempts, code)
        message = f"{model_id}: {failure.message}"
        if prompt.runCount > prompt.maxRetries:  # the caller's budget ends the plan early
            return NextStep(Status.ABANDONED, error=message)
        if step.kind is StepKind.RETRY:
            return NextStep(Status.ERRORED, self._delay(model_attempts), message)
        if step.kind is StepKind.FALLBACK:
            changes = PromptChanges(routeIndex=step.model_index, routeStart=prompt.runCount)
            return NextStep(Status.ERRORED, 0, message, changes)
        return NextStep(Status.ABANDONED, error=message)

    def _delay(self, attempt: int) -> int:
        return self.backoff(attempt, base=self.retry_base, cap=self.retry_cap)
