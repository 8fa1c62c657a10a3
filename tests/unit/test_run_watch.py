"""The cancel watch: one read a round for every run a process watches (consumer/run_watch.py)."""

import asyncio
from typing import Any, cast

from promptsvc.consumer.run_watch import UNREAD, RunWatch
from promptsvc.domain.ports import PromptStore
from promptsvc.domain.prompt import Prompt, RunState
from promptsvc.domain.status import Status


def prompt(prompt_id: str) -> Prompt:
    return Prompt(id=prompt_id, prompt="hi", modelId="m", template="", threadId="t", userId="alice")


class Store:
    """Answers `run_states`: the first read fails, `gone` is gone."""

    def __init__(self) -> None:
        self.reads: list[list[tuple[str, str]]] = []

    def run_states(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], RunState | None]:
        self.reads.append(sorted(keys))
        if len(self.reads) == 1:
            raise ConnectionError("table unreachable")
        return {key: None if key[1] == "gone" else RunState(Status.RUNNING, 1) for key in keys}


def test_each_round_reads_every_watched_run_at_once_and_a_failed_read_is_unread_not_gone() -> None:
    store = Store()

    async def scenario() -> list[list[Any]]:
        watch = RunWatch(cast(PromptStore, store), poll=0.01)
        rounds = []
        with watch.watching(prompt("a")) as a, watch.watching(prompt("gone")) as gone:
            for _ in range(2):
                rounds.append(list(await asyncio.gather(a.next(), gone.next())))
        return rounds

    rounds = asyncio.run(scenario())

    assert rounds == [[UNREAD, UNREAD], [RunState(Status.RUNNING, 1), None]]
    assert store.reads == [[("alice", "a"), ("alice", "gone")]] * 2  # one read a round for both
