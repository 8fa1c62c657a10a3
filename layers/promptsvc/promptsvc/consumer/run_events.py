"""The thread events of one run, written in order and off the generation path.

Statuses are written as they happen. Deltas are coalesced: the first goes out at once (the first
token is not held back), later ones are gathered and written at most once per `interval`
(0.25 s: about 4 delta events a second, whatever the engine's token rate), each at most
`MAX_DELTA_BYTES` of text (a long answer gathered in one interval, or a cached answer, is split
over several events: an event is a DynamoDB item, 400 KB at most). One writer task keeps
every event of the run in order. A failed write is logged, never fails the run: the answer in the
prompts table stays the record, and `GET .../events` or a reconnect shows what was stored.

A run's writes are fenced by its lease (`fence`): past the fence another consumer may claim the
prompt and start its events over, so nothing is written then, not even a write queued or retried
since; the run sees `fenced` and must not finish the prompt (its deltas are not all stored).
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from aws_lambda_powertools import Logger

from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.errors import DeadlinePassed
from promptsvc.domain.item_size import utf8_pieces
from promptsvc.domain.ports import ThreadEventLog
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.thread_events import ThreadEvent, delta_event, reset_event, status_event

logger = Logger(child=True)

_DELTAS = object()  # queue marker: flush the gathered deltas
MAX_DELTA_BYTES = 64 * 1024  # of text per delta event
_END = object()
_WRITE_ATTEMPTS = 3  # of one event, each already retried by the SDK and the log


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
        self._dropped = False
        self._deadline: float | None = None
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
        """Wait until everything queued so far (gathered deltas included) is written. The runner
        flushes before it changes the prompt's status, so a reader who sees the prompt finished
        finds every delta of the run already stored, and a run after it never overtakes them."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(done)
        if not self._writer.done():
            await asyncio.shield(done)

    async def close(self) -> None:
        """Write everything queued (deltas first, in order), then stop."""
        self._queue.put_nowait(_END)
        await asyncio.shield(self._writer)

    async def _write_all(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, asyncio.Future):
                if not item.done():
                    item.set_result(None)
                continue
            if item is _DELTAS:
                wait = self._next_delta_at - self._monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                text, self._buffer, self._deltas_queued = "".join(self._buffer), [], False
                for piece in utf8_pieces(text, MAX_DELTA_BYTES):
                    await self._write(delta_event(self._prompt, piece, now_rfc3339()))
                self._next_delta_at = self._monotonic() + self._interval
            else:
                assert isinstance(item, ThreadEvent)
                await self._write(item)

    async def _write(self, event: ThreadEvent) -> None:
        if self._dropped:
            return
        for attempt in range(_WRITE_ATTEMPTS):
            # Stamped as it is stored: readers date a seq still being written by its neighbours.
            stamped = replace(event, createdAt=now_rfc3339())
            try:
                await asyncio.to_thread(self._log.append, stamped, deadline=self._current_deadline)
            except DeadlinePassed:
                self.fenced, self._dropped, self._buffer = True, True, []
                logger.warning("run's lease fence passed: its events stop", prompt_id=event.promptId)
                return
            except Exception:
                if attempt + 1 == _WRITE_ATTEMPTS:
                    logger.exception(
                        "could not store a thread event", prompt_id=event.promptId, type=str(event.type)
                    )
                    return
                await asyncio.sleep(0.2 * 2**attempt)  # a throttled table: try again shortly
                continue
            self.written += 1
            return


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
