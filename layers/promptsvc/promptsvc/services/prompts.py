"""Use cases of the prompt queue: add, get, wait, cancel, remove. Handlers call these."""

import time
from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools import Logger

from promptsvc.domain.catalog import Catalog
from promptsvc.domain.errors import Conflict, NotFound
from promptsvc.domain.keys import Principal
from promptsvc.domain.ports import PromptQueue, PromptRepository, ThreadEventLog
from promptsvc.domain.prompt import NewPrompt, Prompt, create_prompt, now_rfc3339, request_hash
from promptsvc.domain.status import Status, is_terminal
from promptsvc.domain.thread_events import status_event

logger = Logger(child=True)


class EnqueueFailed(Exception):
    """The prompt could not be queued; it was removed again, so nothing is left behind."""


@dataclass(frozen=True)
class AddResult:
    prompt: Prompt
    created: bool  # False for an idempotent re-add of an existing prompt
    timed_out: bool = False  # a sync add whose prompt was not terminal by the deadline


class PromptService:
    def __init__(
        self,
        repository: PromptRepository,
        queue: PromptQueue,
        catalog: Callable[[], Catalog],
        *,
        events: ThreadEventLog | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repository
        self._queue = queue
        self._catalog = catalog
        self._events = events
        self._sleep = sleep
        self._monotonic = monotonic

    @property
    def catalog(self) -> Catalog:
        return self._catalog()

    def add(self, principal: Principal, new: NewPrompt, *, sync_wait: float) -> AddResult:
        """Store then enqueue; re-adding the same body is idempotent, another body is a 409."""
        prompt = create_prompt(principal.user_id, new)
        stored = self._repo.put_new(prompt)
        if stored is None:
            existing = self._repo.get(new.id)
            if existing is None or existing.requestHash != request_hash(principal.user_id, new):
                raise Conflict(f"a prompt with id {new.id!r} already exists with a different body")
            return self._maybe_wait(AddResult(existing, created=False), new.sync, sync_wait)
        try:
            self._queue.send(prompt.id, prompt.userId)
        except Exception as error:
            self._compensate(prompt)
            raise EnqueueFailed("the prompt could not be queued; nothing was stored, retry") from error
        return self._maybe_wait(AddResult(prompt, created=True), new.sync, sync_wait)

    def _compensate(self, prompt: Prompt) -> None:
        """Remove a prompt whose enqueue failed, so no scheduled prompt sits without a message."""
        try:
            self._repo.delete(prompt.id)
        except Exception:
            # Left behind: a scheduled prompt with no message. Logged loudly for the alarm on
            # ERROR lines; the caller still gets a 500 and can retry with the same id.
            logger.exception("enqueue failed and the prompt could not be removed", prompt_id=prompt.id)

    def _maybe_wait(self, result: AddResult, sync: bool, limit: float) -> AddResult:
        if not sync or is_terminal(result.prompt.status):
            return result
        prompt, done = self.wait_terminal(result.prompt.id, limit)
        return AddResult(prompt or result.prompt, result.created, timed_out=not done)

    def wait_terminal(self, prompt_id: str, limit: float) -> tuple[Prompt | None, bool]:
        """Poll until terminal or `limit` seconds pass, backing off from 50 ms to 1 s between reads."""
        deadline = self._monotonic() + limit
        delay = 0.05
        prompt = self._repo.get(prompt_id)
        while prompt is not None and not is_terminal(prompt.status):
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                return prompt, False
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
            prompt = self._repo.get(prompt_id)
        return prompt, True

    def get(self, principal: Principal, prompt_id: str) -> Prompt:
        """The prompt if the caller may see it; other users' prompts are 404, as if absent."""
        prompt = self._repo.get(prompt_id)
        if prompt is None or not (principal.is_admin or prompt.userId == principal.user_id):
            raise NotFound(f"prompt {prompt_id!r} not found")
        return prompt

    def cancel(self, principal: Principal, prompt_id: str) -> Prompt:
        prompt = self.get(principal, prompt_id)
        if prompt.status is Status.CANCELED:
            return prompt
        updated = self._repo.transition(prompt, Status.CANCELED, updatedAt=now_rfc3339())
        if updated is None:
            current = self.get(principal, prompt_id)
            if current.status is Status.CANCELED:
                return current
            raise Conflict(f"prompt {prompt_id!r} is {current.status} and can no longer be canceled")
        if self._events is not None and prompt.status is not Status.RUNNING:
            # A running prompt's consumer writes `canceled` when it stops; nobody else would here.
            self._events.append(status_event(updated, str(Status.CANCELED), updated.updatedAt))
        return updated

    def remove(self, principal: Principal, prompt_id: str) -> None:
        """Delete the prompt. A consumer holding it finds it gone and stores nothing."""
        self.get(principal, prompt_id)
        self._repo.delete(prompt_id)
