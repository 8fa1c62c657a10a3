"""In-memory prompts implementing the ports (domain.ports.PromptStore's writes the tests use, and
PromptReader) with the DynamoDB adapters' semantics: conditional status changes, ids per user,
reads in the order of a time field past a cursor, lazily, as many as the caller's `Reads` grant."""

from collections.abc import Iterator
from typing import Unpack

from msgspec.structs import replace
from promptsvc.domain.prompt import Prompt, PromptChanges, RunState, check_changes, public_view
from promptsvc.domain.query import Selection
from promptsvc.domain.reads import Reads
from promptsvc.domain.status import Status, sources_for


class FakePrompts:
    def __init__(self, prompts: list[Prompt] | None = None) -> None:
        self._prompts: dict[tuple[str, str], Prompt] = {}
        self.reads = 0  # prompts read by in_order: each read asks for what the caller still wants
        for prompt in prompts or []:
            self.put_new(prompt)

    # -- PromptStore ---------------------------------------------------------------------------

    def put_new(self, prompt: Prompt, in_flight_limit: int = 0) -> Prompt | None:
        if (prompt.userId, prompt.id) in self._prompts:
            return None
        self._prompts[(prompt.userId, prompt.id)] = prompt
        return prompt

    def get(self, user_id: str, prompt_id: str) -> Prompt | None:
        return self._prompts.get((user_id, prompt_id))

    def delete(self, user_id: str, prompt_id: str) -> Prompt | None:
        return self._prompts.pop((user_id, prompt_id), None)

    def run_state(self, user_id: str, prompt_id: str) -> RunState | None:
        prompt = self.get(user_id, prompt_id)
        return RunState(prompt.status, prompt.runCount) if prompt else None

    def transition(
        self,
        prompt: Prompt,
        target: Status,
        *,
        run_count: int | None = None,
        **changes: Unpack[PromptChanges],
    ) -> Prompt | None:
        check_changes(dict(changes))
        stored = self.get(prompt.userId, prompt.id)
        if stored is None or stored.status not in sources_for(target):
            return None
        if run_count is not None and stored.runCount != run_count:
            return None
        updated = replace(stored, status=target, **changes)
        self._prompts[(prompt.userId, prompt.id)] = updated
        return updated

    def claim(self, prompt: Prompt, now: str, lease_until_ms: int) -> Prompt | None:
        stored = self.get(prompt.userId, prompt.id)
        if stored is None or (stored.status, stored.runCount) != (prompt.status, prompt.runCount):
            return None
        updated = replace(
            stored,
            status=Status.RUNNING,
            runCount=stored.runCount + 1,
            lastRun=now,
            updatedAt=now,
            leaseUntil=lease_until_ms,
        )
        self._prompts[(prompt.userId, prompt.id)] = updated
        return updated

    # -- PromptReader --------------------------------------------------------------------------

    def orders(self, selection: Selection) -> frozenset[str]:
        """Creation order always; last change for one user's prompts (as the table's indexes)."""
        return frozenset({"createdAt", "updatedAt"} if "userId" in selection.pinned else {"createdAt"})

    def in_order(
        self, selection: Selection, *, by: str, desc: bool, after: tuple[str, str] | None, reads: Reads
    ) -> Iterator[Prompt]:
        assert by in self.orders(selection), f"no index reads this selection by {by}"

        def where(p: Prompt) -> tuple[str, str]:
            return (str(getattr(p, by)), p.id)

        # The selection's keys and time ranges are key conditions: what they exclude is never read.
        chosen = [p for p in self._prompts.values() if selection.admits(public_view(p))]
        chosen.sort(key=where, reverse=desc)
        if after is not None:
            chosen = [p for p in chosen if (where(p) < after if desc else where(p) > after)]
        while chosen:
            size = reads.grant(1)
            if size <= 0:
                return
            page, chosen = chosen[:size], chosen[size:]
            reads.took(size, len(page))
            self.reads += len(page)
            yield from page

    def count(self, selection: Selection, *, most: int) -> int | None:
        admitted = sum(1 for p in self._prompts.values() if selection.admits(public_view(p)))
        self.reads += min(admitted, most + 1)
        return admitted if admitted <= most else None
