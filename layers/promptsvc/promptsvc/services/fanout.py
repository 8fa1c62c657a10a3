"""Fan-out: every thread event reaches every subscribed connection once, in seq order, whether it
comes live (the events table's stream) or by replay (a subscribe with `after`), even when both
run at once.

A subscription's `lastSeq` is its cursor. To deliver event `seq`, a deliverer first *claims* it
(a conditional write: the cursor is at `seq - 1` and nobody holds a live claim), posts, then
*commits* (the cursor moves to `seq`, the claim is dropped). So the posts of one subscription
happen one at a time and in order, and any other deliverer (a duplicate stream record, a replay
racing the stream) waits for the claim or finds the cursor moved and skips. A claim whose holder
died expires after `CLAIM_HOLD_MS`. An event further ahead than `lastSeq + 1` is a gap (a replay
still running, a post that failed): the missing events are read from the log and delivered first,
by the same rule. A failed post drops the claim and leaves the cursor, so the caller can retry.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING

import msgspec
from aws_lambda_powertools import Logger
from msgspec.structs import replace

from promptsvc.domain.connections import ConnectionGone, Subscription
from promptsvc.domain.thread_events import HOLE_SECONDS, ThreadEvent

if TYPE_CHECKING:
    from promptsvc.domain.ports import ConnectionStore, FramePoster, ThreadEventLog

if TYPE_CHECKING:
    from promptsvc.services.connection_keys import ConnectionKeys

logger = Logger(child=True)

PAGE = 100  # events read from the log at a time
MAX_STALE = 200  # cursor moves or claims by others one delivery waits out before it gives up (retried)
CLAIM_HOLD_MS = 5_000  # a claim outlives any post (the API has a short timeout); then it expires
CLAIM_WAIT_SECONDS = 0.01  # between looks at a subscription another deliverer is posting to
HOLE_WAIT_SECONDS = HOLE_SECONDS + 2  # waiting out an earlier seq not yet stored (the log fills a dead one)


class Outcome(StrEnum):
    DELIVERED = "delivered"  # posted, or passed over because the connection's user may not see it
    DUPLICATE = "duplicate"  # the connection had it already
    GONE = "gone"  # the client went away: its connection and subscriptions are deleted
    FAILED = "failed"  # the post failed: the cursor is back where it was; retry the event
    UNSUBSCRIBED = "unsubscribed"  # the subscription went away meanwhile
    REVOKED = "revoked"  # the connection's API key was revoked: it is closed and forgotten


class Delivery(msgspec.Struct, frozen=True):
    outcome: Outcome
    last_seq: int  # the cursor as this delivery last knew it


class FanoutReport(msgspec.Struct):
    outcomes: dict[str, Outcome] = msgspec.field(default_factory=dict)  # by connection id

    @property
    def failed(self) -> list[str]:
        return [c for c, outcome in self.outcomes.items() if outcome is Outcome.FAILED]

    @property
    def delivered(self) -> list[str]:
        return [c for c, outcome in self.outcomes.items() if outcome is Outcome.DELIVERED]

    @property
    def gone(self) -> list[str]:
        return [c for c, outcome in self.outcomes.items() if outcome is Outcome.GONE]

    @property
    def revoked(self) -> list[str]:
        return [c for c, outcome in self.outcomes.items() if outcome is Outcome.REVOKED]


def forget_connection(store: ConnectionStore, connection_id: str) -> None:
    """Delete a connection and its subscriptions (what a $disconnect or a 410 means)."""
    for thread_id in store.threads_of(connection_id):
        store.unsubscribe(thread_id, connection_id)
    store.delete_connection(connection_id)


class Fanout:
    def __init__(
        self,
        store: ConnectionStore,
        poster: FramePoster,
        log: ThreadEventLog,
        *,
        claim_wait_seconds: float = 2.0,
        keys: ConnectionKeys | None = None,
    ) -> None:
        self._store = store
        self._poster = poster
        self._log = log
        self._claim_wait = claim_wait_seconds
        self._keys = keys  # None: connections' keys are not checked (they were at subscribe)

    def publish(self, event: ThreadEvent) -> FanoutReport:
        """Deliver a stored event to every subscriber of its thread; one's failure stops no other."""
        report = FanoutReport()
        for subscription in self._store.subscribers(event.thread_key):
            if self._keys is not None and self._keys.revoked(subscription.connection_id):
                self._keys.close(subscription.connection_id)
                report.outcomes[subscription.connection_id] = Outcome.REVOKED
                continue
            report.outcomes[subscription.connection_id] = self.deliver(event, subscription).outcome
        return report

    def replay(self, subscription: Subscription) -> Delivery:
        """Deliver the stored events after the subscription's cursor, in order."""
        last = subscription.last_seq
        while page := self._log.after(subscription.thread_id, last, PAGE):
            for event in page:
                delivery = self.deliver(event, replace(subscription, last_seq=last))
                if delivery.outcome not in (Outcome.DELIVERED, Outcome.DUPLICATE):
                    return delivery
                last = delivery.last_seq
        return Delivery(Outcome.DELIVERED, last)

    def deliver(self, event: ThreadEvent, subscription: Subscription) -> Delivery:
        """Deliver one event to one subscription, first any events its cursor says it missed."""
        last = subscription.last_seq
        stale = 0
        give_up_at = time.monotonic() + self._claim_wait
        hole_given_up_at = time.monotonic() + HOLE_WAIT_SECONDS
        while event.seq > last:
            due_events = self._due(event, last)
            if not due_events:
                # An earlier seq is still being written (its writer took its seq before this
                # event's, and is a moment slower): wait for it; one whose writer died becomes a
                # gap event after the log's hole bound, which this wait outlasts.
                if time.monotonic() > hole_given_up_at:
                    return Delivery(Outcome.FAILED, last)  # the stream retries the record
                time.sleep(CLAIM_WAIT_SECONDS)
                continue
            for due in due_events:
                outcome, last = self._step(due, last, subscription)
                if outcome is None:  # another deliverer moved the cursor or is posting: look again
                    stale += 1
                    if stale > MAX_STALE or time.monotonic() > give_up_at:
                        return Delivery(Outcome.FAILED, last)  # the stream retries the record
                    break
                if outcome is not Outcome.DELIVERED or due.seq == event.seq:
                    return Delivery(outcome, last)
        return Delivery(Outcome.DUPLICATE, last)

    def _due(self, event: ThreadEvent, last: int) -> list[ThreadEvent]:
        """The events to deliver in order from cursor `last`, ending with `event` unless the log's
        gapless run of missed events stops short of it (a page's end, or a seq still being
        written: then maybe none)."""
        if event.seq == last + 1:
            return [event]
        limit = min(PAGE, event.seq - last)
        page = self._log.after(event.thread_key, last, limit)
        missed = [e for e in page if e.seq < event.seq]
        # The log's gapless run reaches `event` (it may pass over expired history at its start).
        complete = len(page) > len(missed) or (missed[-1].seq if missed else last) == event.seq - 1
        return [*missed, event] if complete else missed

    def _step(self, event: ThreadEvent, last: int, subscription: Subscription) -> tuple[Outcome | None, int]:
        """Claim the event (the cursor at `last`), post it, commit; None if the cursor was not at
        `last` or another deliverer holds a claim (with the cursor as it is now)."""
        thread_id, connection_id = subscription.thread_id, subscription.connection_id
        if not self._store.claim(thread_id, connection_id, last, event.seq, self._now_ms(), CLAIM_HOLD_MS):
            current = self._store.subscription(thread_id, connection_id)
            if current is None:
                return Outcome.UNSUBSCRIBED, last
            if current.last_seq == last:  # someone is posting the next event: wait for them
                time.sleep(CLAIM_WAIT_SECONDS)
            return None, current.last_seq
        if subscription.may_see(event):
            try:
                self._poster.post(connection_id, event.wire())
            except ConnectionGone:
                logger.info("connection gone", connection_id=connection_id, thread_id=thread_id)
                forget_connection(self._store, connection_id)
                return Outcome.GONE, event.seq
            except Exception:
                logger.exception(
                    "post failed", connection_id=connection_id, thread_id=thread_id, seq=event.seq
                )
                self._store.unclaim(thread_id, connection_id, event.seq)
                return Outcome.FAILED, last
        # else: another user's prompt in this thread, passed over (the cursor still moves)
        if not self._store.commit(thread_id, connection_id, event.seq):
            logger.warning("claim expired before its commit", connection_id=connection_id, seq=event.seq)
        return Outcome.DELIVERED, event.seq

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)
