"""Fair queueing: how long a quiet tenant's prompts wait while another tenant's burst is queued.

Target (issue 13, part 4): tenant B's max wait under tenant A's burst of 2,000 prompts is within
2 x B's max wait with no A at all, plus one prompt's run time.

What runs: moto as its own process (`moto.server`, its DynamoDB writes atomic), the template's
tables and queues created from template.yaml (`FastLanePromptsPerUser` K, default 10), and the
real consumer: the ECS worker (`promptsvc.consumer.worker.Worker`, at concurrency C, default 8) in
a thread of this process with the mock engine, whose run time per prompt is fixed (`MOCK_CHUNKS`
chunks, each after `MOCK_CHUNK_DELAY_SECONDS`: 4 x 0.5 s = 2.00 s). The worker, not the Lambda
consumer as `promptsvc dev` hosts it: how the worker shares its slots between the lanes is this
project's code, while on Lambda the share is each event source mapping's `MaximumConcurrency`,
which AWS enforces and `promptsvc dev` does not emulate. Prompts are added through
`PromptService.add` with the API's limits (`wiring.prompt_service` with `wiring.limit_service`),
so each lane is chosen by the real add: the transaction on the user's lane counter
(adapters/prompt_table.py).

A prompt's *wait* is the time from its add returning to its completion (the worker's runner
returning `completed`, noted by a thin wrapper), so it includes its own run time, in both phases
alike; a prompt claimed ahead of a free engine slot (the worker's prefetch) is still waiting.

- Phase 1 (no load): B adds 10 prompts alone; their waits.
- Phase 2: A adds 2,000 prompts (off the clock, 4 threads, the worker stopped: on a 2-core machine
  the adds would otherwise share moto with it for minutes), the worker starts and works A's burst
  for 3 run times (every slot busy with A's prompts), then B adds 10; B's waits. The run stops
  once B's 10 completed (A's prompts need not drain): the worker is stopped (what it holds is
  released) and moto with it.

Printed: A's and B's prompts per lane, B's p50 and max wait in both phases, the run time per
prompt, C and K, how many of A's messages were queued when B added (what B would wait behind in
one FIFO queue), and last the headline against its target; the exit status is 1 when it is missed.

What this proves: moto does not reorder a standard queue's messages by `MessageGroupId`, so the
figure is the fairness this code provides (the lanes and the worker's preference for the fast
lane), not SQS fair queues' (which on AWS also keep a quiet group's dwell time low within a lane).

Run from the repository root: `.venv/bin/python benchmarks/fairness.py` (`--help` for the knobs).
Everything listens on 127.0.0.1 only, and every process it starts is stopped on the way out.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import consumer_efficiency  # a sibling script: its moto process
from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.consumer.outcome import Outcome
from promptsvc.consumer.runner import PromptRunner, RunResult
from promptsvc.consumer.worker import Worker, WorkerOptions
from promptsvc.domain.keys import Principal, Role
from promptsvc.domain.prompt import NewPrompt
from promptsvc.services.prompts import PromptService
from promptsvc.settings import Settings, get_settings
from promptsvc_dev.dev import aws_environment
from promptsvc_dev.template import create_resources

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
PHASE_SECONDS = 120.0  # B's prompts not done by then: a failure, not a measurement
ADD_THREADS = 4
WARM_UP_RUNS = 3  # B adds once the worker has worked A's burst this many run times


@dataclass(frozen=True)
class Config:
    burst: int = 2000  # A's prompts
    quiet: int = 10  # B's prompts
    concurrency: int = 8  # C: the worker's slots
    per_user: int = 10  # K: FastLanePromptsPerUser
    chunks: int = 4
    chunk_delay: float = 0.5  # run time per prompt: chunks x chunk_delay

    @property
    def run_seconds(self) -> float:
        return self.chunks * self.chunk_delay


# ----------------------------------------------------------------------------------------------
# moto, as its own process


# moto's server with DynamoDB's atomic conditional writes (dev/promptsvc_dev/moto_atomic.py): the
# adds' threads and the worker's writes meet on the lane counters, as they would in DynamoDB; and
# with a cheaper rollback copy for its transactions (benchmarks/moto_transactions.py), without
# which 2,000 adds into one table take quadratic time.
_MOTO = consumer_efficiency.patched_moto("promptsvc_dev.moto_atomic", "moto_transactions")


def moto_server() -> contextlib.AbstractContextManager[str]:
    return consumer_efficiency.moto_server(_MOTO)


def configure(endpoint: str, config: Config) -> Settings:
    """Point boto3 at moto, create the template's resources (with the lanes' K), and take the API's
    and the consumer's environments (one process here), with the mock engine's run time."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL_"):
            del os.environ[name]  # a service-specific endpoint would bypass moto
    os.environ.update(aws_environment(endpoint))
    clients.reset()
    stack = create_resources(TEMPLATE, parameters={"FastLanePromptsPerUser": str(config.per_user)})
    os.environ.update(stack.function_environment("ApiFunction"))
    os.environ.update(stack.function_environment("ConsumerFunction"))
    os.environ.update(
        {
            "ENGINE": "mock",
            "MOCK_CHUNKS": str(config.chunks),
            "MOCK_CHUNK_DELAY_SECONDS": str(config.chunk_delay),
        }
    )
    get_settings.cache_clear()
    clients.reset()
    return get_settings()


