"""The small interfaces the services use; adapters implement them against AWS.

Interfaces only, for the type checker: modules import them under `TYPE_CHECKING`, so no function
pays for them at its cold start (benchmarks/cold_start.py). The values they speak are domain types
(`domain.prompt.Claim`, `domain.connections`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Unpack

if TYPE_CHECKING:
    from promptsvc.domain.connections import Connection, Subscription
    from promptsvc.domain.keys import ApiKeyRecord
    from promptsvc.domain.prompt import Claim, Prompt, PromptChanges, RunState
    from promptsvc.domain.query import Selection
    from promptsvc.domain.reads import Reads
    from promptsvc.domain.registry import Page, PageRequest, RegistryPrompt, RegistryVersion
    from promptsvc.domain.response_cache import CachedAnswer
    from promptsvc.domain.status import Status
    from promptsvc.domain.thread_events import RemovalCheck, ThreadEvent
    from promptsvc.domain.usage import UsageCount, UsageRow


class PromptStore(Protocol):
    """Prompts through their life, keyed by owner and id: prompt ids are per user (domain.names).
    Every write that changes a prompt is conditional on what it was read as."""

    def put_new(self, prompt: Prompt, in_flight_limit: int = 0) -> Prompt | None:
        """Store a new prompt; None if its owner has one with that id (then `get` it), and nothing
        written. A prompt carrying a `keyId` takes its key's in-flight slot in the same write (all
        or nothing): LimitExceeded, and nothing written, when `in_flight_limit` (> 0) are taken.
        With fair queueing on, the store chooses the prompt's lane (domain.lanes) in that write:
        the prompt returned carries it."""

    def get(self, user_id: str, prompt_id: str) -> Prompt | None: ...

    def delete(self, user_id: str, prompt_id: str) -> Prompt | None:
        """Delete the prompt; the prompt as it was, None if there was none."""

    def run_state(self, user_id: str, prompt_id: str) -> RunState | None:
        """Only the prompt's status and run count (a small read)."""

    def run_states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RunState | None]:
        """`run_state` of many prompts (owner, id) in one read: what a consumer's runs watch each
        poll. A prompt that is gone maps to None; one the read did not get to is left out."""

    def waiting_since(self, cutoff: str, limit: int) -> list[Prompt]:
        """Up to `limit` `scheduled` prompts, oldest first, neither changed nor re-queued since
        `cutoff` (RFC 3339)."""

    def mark_requeued(self, prompt: Prompt, now: str, cutoff: str) -> bool:
        """Record a re-queue if the prompt is still scheduled on the same run and was not re-queued
        since `cutoff`; False otherwise."""

    def transition(
        self,
        prompt: Prompt,
        target: Status,
        *,
        run_count: int | None = None,
        **changes: Unpack[PromptChanges],
    ) -> Prompt | None:
        """Move to `target` if the current status allows it (and runCount matches), setting
        `changes` (`updatedAt` among them); else None."""

    def claim(self, prompt: Prompt, now: str, lease_until_ms: int) -> Prompt | None:
        """Start a run of the prompt as read (running, runCount+1, lastRun, lease); None if it
        changed since it was read. Claiming a running prompt whose lease expired counts a crash."""

    def claim_waiting(self, prompt_id: str, user_id: str, now: str, lease_until_ms: int) -> Claim:
        """Claim in one write a prompt that is scheduled or errored; else the prompt as the write
        found it, when the store says (no read after the refused write)."""

    def renew_lease(self, prompt: Prompt, lease_until_ms: int) -> bool: ...

    def release(self, prompt: Prompt, now: str) -> bool:
        """Back to scheduled with the run uncounted, if still on that run."""

    def claim_repair(self, prompt: Prompt, now_ms: int, stale_before_ms: int) -> bool:
        """The right to store the finished prompt's missing closing event: True for the one caller
        whose claim lands while the prompt is as read and nobody else claimed it since
        `stale_before_ms` (consumer/closing_events.py)."""

    def update_if(self, prompt: Prompt, status: Status, **changes: Unpack[PromptChanges]) -> Prompt | None:
        """Set fields while the prompt is in `status` on the same run; None otherwise."""


