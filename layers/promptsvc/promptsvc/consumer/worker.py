"""The ECS GPU worker: a long-running host for the consumer core (`promptsvc worker`).

It long-polls the prompts queue and keeps up to `concurrency` prompts generating at once (one
asyncio task each), so a continuous-batching engine such as vLLM always has a full batch. A
prompt gives its slot back as soon as the engine is done with it: the answer write and the
message delete of one prompt overlap the next prompt's work (settled messages are deleted ten to
a call: consumer/message_deletes.py), and a few prompts are received and claimed ahead of a free
slot (`prefetch`), so a freed slot starts its next prompt's generation without a queue or table
round trip. While a prompt
runs, its message's visibility is extended with the lease. On SIGTERM (ECS stopping the task,
e.g. on scale-in) it stops receiving, lets in-flight prompts finish for up to `drain_seconds`,
then releases the rest: each goes back to `scheduled`, uncounted, and its message becomes visible
at once for another worker.

With two lanes (fair queueing, domain/lanes.py) it reads both queues, each with its own long poll,
and settles each message on the queue it came from. It prefers the fast lane without starving the
bulk lane: while both have messages received and waiting for room, `fast_share` of every 4 starts
go to the fast lane and the rest to the bulk lane; and the fast lane's poll stays open even when
the worker is full (for one message of each lane), so a quiet user's prompt is in hand the moment
it is sent and starts at the next free slot instead of behind a burst's received messages.
"""

import asyncio
import collections
import contextlib
import functools
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from aws_lambda_powertools import Logger

from promptsvc.adapters.clients import client
from promptsvc.adapters.ecs_task_protection import TaskProtection
from promptsvc.adapters.prompt_queue import SqsMessages
from promptsvc.consumer.engine_slots import EngineSlots, SlotUse
from promptsvc.consumer.fleet_metrics import FleetMetrics
from promptsvc.consumer.message_deletes import MessageDeletes
from promptsvc.consumer.runner import PromptRunner
from promptsvc.consumer.settle import ReceivedMessage, Settlement, settle

logger = Logger(child=True)

# The long polls get threads of their own (one per lane): waiting on an empty queue (20 s), they
# must not hold one of the threads the prompts' claims and answers run on.
_RECEIVING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="receive")
LANE_TURNS = 4  # a cycle of starts while both lanes wait: `fast_share` of them go to the fast lane


class WorkerOptions(msgspec.Struct, frozen=True):
    queue_url: str
    bulk_queue_url: str = ""  # the bulk lane's queue (domain/lanes.py); empty: one lane
    fast_share: int = 3  # of every LANE_TURNS starts while both lanes have messages waiting
    concurrency: int = 32
    drain_seconds: float = 100.0
    visibility_seconds: int = 60  # what each keep-alive extends the message's visibility to
    wait_seconds: int = 20  # SQS long poll
    # Prompts received and claimed ahead of a free slot (at most a quarter of `concurrency`;
    # consumer/engine_slots.py): at 32 slots a slot frees every fraction of a second, so they wait
    # briefly, under their lease; one still waiting when the worker stops is released, uncounted,
    # and its message goes back to the queue at once. Not more: a prompt claimed ahead waits in
    # this task while another task may have a free slot, and the fleet's scaling does not count it
    # (consumer/fleet_metrics.py, infra/ecs-gpu/README.md).
    prefetch: int = 8
    # The prompt's lease outlives the message's visibility by this much, so when a worker dies
    # the message reappears first and finds the prompt busy only briefly.
    lease_margin_seconds: float = 30.0