# ----------------------------------------------------------------------------------------------
# The worker, and when each prompt completed


class Completions:
    """Wraps the runner: notes when each prompt's run returned `completed` (monotonic seconds)."""

    def __init__(self, runner: PromptRunner) -> None:
        self._runner = runner
        self._lock = threading.Lock()
        self.at: dict[str, float] = {}
        self.outcomes: Counter[str] = Counter()

    async def run(self, prompt_id: str, **kwargs: Any) -> RunResult:
        result = await self._runner.run(prompt_id, **kwargs)
        with self._lock:
            self.outcomes[str(result.outcome)] += 1
            if result.outcome is Outcome.COMPLETED:
                self.at.setdefault(prompt_id, time.monotonic())
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)

    def done(self, ids: list[str]) -> bool:
        with self._lock:
            return all(prompt_id in self.at for prompt_id in ids)


@contextlib.contextmanager
def running_worker(settings: Settings, config: Config) -> "Iterator[WorkerThread]":
    worker = WorkerThread(settings, config)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


class WorkerThread:
    """The worker's event loop in a thread of its own, so adds go on meanwhile."""

    def __init__(self, settings: Settings, config: Config) -> None:
        self.completions = Completions(wiring.prompt_runner(settings))
        options = WorkerOptions(
            queue_url=settings.prompts_queue_url,
            bulk_queue_url=settings.prompts_bulk_queue_url,
            concurrency=config.concurrency,
            wait_seconds=1,
            drain_seconds=2 * config.run_seconds,
        )
        self.worker = Worker(cast(PromptRunner, self.completions), wiring.queue_messages(settings), options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="worker", daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self.worker.run(handle_signals=False))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self.worker.stop)
        self._thread.join(60)


# ----------------------------------------------------------------------------------------------
# Adding prompts, measuring waits


class Tenant:
    def __init__(self, service: PromptService, user: str) -> None:
        self._service = service
        self._model = service.catalog.default_model_id
        self._principal = Principal(user_id=user, role=Role.USER, key_id=f"{user}-key")
        self.lanes: Counter[str] = Counter()
        self.added_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._count = 0

    def add(self, label: str) -> str:
        with self._lock:
            self._count += 1
            number = self._count
        new = NewPrompt(
            prompt=f"{label} prompt {number}: tell me something",
            modelId=self._model,
            template="{prompt}",
            threadId=f"{self._principal.user_id}-{number:05d}",
            maxRetries=0,
            sync=False,
            id=f"{label}-{number:05d}",
        )
        stored = self._service.add(self._principal, new, sync_wait=0).prompt
        with self._lock:
            self.lanes[str(stored.lane) or "(none)"] += 1
            self.added_at[stored.id] = time.monotonic()
        return stored.id


def quiet_phase(tenant: Tenant, worker: WorkerThread, label: str, count: int) -> list[float]:
    """B adds `count` prompts one after another; each one's wait once all completed."""
    ids = [tenant.add(label) for _ in range(count)]
    deadline = time.monotonic() + PHASE_SECONDS
    while not worker.completions.done(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: B's prompts not all completed within {PHASE_SECONDS:g} s")
        time.sleep(0.02)
    return [worker.completions.at[i] - tenant.added_at[i] for i in ids]


def queued(settings: Settings) -> dict[str, int]:
    """Messages on each lane's queue (visible and in flight)."""
    sqs = clients.client("sqs")
    depths = {}
    for lane, url in (("fast", settings.prompts_queue_url), ("bulk", settings.prompts_bulk_queue_url)):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[lane] = int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )
    return depths


