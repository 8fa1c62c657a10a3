"""Threads for the runs' thread-event writes that serve the writes someone waits on first.

A process runs many runs, each writing a delta event a few times a second while it streams; on a
slow table those writes queue. A run whose generation is over has an answer (and then its message)
waiting on its last writes, so its queued writes go before the deltas of runs still streaming,
including a write it queued before its generation ended. Each write says, when a thread picks it,
whether it is urgent; among equals the first queued goes first.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Urgent = Callable[[], bool]  # asked when a thread picks the write


class WritePool:
    def __init__(self, threads: int, name: str) -> None:
        self._threads = threads
        self._name = name
        self._started = 0  # threads are started as writes need them
        self._idle = 0
        self._queued: list[tuple[int, Urgent, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()

    def submit(self, urgent: Urgent, work: Callable[[], Any]) -> Future[Any]:
        """Run `work` on one of the threads; its future (cancelled before it starts, it never runs)."""
        future: Future[Any] = Future()
        with self._changed:
            self._queued.append((next(self._order), urgent, work, future))
            if len(self._queued) > self._idle and self._started < self._threads:
                self._started += 1
                name = f"{self._name}_{self._started}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()
            self._changed.notify()
        return future

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._idle += 1
                while not self._queued:
                    self._changed.wait()
                self._idle -= 1
                job = min(self._queued, key=lambda queued: (not queued[1](), queued[0]))
                self._queued.remove(job)
            _, _, work, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = work()
            except BaseException as error:  # handed to whoever awaits the future
                future.set_exception(error)
            else:
                future.set_result(result)