class Worker:
    def __init__(
        self,
        runner: PromptRunner,
        messages: SqsMessages,
        options: WorkerOptions,
        *,
        protection: TaskProtection | None = None,
        fleet_metrics: FleetMetrics | None = None,
    ) -> None:
        self._runner = runner
        self._messages = messages
        # Each lane's messages are settled (deleted, extended, released) on their own queue.
        self._lanes = {
            url: messages.of_queue(url) for url in (options.queue_url, options.bulk_queue_url) if url
        }
        wrong = [url for url, lane in self._lanes.items() if lane.queue_url != url]
        if wrong:
            raise ValueError(f"the worker's messages do not settle on {wrong}: give them both lanes")
        self._deletes = {url: MessageDeletes(lane) for url, lane in self._lanes.items()}
        self._turn = 0  # starts made while both lanes had messages waiting
        self.options = options
        self._protection = protection
        self._fleet_metrics = fleet_metrics  # prompts running, for the fleet's scaling
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        # Engine slots, and a few runs claimed ahead of them: a slot the engine frees goes to a
        # claimed prompt at once instead of waiting a claim (answers of one length end together
        # and free slots in bursts).
        self._slots = EngineSlots(options.concurrency, min(options.prefetch, options.concurrency // 4))
        # Received, not started yet (a moment, unless the worker is full): message, when, its queue.
        self._ready: collections.deque[tuple[dict[str, Any], float, str]] = collections.deque()
        self.settled: dict[str, int] = {}

    @property
    def received(self) -> int:
        """Prompts that took an engine slot."""
        return self._slots.started

    @property
    def peak_inflight(self) -> int:
        """The most engine slots taken at once."""
        return self._slots.peak

    def running(self) -> int:
        """Prompts generating now, one an engine slot (not those claimed ahead of a slot)."""
        return self._slots.used

    def stop(self) -> None:
        """Stop receiving and drain (what SIGTERM and SIGINT do)."""
        if not self._stopping.is_set():
            logger.info("stopping: draining in-flight prompts", inflight=len(self._inflight))
            self._stopping.set()

    async def run(self, *, handle_signals: bool = True) -> None:
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        stopping = asyncio.create_task(self._stopping.wait())
        protecting = asyncio.create_task(self._protect_while_busy()) if self._protection else None
        metrics = self._fleet_metrics
        publishing = asyncio.create_task(metrics.run(self.running)) if metrics else None
        receiving: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}  # by queue
        try:
            while not self._stopping.is_set():
                self._start_ready()
                self._poll(receiving)
                self._slots.changed.clear()
                freed = asyncio.create_task(self._slots.changed.wait())
                waits: set[asyncio.Future[Any]] = {freed, stopping, *receiving.values()}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                freed.cancel()
                now = time.monotonic()
                for url, done in [(url, future) for url, future in receiving.items() if future.done()]:
                    del receiving[url]
                    self._ready.extend((raw, now, url) for raw in done.result())
            for url, future in receiving.items():
                # Stopped during a long poll: whatever it still returns goes straight back.
                future.add_done_callback(functools.partial(self._release_unstarted, url))
            self._release_ready()
            self._slots.close()  # runs claimed ahead of a slot are released, not started
            await self._drain()
            for deletes in self._deletes.values():
                await deletes.close()
        finally:
            stopping.cancel()
            if publishing is not None:
                publishing.cancel()
            if protecting is not None:
                protecting.cancel()
                assert self._protection is not None
                await self._protection.set(False)

    def _poll(self, receiving: dict[str, "asyncio.Future[list[dict[str, Any]]]"]) -> None:
        """Start a receive on each lane that has none running, for the room left. With two lanes
        each lane's poll stays open while the worker is full, for one message when none of the
        lane's is waiting: a quiet user's prompt (fast) is in hand for the next free slot, and a
        bulk one is there for the bulk lane's turns (`_next_ready`)."""
        loop = asyncio.get_running_loop()
        wanted = self._slots.room() - len(self._ready)
        for url in self._lanes:
            if url in receiving:
                continue
            count = wanted
            if len(self._lanes) > 1 and not any(lane == url for _, _, lane in self._ready):
                count = max(1, wanted)
            if count > 0:
                receiving[url] = loop.run_in_executor(_RECEIVING, self._receive, url, min(10, count))

    def _start_ready(self) -> None:
        """Start received messages while there is room (`_next_ready` picks the lane). One that
        waited so long its visibility may run out before the run's first keep-alive goes back to
        the queue instead."""
        while self._ready and self._slots.room() > 0:
            raw, received_at, url = self._next_ready()
            if time.monotonic() - received_at > self.options.visibility_seconds / 2:
                self._release(url, [raw])
            else:
                self._start(raw, url)

    def _next_ready(self) -> tuple[dict[str, Any], float, str]:
        """The next message to start, in the order received within a lane: while both lanes have
        messages waiting, `fast_share` of every LANE_TURNS starts take the fast lane's, the others
        the bulk lane's (so neither starves); else the one lane's."""
        lanes = {url for _, _, url in self._ready}
        if len(lanes) > 1:
            fast_turn = self._turn % LANE_TURNS < self.options.fast_share
            self._turn += 1
            pick = self.options.queue_url if fast_turn else self.options.bulk_queue_url
            for index, entry in enumerate(self._ready):
                if entry[2] == pick:
                    del self._ready[index]
                    return entry
        return self._ready.popleft()

    def _release_ready(self) -> None:
        """Received but never started (stopping): visible again at once, for another worker."""
        for raw, _, url in self._ready:
            self._release(url, [raw])
        self._ready.clear()

    def _release(self, url: str, raws: list[dict[str, Any]]) -> None:
        for raw in raws:
            with contextlib.suppress(Exception):
                self._lanes[url].change_visibility(raw["ReceiptHandle"], 0)

    def _receive(self, url: str, count: int) -> list[dict[str, Any]]:
        response = client("sqs").receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self.options.wait_seconds,
            VisibilityTimeout=self.options.visibility_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        )
        return response.get("Messages", [])

    def _start(self, raw: dict[str, Any], url: str) -> None:
        task = asyncio.create_task(self._work(raw, url, self._slots.run()))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _protect_while_busy(self) -> None:
        """Keep ECS task scale-in protection in step with whether prompts are in flight."""
        assert self._protection is not None
        while True:
            await self._protection.set(bool(self._inflight))
            await asyncio.sleep(1.0)

    async def _work(self, raw: dict[str, Any], url: str, slot: SlotUse) -> None:
        messages = self._lanes[url]  # the queue it came from
        message = ReceivedMessage(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw["Body"],
            receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        )

        async def keep_alive() -> None:
            await asyncio.to_thread(
                messages.change_visibility, message.receipt_handle, self.options.visibility_seconds
            )

        try:
            settlement = await settle(
                self._runner,
                messages,
                message,
                lease_seconds=self.options.visibility_seconds + self.options.lease_margin_seconds,
                keep_alive=keep_alive,
                on_generated=slot.done,
                slot=slot.take,
            )
            if settlement is Settlement.DONE:
                self._deletes[url].delete(message.receipt_handle)
            self.settled[str(settlement)] = self.settled.get(str(settlement), 0) + 1
        except asyncio.CancelledError:
            # Drain time is over, or the worker stopped while the run waited for a slot: the
            # runner released the prompt; let the message go now.
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.to_thread(messages.change_visibility, message.receipt_handle, 0))
            raise
        except Exception:
            logger.exception("settling a message failed; it comes back after its visibility timeout")
        finally:
            slot.done()

    async def _drain(self) -> None:
        if not self._inflight:
            return
        _, pending = await asyncio.wait(set(self._inflight), timeout=self.options.drain_seconds)
        if pending:
            logger.warning("drain time is over: releasing unfinished prompts", count=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _release_unstarted(self, url: str, receiving: "asyncio.Future[list[dict[str, Any]]]") -> None:
        if receiving.cancelled() or receiving.exception() is not None:
            return
        self._release(url, receiving.result())
