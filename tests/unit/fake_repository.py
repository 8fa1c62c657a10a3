"""An in-memory PromptRepository with the DynamoDB adapter's semantics (adapters/prompt_table.py).

Items are stored the way the adapter stores them: every Prompt field, `status` as a string, and
the derived attributes `pk` (userId#id, the table key: ids are per user), `sk` (createdAt#id),
`userThread` (userId#threadId) and `userStatus` (userId#status). Reads return copies, so a
caller cannot change what is stored.
"""

from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from typing import Any

from promptsvc.domain.names import scoped
from promptsvc.domain.prompt import Prompt, RunState
from promptsvc.domain.query import SORT_ATTRIBUTE, Index
from promptsvc.domain.status import Status, sources_for

_PROMPT_FIELDS = tuple(Prompt.__dataclass_fields__)


def to_item(prompt: Prompt) -> dict[str, Any]:
    item = asdict(prompt)
    item["status"] = str(prompt.status)
    item["pk"] = scoped(prompt.userId, prompt.id)
    item[SORT_ATTRIBUTE] = prompt.sort_key
    item["userThread"] = f"{prompt.userId}#{prompt.threadId}"
    item["userStatus"] = f"{prompt.userId}#{prompt.status}"
    return item


def to_prompt(item: dict[str, Any]) -> Prompt:
    data = {name: item[name] for name in _PROMPT_FIELDS if name in item}
    data["status"] = Status(data["status"])
    return Prompt(**data)


class FakePromptRepository:
    def __init__(self, prompts: list[Prompt] | None = None) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self.items_read = 0  # by query_partition, as DynamoDB would bill them
        self.scans = 0
        for prompt in prompts or []:
            self.put_new(prompt)

    # -- writes ------------------------------------------------------------------------------

    def put_new(self, prompt: Prompt) -> Prompt | None:
        key = scoped(prompt.userId, prompt.id)
        if key in self._items:
            return None
        self._items[key] = to_item(prompt)
        return prompt

    def get(self, user_id: str, prompt_id: str) -> Prompt | None:
        item = self._items.get(scoped(user_id, prompt_id))
        return to_prompt(item) if item else None

    def delete(self, user_id: str, prompt_id: str) -> Prompt | None:
        item = self._items.pop(scoped(user_id, prompt_id), None)
        return to_prompt(item) if item else None

    def run_state(self, user_id: str, prompt_id: str) -> RunState | None:
        prompt = self.get(user_id, prompt_id)
        return RunState(prompt.status, prompt.runCount) if prompt else None

    def transition(
        self, prompt: Prompt, target: Status, *, run_count: int | None = None, **fields: Any
    ) -> Prompt | None:
        stored = self.get(prompt.userId, prompt.id)
        if stored is None or stored.status not in sources_for(target):
            return None
        if run_count is not None and stored.runCount != run_count:
            return None
        updated = replace(stored, status=target, **fields)
        self._items[scoped(prompt.userId, prompt.id)] = to_item(updated)
        return updated

    def claim(self, prompt: Prompt, now: str) -> Prompt | None:
        stored = self.get(prompt.userId, prompt.id)
        if stored is None or stored.status not in sources_for(Status.RUNNING):
            return None
        updated = replace(
            stored, status=Status.RUNNING, runCount=stored.runCount + 1, lastRun=now, updatedAt=now
        )
        self._items[scoped(prompt.userId, prompt.id)] = to_item(updated)
        return updated

    # -- reads for listing -------------------------------------------------------------------

    def get_many(self, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        return [dict(self._items[k]) for k in keys if k in self._items]

    def query_partition(
        self,
        index: Index,
        key: str,
        *,
        after_sk: str | None,
        desc: bool,
        page_size: int,
        next_page_size: Callable[[], int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Like a paginated index Query: requests of `page_size` items (DynamoDB's Limit), later
        ones of `next_page_size()` when given; each request's items are counted in `items_read`."""
        partition = [item for item in self._items.values() if item.get(index.key_attribute) == key]
        partition.sort(key=lambda item: item[SORT_ATTRIBUTE], reverse=desc)
        if after_sk is not None:
            partition = [
                item
                for item in partition
                if (item[SORT_ATTRIBUTE] < after_sk if desc else item[SORT_ATTRIBUTE] > after_sk)
            ]
        limit = page_size
        while True:
            page, partition = partition[:limit], partition[limit:]
            self.items_read += len(page)
            for item in page:
                yield dict(item)
            if not partition:
                return
            if next_page_size is not None:
                limit = max(1, next_page_size())

    def count_partition(self, index: Index, key: str) -> int:
        return sum(1 for item in self._items.values() if item.get(index.key_attribute) == key)

    def scan(self) -> Iterator[dict[str, Any]]:
        self.scans += 1
        for item in list(self._items.values()):
            yield dict(item)
