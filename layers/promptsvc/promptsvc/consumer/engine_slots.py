"""The ECS worker's engine slots, and the runs claimed ahead of them.

`concurrency` runs generate at once, one an engine slot. A few more (`ahead`) start before a slot
is free: they claim their prompt (the lease kept, the message kept hidden, `running` on the
thread) and wait at `take` for a slot, so a slot the engine frees goes to a claimed prompt at once
and the engine never waits for a claim's round trip to the prompts table. When the worker stops,
the runs still waiting are cancelled: the runner releases their prompts (back to `scheduled`,
uncounted) and the worker makes their messages visible at once.
"""

import asyncio


class SlotUse:
    """One run's place: a slot once `take` returns, given back by `done` (idempotent)."""

    def __init__(self, slots: "EngineSlots") -> None:
        self._slots = slots
        self._holds = False
        self._done = False
        self._closed = False  # the worker is stopping: no slot for this run
        self._waiting: asyncio.Task[object] | None = None

    async def take(self) -> None:
        """Wait for a free engine slot (first come, first served); cancelled once the worker
        stops, as a run that has not started generating is given back rather than started."""
        if self._closed:
            raise asyncio.CancelledError
        self._waiting = asyncio.current_task()
        try:
            await self._slots.free.acquire()
        finally:
            self._waiting = None
        self._holds = True
        self._slots.took()

    def done(self) -> None:
        """The engine is done with the run (or it never needed a slot): its place is free."""
        if self._done:
            return
        self._done = True
        self._slots.left(self, holding=self._holds)

    def close(self) -> None:
        """No slot for this run any more: cancel its wait, or refuse the one it is about to start."""
        if self._holds:
            return
        self._closed = True
        if self._waiting is not None:
            self._waiting.cancel()


class EngineSlots:
    def __init__(self, concurrency: int, ahead: int) -> None:
        self.concurrency = concurrency
        self.ahead = ahead
        self.free = asyncio.Semaphore(concurrency)
        self.changed = asyncio.Event()  # a run left: there may be room for another
        self._runs: set[SlotUse] = set()
        self.used = 0  # slots taken
        self.started = 0  # runs that took a slot, in all
        self.peak = 0

    def room(self) -> int:
        """How many more runs may start now (generating or claimed ahead)."""
        return self.concurrency + self.ahead - len(self._runs)

    def run(self) -> SlotUse:
        use = SlotUse(self)
        self._runs.add(use)
        return use

    def close(self) -> None:
        """The worker is stopping: the runs without a slot get none."""
        for use in list(self._runs):
            use.close()

    def took(self) -> None:
        self.used += 1
        self.started += 1
        self.peak = max(self.peak, self.used)

    def left(self, use: SlotUse, *, holding: bool) -> None:
        self._runs.discard(use)
        if holding:
            self.used -= 1
            self.free.release()
        self.changed.set()
