"""The thread-event write pool serves the writes someone waits on first, the others in order."""

import threading
import time
from concurrent.futures import Future

from promptsvc.consumer.write_pool import WritePool


def test_urgent_writes_go_first_and_the_others_in_the_order_queued() -> None:
    pool = WritePool(threads=1, name="test-writes")
    gate = threading.Event()
    done: list[str] = []
    finishing = {"a": False, "b": False, "c": False}

    def write(name: str) -> str:
        done.append(name)
        return name

    blocker = pool.submit(lambda: False, gate.wait)  # the one thread is busy until the gate opens
    while not blocker.running():
        time.sleep(0.01)
    queued = {
        name: pool.submit(lambda name=name: finishing[name], lambda name=name: write(name)) for name in "abc"
    }
    finishing["c"] = True  # its run's generation ended after its write was queued
    gate.set()

    assert [queued[name].result(timeout=10) for name in "abc"] == ["a", "b", "c"]
    assert blocker.result(timeout=10) is True
    assert done == ["c", "a", "b"]


def test_a_write_cancelled_before_it_starts_never_runs_and_failures_reach_the_caller() -> None:
    pool = WritePool(threads=1, name="test-writes")
    gate = threading.Event()
    ran: list[str] = []
    blocker = pool.submit(lambda: False, gate.wait)
    cancelled: Future[None] = pool.submit(lambda: False, lambda: ran.append("cancelled"))
    failing = pool.submit(lambda: False, lambda: 1 / 0)

    assert cancelled.cancel()
    gate.set()

    assert blocker.result(timeout=10) is True
    assert isinstance(failing.exception(timeout=10), ZeroDivisionError)
    assert ran == []
