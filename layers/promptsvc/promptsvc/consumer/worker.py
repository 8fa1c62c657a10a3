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
"""

import asyncio
import collections
import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from promptsvc.adapters.clients import client
from promptsvc.adapters.ecs_task_protection import TaskProtection
from promptsvc.adapters.prompt_queue import SqsMessages
from promptsvc.consumer.engine_slots import EngineSlots, SlotUse
from promptsvc.consumer.message_deletes import MessageDeletes
from promptsvc.consumer.runner import PromptRunner
from promptsvc.consumer.settle import ReceivedMessage, Settlement, settle

logger = Logger(child=True)

# The long poll gets a thread of its own: waiting on an empty queue (20 s), it must not hold one
# of the threads the prompts' claims and answers run on.
_RECEIVING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receive")


@dataclass(frozen=True)
class WorkerOptions:
    queue_url: str
    concurrency: int = 32
    drain_seconds: float = 100.0
    visibility_seconds: int = 60  # what each keep-alive extends the message's visibility to
    wait_seconds: int = 20  # SQS long poll
    # Prompts received and claimed ahead of a free slot (at most a quarter of `concurrency`;
    # consumer/engine_slots.py): at 32 slots a slot frees every fraction of a second, so they wait
    # briefly, under their lease; one still waiting when the worker stops is released, uncounted,
    # and its message goes back to the queue at once.
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
    ) -> None:
        self._runner = runner
        self._messages = messages
        self._deletes = MessageDeletes(messages)
        self.options = options
        self._protection = protection
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        # Engine slots, and a few runs claimed ahead of them: a slot the engine frees goes to a
        # claimed prompt at once instead of waiting a claim (answers of one length end together
        # and free slots in bursts).
        self._slots = EngineSlots(options.concurrency, min(options.prefetch, options.concurrency // 4))
        # Received, not started yet (a moment, unless the worker is full).
        self._ready: collections.deque[tuple[dict[str, Any], float]] = collections.deque()
        self.settled: dict[str, int] = {}

    @property
    def received(self) -> int:
        """Prompts that took an engine slot."""
        return self._slots.started

    @property
    def peak_inflight(self) -> int:
        """The most engine slots taken at once."""
        return self._slots.peak

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
        receiving: asyncio.Future[list[dict[str, Any]]] | None = None
        try:
            while not self._stopping.is_set():
                self._start_ready()
                wanted = self._slots.room() - len(self._ready)
                if receiving is None and wanted > 0:
                    loop = asyncio.get_running_loop()
                    receiving = loop.run_in_executor(_RECEIVING, self._receive, min(10, wanted))
                self._slots.changed.clear()
                freed = asyncio.create_task(self._slots.changed.wait())
                waits: set[asyncio.Future[Any]] = {freed, stopping}
                await asyncio.wait(
                    waits | ({receiving} if receiving is not None else set()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                freed.cancel()
                if receiving is not None and receiving.done():
                    now = time.monotonic()
                    self._ready.extend((raw, now) for raw in receiving.result())
                    receiving = None
            if receiving is not None:
                # Stopped during a long poll: whatever it still returns goes straight back.
                receiving.add_done_callback(self._release_unstarted)
            self._release_ready()
            self._slots.close()  # runs claimed ahead of a slot are released, not started
            await self._drain()
            await self._deletes.close()
        finally:
            stopping.cancel()
            if protecting is not None:
                protecting.cancel()
                assert self._protection is not None
                await self._protection.set(False)

    def _start_ready(self) -> None:
        """Start received messages while there is room. One that waited so long its visibility may
        run out before the run's first keep-alive goes back to the queue instead."""
        while self._ready and self._slots.room() > 0:
            raw, received_at = self._ready.popleft()
            if time.monotonic() - received_at > self.options.visibility_seconds / 2:
                self._release([raw])
            else:
                self._start(raw)

    def _release_ready(self) -> None:
        """Received but never started (stopping): visible again at once, for another worker."""
        self._release([raw for raw, _ in self._ready])
        self._ready.clear()

    def _release(self, raws: list[dict[str, Any]]) -> None:
        for raw in raws:
            with contextlib.suppress(Exception):
                self._messages.change_visibility(raw["ReceiptHandle"], 0)

    def _receive(self, count: int) -> list[dict[str, Any]]:
        response = client("sqs").receive_message(
            QueueUrl=self.options.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self.options.wait_seconds,
            VisibilityTimeout=self.options.visibility_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        )
        return response.get("Messages", [])

    def _start(self, raw: dict[str, Any]) -> None:
        task = asyncio.create_task(self._work(raw, self._slots.run()))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _protect_while_busy(self) -> None:
        """Keep ECS task scale-in protection in step with whether prompts are in flight."""
        assert self._protection is not None
        while True:
            await self._protection.set(bool(self._inflight))
            await asyncio.sleep(1.0)

    async def _work(self, raw: dict[str, Any], slot: SlotUse) -> None:
        message = ReceivedMessage(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw["Body"],
            receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        )

        async def keep_alive() -> None:
            await asyncio.to_thread(
                self._messages.change_visibility, message.receipt_handle, self.options.visibility_seconds
            )

        try:
            settlement = await settle(
                self._runner,
                self._messages,
                message,
                lease_seconds=self.options.visibility_seconds + self.options.lease_margin_seconds,
                keep_alive=keep_alive,
                on_generated=slot.done,
                slot=slot.take,
            )
            if settlement is Settlement.DONE:
                self._deletes.delete(message.receipt_handle)
            self.settled[str(settlement)] = self.settled.get(str(settlement), 0) + 1
        except asyncio.CancelledError:
            # Drain time is over, or the worker stopped while the run waited for a slot: the
            # runner released the prompt; let the message go now.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    asyncio.to_thread(self._messages.change_visibility, message.receipt_handle, 0)
                )
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

    def _release_unstarted(self, receiving: "asyncio.Future[list[dict[str, Any]]]") -> None:
        if receiving.cancelled() or receiving.exception() is not None:
            return
        self._release(receiving.result())
