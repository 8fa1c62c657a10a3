"""The thread events of one run, written in order and off the generation path.

Statuses are written as they happen. Deltas are coalesced: the first goes out at once (the first
token is not held back), later ones are gathered and written at most once per `interval`
(0.25 s: about 4 delta events a second, whatever the engine's token rate; the last ones as soon as
the generation is over, since the answer waits for them), each at most
`MAX_DELTA_BYTES` of text (a long answer gathered in one interval, or a cached answer, is split
over several events: an event is a DynamoDB item, 400 KB at most). One writer task keeps
every event of the run in order, and writes what is queued when it gets to it together: the
`scheduled` (or `reset`) and `running` of a run's start take one block of seqs from the thread's
counter (three writes, not four); after that, while nobody else writes to the thread, each event
goes right after the run's own last seq (one write, not two), and the run's final write brings the
counter along (adapters/thread_event_table.py). A failed write is logged, never fails the run: the
answer in the prompts table stays the record, and `GET .../events` or a reconnect shows what was
stored.

The writes run on threads of their own: a process runs many runs, each writing several events a
second, and the calls a prompt waits on (its claim, the answer) must not queue behind them; when
the threads are busy, a run's deltas simply gather longer. Once a run's generation is over (a
flush or the end), its writes go before those of the runs still streaming (consumer/write_pool.py),
and gathered deltas stop waiting out their interval: the answer, then the message, wait for them.

A run's writes are fenced by its lease (`fence`): past the fence another consumer may claim the
prompt and start its events over, so nothing is written then, not even a write queued or retried
since; the run sees `fenced` and must not finish the prompt (its deltas are not all stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from msgspec.structs import replace

from promptsvc.consumer.write_pool import WritePool
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.errors import DeadlinePassed
from promptsvc.domain.item_size import utf8_pieces
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.thread_events import PartlyStored, ThreadEvent, delta_event, reset_event, status_event

if TYPE_CHECKING:
    from promptsvc.domain.ports import ThreadEventLog

logger = Logger(child=True)

_DELTAS = object()  # queue marker: flush the gathered deltas
MAX_DELTA_BYTES = 64 * 1024  # of text per delta event
_END = object()
_WRITE_ATTEMPTS = 3  # of one event, each already retried by the SDK and the log
# The writes of a run whose generation is over (its last deltas, which the answer waits for, and
# its closing status, which its message waits for) go before the deltas of the runs still
# streaming, which at 32 runs keep the threads busy on a slow table (consumer/write_pool.py).
_WRITES = WritePool(threads=6, name="events")


class RunEvents:
    def __init__(
        self,
        log: ThreadEventLog,
        prompt: Prompt,
        *,
        interval: float = 0.25,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._prompt = prompt
        self._interval = interval
        self._monotonic = monotonic
        self._buffer: list[str] = []
        self._deltas_queued = False
        self._next_delta_at = 0.0
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._over = asyncio.Event()  # a flush or the end is queued: gathered deltas wait no longer
        self._finishing = False  # the generation is over: the run's writes are waited on
        self._dropped = False
        self._deadline: float | None = None
        self._last_seq: int | None = None  # of the run's last stored event
        self._quiet = False  # the last write found nobody else writing to the thread
        self._writer = asyncio.create_task(self._write_all())
        self.written = 0
        self.fenced = False  # a write was refused past the fence: the run's events are incomplete

    def fence(self, deadline: float | None) -> None:
        """Write nothing at or after `deadline` (epoch seconds; None: no fence). A run moves it as
        it renews its lease, and lifts it once its own conditional write has ended the run."""
        self._deadline = deadline

    def _current_deadline(self) -> float | None:
        return self._deadline

    def status(self, status: str, error: str = "") -> None:
        self._queue.put_nowait(status_event(self._prompt, status, now_rfc3339(), error))

    def reset(self) -> None:
        self._queue.put_nowait(reset_event(self._prompt, now_rfc3339()))

    def delta(self, text: str) -> None:
        if not text:
            return
        self._buffer.append(text)
        if not self._deltas_queued:
            self._deltas_queued = True
            self._queue.put_nowait(_DELTAS)

    def drop(self) -> None:
        """Write nothing more: what is queued and gathered is discarded (a run that lost its lease
        must not write after the run that replaces it has started)."""
        self._dropped = True
        self._buffer = []

    async def flush(self) -> None:
        """Wait until everything queued so far (gathered deltas included, at once) is written.
        The runner flushes once the generation is over, before it changes the prompt's status,
        so a reader who sees the prompt finished finds every delta of the run already stored, and
        a run after it never overtakes them."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(done)
        self._over.set()
        self._finishing = True
        if not self._writer.done():
            await asyncio.shield(done)

    async def close(self) -> None:
        """Write everything queued (deltas first, in order), then stop."""
        self._queue.put_nowait(_END)
        self._over.set()
        self._finishing = True
        await asyncio.shield(self._writer)

    async def _write_all(self) -> None:
        """Write what is queued, in order, one batch at a time: everything queued when a batch
        starts (after the gathered deltas' interval, when they are in it) is written together."""
        while True:
            items = [await self._queue.get(), *self._queued()]
            # A flush or the end means the generation is over: its last deltas are all there is,
            # and the answer waits for them (the interval spaces out deltas still coming), so one
            # that comes while the deltas wait out the interval ends the wait.
            over = any(item is _END or isinstance(item, asyncio.Future) for item in items)
            if _DELTAS in items and not over:
                wait = self._next_delta_at - self._monotonic()
                if wait > 0:
                    self._over.clear()  # none is queued: it would be in `items`
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._over.wait(), wait)
                    items.extend(self._queued())
            if await self._write_batch(items):
                return

    def _queued(self) -> list[object]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def _write_batch(self, items: list[object]) -> bool:
        """Write the batch's events, then release the flushes waiting on it; True at the end."""
        events: list[ThreadEvent] = []
        flushes: list[asyncio.Future[None]] = []
        for item in items:
            if item is _END:
                break
            if isinstance(item, asyncio.Future):
                flushes.append(item)
            elif item is _DELTAS:
                text, self._buffer, self._deltas_queued = "".join(self._buffer), [], False
                events.extend(
                    delta_event(self._prompt, piece, now_rfc3339())
                    for piece in utf8_pieces(text, MAX_DELTA_BYTES)
                )
            else:
                assert isinstance(item, ThreadEvent)
                events.append(item)
        if events:
            await self._write(events, final=_END in items)
        if _DELTAS in items:
            self._next_delta_at = self._monotonic() + self._interval
        for flush in flushes:
            if not flush.done():
                flush.set_result(None)
        return _END in items

    async def _write(self, events: list[ThreadEvent], *, final: bool) -> None:
        for attempt in range(_WRITE_ATTEMPTS):
            if self._dropped:
                return
            error = await self._store(events, final)
            if error is None:
                return
            if isinstance(error, DeadlinePassed):
                self.fenced, self._dropped, self._buffer = True, True, []
                logger.warning("run's lease fence passed: its events stop", prompt_id=self._prompt.id)
                return
            if attempt + 1 == _WRITE_ATTEMPTS:
                logger.error(
                    "could not store thread events",
                    prompt_id=self._prompt.id,
                    types=[str(event.type) for event in events],
                    exc_info=error,
                )
                return
            await asyncio.sleep(0.2 * 2**attempt)  # a throttled table: try again shortly

    async def _store(self, events: list[ThreadEvent], final: bool) -> BaseException | None:
        """One write of the events; what failed, None when all were stored. Those stored before a
        failure are taken off `events`. While the run's last write found nobody else writing to
        the thread, the events go right after its last seq (one write each, not two:
        adapters/thread_event_table.py); its final write brings the thread's counter along."""
        # Stamped as they are stored: readers date a seq still being written by its neighbours.
        now = now_rfc3339()
        stamped = [replace(event, createdAt=now) for event in events]
        after = self._last_seq if self._quiet else None
        write = partial(
            self._log.append_many, stamped, deadline=self._current_deadline, after=after, final=final
        )
        try:
            stored = await asyncio.wrap_future(_WRITES.submit(lambda: self._finishing, write))
        except PartlyStored as partly:
            self._stored(partly.stored)
            del events[: len(partly.stored)]
            return partly.__cause__ or partly
        except Exception as error:
            return error
        self._stored(stored)
        return None

    def _stored(self, stored: list[ThreadEvent]) -> None:
        """Note the seqs the run's events got: did they follow its previous ones?"""
        if not stored:
            return
        followed = self._last_seq is None or stored[0].seq == self._last_seq + 1
        self._quiet = followed and all(b.seq == a.seq + 1 for a, b in itertools.pairwise(stored))
        self._last_seq = stored[-1].seq
        self.written += len(stored)


class NoEvents:
    """Stands in for RunEvents where no thread events are kept."""

    written = 0
    fenced = False

    def fence(self, deadline: float | None) -> None:
        return None

    def status(self, status: str, error: str = "") -> None:
        return None

    def reset(self) -> None:
        return None

    def delta(self, text: str) -> None:
        return None

    def drop(self) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None
