"""One read per poll for all the runs a consumer process is watching (consumer/generation.py).

While the engine streams, each run looks at its prompt every `poll` seconds for a cancel, a
removal or a new claim. Read one by one, that is a GetItem per run per poll: 64 a second for the
32 runs of an ECS worker, more than all its other calls together. Here one round reads the state
of every watched run with one BatchGetItem (100 prompts a call), projected to the status and run
count, and hands each run its own. A run started between rounds gets its first state at the next
round, no later than `poll` plus the read, as when it read alone. A round whose read fails (or
leaves a prompt unprocessed) hands those runs `UNREAD`; they look again at the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import msgspec
from aws_lambda_powertools import Logger

from promptsvc.domain.prompt import Prompt, RunState

if TYPE_CHECKING:
    from promptsvc.domain.ports import PromptStore

logger = Logger(child=True)

Key = tuple[str, str]  # a prompt's owner and id


class Unread:
    """A round that could not read this run's prompt (its state is unknown, not gone)."""


UNREAD = Unread()


class Watched:
    """One run's place in the rounds."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self._next: asyncio.Future[RunState | Unread | None] | None = None

    async def next(self) -> RunState | Unread | None:
        """The prompt's state as the next round reads it (None: it is gone)."""
        self._next = asyncio.get_running_loop().create_future()
        return await self._next

    def deliver(self, state: RunState | Unread | None) -> None:
        if self._next is not None and not self._next.done():
            self._next.set_result(state)


class _Rounds(msgspec.Struct):
    """The runs watched in one event loop, and the task reading for them."""

    members: list[Watched] = msgspec.field(default_factory=list)
    task: asyncio.Task[None] | None = None


class RunWatch:
    def __init__(self, repository: PromptStore, poll: float) -> None:
        self._repo = repository
        self._poll = poll
        self._loops: dict[
            asyncio.AbstractEventLoop, _Rounds
        ] = {}  # a test runs each run in a loop of its own

    @contextlib.contextmanager
    def watching(self, prompt: Prompt) -> Iterator[Watched]:
        """Take part in the rounds for as long as the block lasts."""
        loop = asyncio.get_running_loop()
        rounds = self._loops.setdefault(loop, _Rounds())
        watched = Watched((prompt.userId, prompt.id))
        rounds.members.append(watched)
        if rounds.task is None or rounds.task.done():
            rounds.task = loop.create_task(self._run(loop, rounds))
        try:
            yield watched
        finally:
            rounds.members.remove(watched)

    async def _run(self, loop: asyncio.AbstractEventLoop, rounds: _Rounds) -> None:
        """A round every `poll` seconds while any run takes part."""
        try:
            while rounds.members:
                await asyncio.sleep(self._poll)
                if rounds.members:
                    await self._round(list(rounds.members))
        finally:
            if self._loops.get(loop) is rounds and not rounds.members:
                del self._loops[loop]

    async def _round(self, members: list[Watched]) -> None:
        keys = list(dict.fromkeys(member.key for member in members))
        try:
            states = await asyncio.to_thread(self._repo.run_states, keys)
        except Exception:
            logger.exception("could not read the watched prompts; looking again next round", count=len(keys))
            states = {}
        for member in members:
            member.deliver(states.get(member.key, UNREAD))
