"""RunEvents: statuses in order, the first delta at once, later deltas coalesced per interval."""

import asyncio
import time

from promptsvc.consumer.run_events import RunEvents
from promptsvc.domain.errors import DeadlinePassed
from promptsvc.domain.ports import Deadline
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.thread_events import EventType, ThreadEvent

PROMPT = Prompt(id="p1", prompt="hi", modelId="m", template="", threadId="t1", userId="alice")


class MemoryLog:
    def __init__(self) -> None:
        self.events: list[ThreadEvent] = []

    def append(self, event: ThreadEvent, *, deadline: Deadline | None = None) -> ThreadEvent:
        until = deadline() if deadline is not None else None
        if until is not None and time.time() >= until:
            raise DeadlinePassed("past the deadline")
        stored = event.with_seq(len(self.events) + 1)
        self.events.append(stored)
        return stored

    def append_many(
        self,
        events: list[ThreadEvent],
        *,
        deadline: Deadline | None = None,
        after: int | None = None,
        final: bool = False,
    ) -> list[ThreadEvent]:
        return [self.append(event, deadline=deadline) for event in events]

    def after(self, thread_id: str, after_seq: int, limit: int) -> list[ThreadEvent]:
        return [e for e in self.events if e.seq > after_seq][:limit]


async def settle() -> None:
    for _ in range(20):  # let the writer task and its worker threads run
        await asyncio.sleep(0.01)


def test_the_first_delta_is_written_at_once_and_later_ones_wait_for_the_interval() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        log = MemoryLog()
        events = RunEvents(log, PROMPT, interval=3600)  # an interval no test run reaches
        events.status("running")
        events.delta("first ")
        await settle()
        after_first = [e.text or e.status or "" for e in log.events]
        events.delta("second ")
        events.delta("third ")
        await settle()
        held = [e.text or e.status or "" for e in log.events]
        return after_first, held  # asyncio.run cancels the writer, still waiting out the interval

    after_first, held = asyncio.run(scenario())

    assert after_first == ["running", "first "]
    assert held == ["running", "first "]  # coalesced, waiting for the interval


def test_close_flushes_the_pending_deltas_before_the_final_status_in_order() -> None:
    async def scenario() -> list[tuple[str, str | None]]:
        log = MemoryLog()
        events = RunEvents(log, PROMPT, interval=0.05)
        events.status("scheduled")
        events.status("running")
        for word in ["a ", "b ", "c ", "d "]:
            events.delta(word)
        events.status("completed")
        await events.close()
        return [(str(e.type), e.text or e.status) for e in log.events]

    written = asyncio.run(scenario())

    assert written[:2] == [("status", "scheduled"), ("status", "running")]
    assert written[-1] == ("status", "completed")
    deltas = [text for kind, text in written if kind == str(EventType.DELTA)]
    assert "".join(deltas) == "a b c d "  # nothing lost, in order, coalesced into few writes
    assert len(deltas) <= 2


def test_a_failing_log_never_fails_the_run() -> None:
    class Broken(MemoryLog):
        def append(self, event: ThreadEvent, *, deadline: Deadline | None = None) -> ThreadEvent:
            raise ConnectionError("table unreachable")

    async def scenario() -> int:
        events = RunEvents(Broken(), PROMPT, interval=0.01)
        events.status("running")
        events.delta("x")
        await events.close()
        return events.written

    assert asyncio.run(scenario()) == 0


def test_past_its_fence_a_run_writes_nothing_more_and_knows_it() -> None:
    """A run whose lease fence passed (another consumer may have started the prompt over) stores
    no queued or later event, until the fence is lifted by the run's own final write."""

    async def scenario() -> tuple[list[str | None], bool]:
        log = MemoryLog()
        events = RunEvents(log, PROMPT, interval=0.01)
        events.fence(time.time() + 3600)
        events.status("running")
        await events.flush()
        events.fence(time.time() - 1)  # the lease ran out
        events.delta("late ")
        events.status("completed")
        await events.flush()
        fenced = events.fenced
        events.fence(None)
        events.status("errored")  # dropped for good once fenced
        await events.close()
        return [e.text or e.status for e in log.events], fenced

    written, fenced = asyncio.run(scenario())

    assert written == ["running"]
    assert fenced is True


def test_a_flush_does_not_wait_out_the_interval_of_the_gathered_deltas() -> None:
    """Once the generation is over its last deltas are all there is, and the answer waits for
    them: a flush ends the interval the gathered deltas were waiting out."""

    async def scenario() -> list[str]:
        log = MemoryLog()
        events = RunEvents(log, PROMPT, interval=3600)  # an interval no test run reaches
        events.delta("first ")
        await settle()
        events.delta("second ")  # gathered, waiting out the interval
        await settle()
        await asyncio.wait_for(events.flush(), 30)  # TimeoutError if it waited out the interval
        return [e.text or "" for e in log.events]

    assert asyncio.run(scenario()) == ["first ", "second "]