class LimitCounters(Protocol):
    """The limits table's counters (domain/limits.py names the items). Every take is one
    conditional write, atomic in DynamoDB: never a read then a write."""

    def take(self, item: str, limit: int, expires_at: int | None = None) -> bool:
        """Add 1 to the item's counter if it is below `limit`; False (nothing written) if not."""

    def below(self, item: str, limit: int) -> bool:
        """Whether the item's counter is below `limit` (a consistent read)."""


class PromptReader(Protocol):
    """Prompts as lists read them: a query's selection (domain.query.Selection) in the order of a
    time field, within what the caller grants (domain.reads.Reads). How the selection is read
    (which index, which key condition) is the store's own plan."""

    def orders(self, selection: Selection) -> frozenset[str]:
        """The fields (of domain.query.RANGE_FIELDS) the store reads this selection in order of;
        always `createdAt`."""

    def in_order(
        self,
        selection: Selection,
        *,
        by: str,
        desc: bool,
        after: tuple[str, str] | None,
        reads: Reads,
    ) -> Iterator[Prompt]:
        """Every prompt the selection admits (maybe more: the caller re-checks the query's
        filters), in (`by`, id) order, strictly past the position `after`. Read lazily: before each
        read (or each n reads made together, one per partition) the store asks `reads.grant(n)` how
        many items each may take, and tells `reads.took` what it read; a lookup by table key (at
        most 100 items) is read at once. When a grant is 0 the reads stop, and so do the prompts
        yielded: none is yielded past a position some unread prompt may come before."""

    def count(self, selection: Selection, *, most: int) -> int | None:
        """How many prompts the selection admits; None when counting them would read more than
        `most` items."""


class PromptQueue(Protocol):
    def send(self, prompt_id: str, user_id: str, lane: str = "") -> None:
        """Queue the prompt on its lane's queue (domain.lanes.Lane: the bulk lane's, or the fast
        lane's for any other)."""

    def send_removal_check(self, check: RemovalCheck, delay_seconds: int) -> None:
        """Queue the check, delivered no sooner than `delay_seconds` (at most 900, SQS's limit)."""


class QueueMessages(Protocol):
    """What a consumer does with a received message besides letting it be deleted."""

    def change_visibility(self, receipt_handle: str, seconds: int) -> None: ...

    def delete(self, receipt_handle: str) -> None: ...

    def dead_letter(self, body: str, reason: str) -> None:
        """Put a copy on the dead-letter queue (the reason as an attribute); then delete the original."""


class KeyRepository(Protocol):
    def put(self, record: ApiKeyRecord) -> None: ...

    def get(self, key_id: str) -> ApiKeyRecord | None: ...

    def delete(self, key_id: str) -> bool: ...

    def page(
        self, user_id: str | None, after: str | None, limit: int
    ) -> tuple[list[ApiKeyRecord], str | None]:
        """Up to `limit` keys, newest first: one user's, or (None) everyone's, from an index that
        holds no hashes; after the position `after`. The position after the last, or None at the end."""

    def rotate(self, key_id: str, old_hash: str, new_hash: str, previous_until: str, prefix: str) -> bool:
        """Give the key a new secret; its current one stays valid until `previous_until`. False
        when the key is gone or its secret is no longer `old_hash` (a rotation raced this one)."""

    def touch(self, record: ApiKeyRecord, at: str) -> None:
        """Set the key's `lastUsedAt` (never bringing back a revoked key)."""

    def update(self, record: ApiKeyRecord) -> bool:
        """Store the record's expiry, allow-list and limits (nothing else of it); False when the
        key is gone."""


Deadline = Callable[[], float | None]  # a writer's current deadline (epoch seconds), None: none


class ThreadEventLog(Protocol):
    """A thread's events, each stored once with the next `seq` of its thread. A thread is named by
    its scoped key (`ThreadEvent.thread_key`: owner#threadId), so threads are per user."""

    def append(self, event: ThreadEvent, *, deadline: Deadline | None = None) -> ThreadEvent:
        """Store the event with the thread's next seq; the stored event. With a `deadline` (called
        as it is needed: the writer's deadline may move while it waits) no seq is taken at or after
        it: DeadlinePassed."""

    def append_many(
        self,
        events: Sequence[ThreadEvent],
        *,
        deadline: Deadline | None = None,
        after: int | None = None,
        final: bool = False,
    ) -> list[ThreadEvent]:
        """Store events of one thread in order, at consecutive seqs (cheaper than one by one);
        the stored events. The deadline as for `append`. `after`: the writer's own last seq, when
        its last write found nobody else writing (its events then go right after it, if still
        free); `final`: the writer's last write. A failure once some are stored: PartlyStored."""

    def after(self, thread_key: str, after_seq: int, limit: int) -> list[ThreadEvent]:
        """Stored events of the thread with seq > after_seq, in order."""

    def last_seq(self, thread_key: str) -> int:
        """The thread's last stored seq, 0 when it has none."""

    def recent(self, thread_key: str, limit: int, before_seq: int | None = None) -> list[ThreadEvent]:
        """The thread's last `limit` stored events (those before `before_seq`, if given), newest first."""