def progress(line: str) -> None:
    print(f"fairness: {line}", file=sys.stderr, flush=True)


def describe(waits: list[float]) -> str:
    return f"p50 {statistics.median(waits):.2f}s, max {max(waits):.2f}s"


def parse_args(argv: list[str] | None = None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=defaults.burst, help="tenant A's prompts")
    parser.add_argument("--quiet", type=int, default=defaults.quiet, help="tenant B's prompts")
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="the worker's slots (C)"
    )
    parser.add_argument("--per-user", type=int, default=defaults.per_user, help="FastLanePromptsPerUser (K)")
    parser.add_argument(
        "--chunk-delay", type=float, default=defaults.chunk_delay, help="mock delay per chunk"
    )
    args = parser.parse_args(argv)
    return Config(args.burst, args.quiet, args.concurrency, args.per_user, defaults.chunks, args.chunk_delay)


def _exit_on_signal(number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + number)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, _exit_on_signal)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto_server())
        settings = configure(endpoint, config)
        service = wiring.prompt_service(settings, wiring.limit_service(settings))
        a, b = Tenant(service, "tenant-a"), Tenant(service, "tenant-b")

        progress("phase 1: B alone")
        with running_worker(settings, config) as worker:
            alone = quiet_phase(b, worker, "b-alone", config.quiet)

        progress(f"phase 2: A adds {config.burst} prompts (the worker stopped meanwhile)")
        adding = time.monotonic()
        with ThreadPoolExecutor(ADD_THREADS) as pool:
            list(pool.map(lambda _: a.add("a-burst"), range(config.burst)))
        add_seconds = time.monotonic() - adding
        worker = stack.enter_context(running_worker(settings, config))
        progress(f"phase 2: the worker works A's burst for {WARM_UP_RUNS} run times")
        time.sleep(WARM_UP_RUNS * config.run_seconds)  # every slot busy with A's prompts
        depths = queued(settings)
        b_lanes_before = Counter(b.lanes)
        progress(f"phase 2: B adds {config.quiet} prompts; queued {depths}")
        burst = quiet_phase(b, worker, "b-burst", config.quiet)
        b_burst_lanes = b.lanes - b_lanes_before
        a_done = sum(1 for prompt_id in worker.completions.at if prompt_id.startswith("a-burst"))

    run = config.run_seconds
    y, x = max(alone), max(burst)
    target = 2 * y + run
    print(f"worker: C = {config.concurrency} slots; fast lane K = {config.per_user} prompts per user")
    print(f"run time per prompt: {run:.2f}s (mock engine, {config.chunks} chunks x {config.chunk_delay:g}s)")
    added = f"added in {add_seconds:.1f}s, {ADD_THREADS} threads"
    print(f"A's {config.burst} prompts per lane: {dict(a.lanes)} ({added})")
    print(f"B's prompts per lane: alone {dict(b_lanes_before)}, under A's burst {dict(b_burst_lanes)}")
    print(
        f"when B added under the burst: {depths['fast']} messages on the fast lane, {depths['bulk']} on "
        f"the bulk lane (one FIFO queue: B would wait behind ~{depths['fast'] + depths['bulk']} prompts, "
        f"~{(depths['fast'] + depths['bulk']) * run / config.concurrency:.0f}s)"
    )
    print(f"A's prompts completed by the end: {a_done}; runner outcomes: {dict(worker.completions.outcomes)}")
    print(f"B alone (no A):      {describe(alone)}")
    print(f"B under A's burst:   {describe(burst)}")
    print(f"the whole run took {time.monotonic() - started:.0f}s")
    print(
        f"B's max wait {x:.2f}s under A's burst vs {y:.2f}s alone "
        f"(target <= 2 x {y:.2f} + run time {run:.2f}s = {target:.2f}s)"
    )
    return 0 if x <= target else 1


if __name__ == "__main__":
    raise SystemExit(main())
