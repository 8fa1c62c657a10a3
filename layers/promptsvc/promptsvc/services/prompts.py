"""Use cases of the prompt queue: add, get, wait, cancel, remove. Handlers call these."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from aws_lambda_powertools import Logger
from msgspec.structs import replace

from promptsvc.domain.catalog import Catalog
from promptsvc.domain.clock import epoch_seconds, now_rfc3339, seconds_until
from promptsvc.domain.errors import Conflict, NotFound
from promptsvc.domain.keys import Principal
from promptsvc.domain.prompt import NewPrompt, Prompt, create_prompt, request_hash
from promptsvc.domain.status import Status, is_terminal
from promptsvc.domain.thread_events import (
    CLOSE_GRACE_SECONDS,
    REMOVED,
    RemovalCheck,
    status_event,
    thread_key_of,
)

if TYPE_CHECKING:
    from promptsvc.domain.ports import AnswerBodies, PromptQueue, PromptStore, ThreadEventLog
    from promptsvc.services.limits import LimitService

logger = Logger(child=True)


class AddResult(msgspec.Struct, frozen=True):
    prompt: Prompt
    created: bool  # False for an idempotent re-add of an existing prompt
    timed_out: bool = False  # a sync add whose prompt was not terminal by the deadline


class PromptService:
    def __init__(
        self,
        repository: PromptStore,
        queue: PromptQueue,
        catalog: Callable[[], Catalog],
        *,
        events: ThreadEventLog | None = None,
        answers: AnswerBodies | None = None,
        limits: LimitService | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repository
        self._queue = queue
        self._catalog = catalog
        self._events = events
        self._answers = answers
        self._limits = limits
        self._sleep = sleep
        self._monotonic = monotonic

    @property
    def catalog(self) -> Catalog:
        return self._catalog()

    def add(self, principal: Principal, new: NewPrompt, *, sync_wait: float) -> AddResult:
        """Store then enqueue; re-adding the same body is idempotent, another body is a 409. A key
        with an allow-list may add only prompts whose every model (a routing plan's pool and
        fallbacks too) is on it: else a 403 naming the model, and nothing is stored or queued."""
        principal.require_models(new.plan.models if new.plan else (new.modelId,))
        # The key's limits (a 429) before anything is written. The in-flight slot is taken in the
        # prompt's own write and goes with it (`keyId`): its terminal transition gives it back.
        key_id, in_flight = self._limits.admit_prompt(principal) if self._limits is not None else ("", 0)
        prompt = replace(create_prompt(principal.user_id, new), keyId=key_id)
        stored = self._repo.put_new(prompt, in_flight)
        if stored is None:
            existing = self._repo.get(principal.user_id, new.id)
            if existing is None or existing.requestHash != request_hash(principal.user_id, new):
                raise Conflict(f"a prompt with id {new.id!r} already exists with a different body")
            return self._maybe_wait(AddResult(existing, created=False), new.sync, sync_wait)
        try:
            self._queue.send(stored.id, stored.userId, stored.lane)  # the lane the store chose
        except Exception:
            # The prompt is stored and accepted: the sweeper (consumer/stranded.py) sends its
            # message once it has waited `STRANDED_AFTER_SECONDS`, exactly as after a crash here.
            logger.exception("enqueue failed; the sweeper will queue the prompt", prompt_id=prompt.id)
        return self._maybe_wait(AddResult(stored, created=True), new.sync, sync_wait)

    def _maybe_wait(self, result: AddResult, sync: bool, limit: float) -> AddResult:
        if not sync or is_terminal(result.prompt.status):
            return replace(result, prompt=self.with_answer(result.prompt))
        prompt, done = self.wait_terminal(result.prompt.userId, result.prompt.id, limit)
        return AddResult(self.with_answer(prompt or result.prompt), result.created, timed_out=not done)

    def with_answer(self, prompt: Prompt) -> Prompt:
        """The prompt with its whole answer: one too large for its item is read from the answers
        bucket (domain.answers). Every use case that returns an answer returns it through this."""
        if not prompt.answerRef or self._answers is None:
            return prompt
        body = self._answers.get(prompt.answerRef)
        if body is None:  # its retention ran out before DynamoDB's TTL deleted the prompt
            logger.warning("the answer's body is gone", prompt_id=prompt.id, answer_ref=prompt.answerRef)
        return replace(prompt, answer=body or "")

    def wait_terminal(self, user_id: str, prompt_id: str, limit: float) -> tuple[Prompt | None, bool]:
        """Poll until terminal or `limit` seconds pass, backing off from 50 ms to 1 s between reads."""
        deadline = self._monotonic() + limit
        delay = 0.05
        prompt = self._repo.get(user_id, prompt_id)
        while prompt is not None and not is_terminal(prompt.status):
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                return prompt, False
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
            prompt = self._repo.get(user_id, prompt_id)
        return prompt, True

    def get(self, principal: Principal, prompt_id: str, owner: str | None = None) -> Prompt:
        """The caller's prompt with this id (an admin may name another `owner`). Ids are per user,
        so another user's prompt is simply not there: 404, exactly as for a missing one."""
        namespace = principal.namespace(owner)
        prompt = self._repo.get(namespace, prompt_id) if namespace else None
        if prompt is None:
            raise NotFound(f"prompt {prompt_id!r} not found")
        return self.with_answer(prompt)

    def cancel(self, principal: Principal, prompt_id: str, owner: str | None = None) -> Prompt:
        prompt = self.get(principal, prompt_id, owner)
        if prompt.status is Status.CANCELED:
            return prompt
        updated = self._repo.transition(prompt, Status.CANCELED, updatedAt=now_rfc3339())
        if updated is None:
            current = self.get(principal, prompt_id, prompt.userId)
            if current.status is Status.CANCELED:
                return current
            raise Conflict(f"prompt {prompt_id!r} is {current.status} and can no longer be canceled")
        if prompt.status is not Status.RUNNING:
            # A running prompt's consumer writes `canceled` when it stops; nobody else would here.
            self._end_events(updated, str(Status.CANCELED), updated.updatedAt)
        return updated

    def remove(self, principal: Principal, prompt_id: str, owner: str | None = None) -> None:
        """Delete the prompt. A consumer running it notices within its poll, stops the engine, stores
        nothing and ends the thread's events with `removed`, and a check queued for the end of its
        lease writes that event if the consumer died first; for a prompt nobody runs (waiting, or
        its consumer's lease ran out) this writes it."""
        prompt = self.get(principal, prompt_id, owner)
        # Read before the delete: the run's closing event, if any, is numbered after it.
        last_seq = None if is_terminal(prompt.status) else self._last_seq(prompt)
        removed = self._repo.delete(prompt.userId, prompt.id)
        if removed is None or is_terminal(removed.status):
            return  # gone already, or its events already ended
        now_ms = int(time.time() * 1000)
        check_at = _events_may_follow(removed, now_ms)
        if check_at is None:
            self._end_events(removed, REMOVED, now_rfc3339())
        elif last_seq is not None:
            check = RemovalCheck(removed.userId, removed.id, removed.threadId, last_seq, check_at)
            try:
                self._queue.send_removal_check(check, seconds_until(check_at, now_ms) + 1)
            except Exception:
                logger.exception("could not queue the removal's check", prompt_id=removed.id)

    def _last_seq(self, prompt: Prompt) -> int | None:
        return None if self._events is None else self._events.last_seq(thread_key_of(prompt))

    def _end_events(self, prompt: Prompt, status: str, now: str) -> None:
        """Write a thread's closing event. The request has already changed the prompt, so a failure
        here is logged (for the alarm on ERROR lines), never turned into a failed request."""
        if self._events is None:
            return
        try:
            self._events.append(status_event(prompt, status, now))
        except Exception:
            logger.exception("could not write the thread's closing event", prompt_id=prompt.id)


def _events_may_follow(removed: Prompt, now_ms: int) -> int | None:
    """Until when (epoch ms) a run of the removed prompt may still write thread events, or None
    when none can: then the removal writes `removed` itself. A run holding the lease notices the
    removal and writes `removed` (the check is for a run that died). A run that has just ended it
    (`errored`: its retry waits) stored that status first and writes its `errored` event after,
    starting it within CLOSING_WRITE_SECONDS: a `removed` written now could land before it, and the
    thread would not end with its removal. So the check writes `removed` once that time is over."""
    if removed.status is Status.RUNNING and removed.leaseUntil > now_ms:
        return removed.leaseUntil
    if removed.runCount:
        ended_ms = int((epoch_seconds(removed.updatedAt) + CLOSE_GRACE_SECONDS) * 1000)
        if ended_ms > now_ms:
            return ended_ms
    return None