class ConnectionStore(Protocol):
    """WebSocket connections and their thread subscriptions."""

    def put_connection(self, connection: Connection) -> None: ...

    def get_connection(self, connection_id: str) -> Connection | None: ...

    def delete_connection(self, connection_id: str) -> None: ...

    def subscribe(self, connection: Connection, thread_id: str, last_seq: int) -> Subscription:
        """Store (or replace) the subscription; it expires with the connection."""

    def unsubscribe(self, thread_id: str, connection_id: str) -> None: ...

    def subscription(self, thread_id: str, connection_id: str) -> Subscription | None: ...

    def subscribers(self, thread_id: str) -> list[Subscription]: ...

    def threads_of(self, connection_id: str) -> list[str]:
        """The threads a connection is subscribed to (an eventually consistent index)."""

    def claim(
        self, thread_id: str, connection_id: str, last_seq: int, seq: int, now_ms: int, hold_ms: int
    ) -> bool:
        """The right to post `seq`: the cursor is at `last_seq` and nobody holds a live claim."""

    def commit(self, thread_id: str, connection_id: str, seq: int) -> bool:
        """`seq` was posted: the cursor moves to it, the claim is dropped."""

    def unclaim(self, thread_id: str, connection_id: str, seq: int) -> bool:
        """The post failed: the claim is dropped, the cursor stays."""


class FramePoster(Protocol):
    def post(self, connection_id: str, payload: dict[str, Any]) -> None:
        """Send one frame (split if too big); ConnectionGone if the client went away."""


class ResponseCache(Protocol):
    """Answers of routed prompts by exact request (`domain.response_cache.cache_key`)."""

    def get(self, key: str) -> CachedAnswer | None:
        """The cached answer, or None when absent or expired."""
        ...

    def put(self, key: str, answer: CachedAnswer, ttl_seconds: int) -> None: ...


class RegistryRepository(Protocol):
    """Stored prompt entities (`/v2/prompts`) and their immutable versions."""

    def create(self, prompt: RegistryPrompt, version: RegistryVersion) -> bool:
        """Store a new entity with its first version, both or neither; False if the id exists."""

    def get(self, prompt_id: str) -> RegistryPrompt | None: ...

    def replace(
        self, prompt: RegistryPrompt, expected_revision: int, version: RegistryVersion | None
    ) -> bool:
        """Store `prompt` (and `version`, in the same transaction) if the stored entity is still at
        `expected_revision`; False if another write got there first or the entity is gone."""

    def delete(self, prompt_id: str, owner: str) -> bool:
        """Delete the entity (if `owner`'s), then its versions; False if there was no such entity."""

    def page_by_owner(self, owner: str, page: PageRequest) -> Page[RegistryPrompt]:
        """The owner's entities, newest first."""

    def get_version(self, prompt_id: str, version_id: str) -> RegistryVersion | None: ...

    def page_versions(self, prompt_id: str, page: PageRequest) -> Page[RegistryVersion]:
        """The prompt's versions, newest first."""


class AnswerBodies(Protocol):
    """Answer bodies too large for a prompt's item, by key (domain.answers, the claim check)."""

    def put(self, key: str, text: str) -> None: ...

    def get(self, key: str) -> str | None:
        """The body, or None when there is none (expired with its prompt)."""


class UsageCounter(Protocol):
    """The usage counters per user, UTC day and model (`domain.usage`), added to atomically."""

    def add(self, user_id: str, day: str, model_id: str, count: UsageCount) -> None: ...


class UsageReader(Protocol):
    def of_user(self, user_id: str, first_day: str, last_day: str) -> list[UsageRow]:
        """The user's counters from `first_day` to `last_day` (YYYY-MM-DD, both included)."""
        ...

    def of_day(self, day: str) -> list[UsageRow]:
        """Every user's counters of one day."""
        ...
