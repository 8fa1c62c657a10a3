"""How much of a continuous-batching engine's throughput the ECS worker gets (target: 95 % at C = 32).

The engine is simulated (`benchmarks/sim_engine.py`, run as its own process): an OpenAI-compatible
streaming HTTP server with one scheduler loop whose decode step takes `a + b * batch` ms and emits
one token to every active sequence; new requests join at the next step, a sequence ends after
`max_tokens` tokens. Its throughput therefore depends on how full its clients keep the batch.

One run measures, against the same engine and the same prompts:

(a) the engine itself: a load generator (C streaming `httpx` clients on one keep-alive pool, each
    sending its next request as soon as its previous answer ends) issues N requests; tokens/s =
    completion tokens / wall time from the first request to the last answer;
(b) the ECS worker: `promptsvc.consumer.worker.Worker` at concurrency C drains a queue of N prompts
    (stored and queued beforehand, off the clock, through `PromptService.add`) on moto, which also
    runs as its own process (`MOTO`: its server with DynamoDB's atomic conditional writes and
    without two of its costs that grow with the data, which AWS does not have), with tables and
    queues created from
    template.yaml and the consumer's environment from the template; a model catalog file points
    the `openai` engine at the simulator. Tokens/s = N x max_tokens / time from the worker's start
    to the last prompt's completion (noted by a thin wrapper around the runner, so nothing polls
    the table while the clock runs); the worker is then stopped and drained, and every prompt is
    checked to be `completed` with the full answer;
(c) a one-prompt-at-a-time consumer: the same worker at concurrency 1 over a few prompts.

For each phase the simulator's own counters give the tokens it generated (checked against
N x max_tokens: nothing was generated twice or cut short), its steps, the mean batch size and step
time, and how busy it was (time spent in steps / wall time). From them comes how long, per prompt,
one of the C slots sat without a sequence in the engine: (C x wall time - the time sequences spent
in steps) / N; for the worker that is its per-prompt overhead between one answer's last token and
the next prompt's first step (plus the phase's ramp-up and tail, as for the load generator). The
worker's AWS calls per prompt are counted with a botocore hook, by operation, and its thread events
per prompt read back from the events table (statuses, deltas; a `gap` would be an event lost). The
calls' target follows from the consumer's design (docs/consumer.md, "AWS calls per prompt"):
`CALLS_PER_PROMPT` plus one call per delta event (how many deltas a prompt writes depends on how
long it streams: at most one per `DELTA_INTERVAL_SECONDS`). The second-to-last line is the calls
per prompt against that target, the last the ratio (b)/(a) against its own; the script exits with
status 1 when either misses, or when any check fails.

Run from the repository root: `.venv/bin/python benchmarks/consumer_efficiency.py` (`--help` for
the knobs; the defaults are the issue's setting). Everything listens on 127.0.0.1 only, and every
process it starts is stopped on the way out.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import httpx
from promptsvc import wiring
from promptsvc.adapters import clients, pages
from promptsvc.consumer.runner import Outcome, PromptRunner, RunResult
from promptsvc.consumer.worker import Worker, WorkerOptions
from promptsvc.domain.keys import Principal, Role
from promptsvc.domain.prompt import NewPrompt
from promptsvc.settings import Settings, get_settings
from promptsvc_dev.dev import aws_environment, free_port
from promptsvc_dev.template import create_resources

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SIM_ENGINE = Path(__file__).resolve().with_name("sim_engine.py")

TOKEN = "tok "  # what the simulator emits per token
MODEL_ID = "sim"
# Prompts are spread over this many threads (conversations): a thread holds a handful of prompts,
# as a chat does, and each thread numbers its events in one sequence (contended within a thread).
THREADS = 64
TARGET_RATIO = 0.95
# AWS calls a prompt costs besides one per delta event (docs/consumer.md, "AWS calls per prompt"):
# 7 DynamoDB writes (the claim; the start's block of seqs, `scheduled`, `running`; the answer with
# its usage, the key's slot and the usage counters in one transaction; the closing status's seq
# and put), up to 0.5 for
# the cancel watch's shared read and 0.5 for SQS (receives and deletes, ten messages a call), and 1
# for threads two prompts write at once (here 4 prompts a thread, 32 at once: the thread's counter
# is caught up).
CALLS_PER_PROMPT = 9.0
STARTUP_SECONDS = 30.0
PHASE_SECONDS = 120.0  # a phase that takes longer than this is a failure, not a measurement


@dataclass(frozen=True)
class Config:
    concurrency: int = 32
    prompts: int = 256  # 8 rounds of a full batch
    serial_prompts: int = 6  # for the one-at-a-time consumer
    max_tokens: int = 96
    a_ms: float = 15.0  # fixed cost of a decode step
    b_ms: float = 0.5  # cost per sequence in the batch

    @property
    def answer(self) -> str:
        return TOKEN * self.max_tokens


# ----------------------------------------------------------------------------------------------
# Child processes: the simulated engine and moto


def _wait_for_port(process: subprocess.Popen[Any], port: int, what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {STARTUP_SECONDS:g} s")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# moto's server as DynamoDB and SQS behave at this scale: conditional writes atomic, as in DynamoDB
# (dev/promptsvc_dev/moto_atomic.py); a transaction's rollback copy of the items it names only, where
# moto deep-copies every table it names (benchmarks/moto_transactions.py); a receive that does not
# walk the queue for each message it returns (benchmarks/moto_receive.py: 130 ms a receive with 256
# queued). With the plain server (`("-m", "moto.server")`) the ratio read 0.88 to 0.91 here, the
# same code: the worker's claims and event writes waited behind moto's receives and rollback copies.
def patched_moto(*patches: str) -> tuple[str, ...]:
    """`moto_server`'s launch for moto's server with these modules' `install()` run first (those of
    benchmarks/ by their name, dev's by theirs)."""
    here = str(Path(__file__).resolve().parent)
    return (
        "-c",
        f"import importlib, sys; sys.path.insert(0, {here!r}); "
        f"[importlib.import_module(name).install() for name in {list(patches)!r}]; "
        "from moto.server import main; main()",
    )


MOTO = patched_moto("promptsvc_dev.moto_atomic", "moto_transactions", "moto_receive")


@contextlib.contextmanager
def moto_server(launch: tuple[str, ...] = ("-m", "moto.server")) -> Iterator[str]:
    """moto's server in its own process (`python LAUNCH -H ... -p ...`); yields its endpoint."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *launch, "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(process, port, "moto")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


@contextlib.contextmanager
def simulated_engine(config: Config) -> Iterator[str]:
    """The simulator in its own process; yields its origin. It binds a free port and prints it, and
    exits by itself should this process die (its stdin, held here, closes)."""
    process = subprocess.Popen(
        [sys.executable, str(SIM_ENGINE), "--a-ms", str(config.a_ms), "--b-ms", str(config.b_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_SECONDS)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("port "):
            raise RuntimeError(f"the simulated engine did not start (it said {line!r})")
        port = int(line.split()[1])
        _wait_for_port(process, port, "the simulated engine")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


# ----------------------------------------------------------------------------------------------
# What a phase measured


@dataclass(frozen=True)
class EngineStats:
    """The simulator's counters over one phase (the difference of two snapshots)."""

    steps: int
    tokens: int
    requests: int
    disconnected: int
    step_seconds: float  # time the engine spent in steps
    slot_seconds: float  # time sequences spent in steps (batch x step time, summed)

    @classmethod
    def between(cls, before: dict[str, Any], after: dict[str, Any]) -> "EngineStats":
        fields = ("steps", "tokens", "requests", "disconnected", "step_seconds", "slot_seconds")
        return cls(**{name: after[name] - before[name] for name in fields})

    @property
    def mean_batch(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    @property
    def step_ms(self) -> float:
        return 1000 * self.step_seconds / self.steps if self.steps else 0.0


@dataclass
class Phase:
    name: str
    concurrency: int
    prompts: int
    tokens: int  # completion tokens the client side received
    seconds: float
    engine: EngineStats
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # AWS calls of the worker, by operation
    events: Counter[str] = field(default_factory=Counter)  # its prompts' thread events, by type

    @property
    def label(self) -> str:
        return self.name.split()[0]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def busy(self) -> float:
        return self.engine.step_seconds / self.seconds if self.seconds > 0 else 0.0

    def per_prompt(self, counts: Counter[str]) -> float:
        return sum(counts.values()) / self.prompts if self.prompts else 0.0

    @property
    def calls_target(self) -> float:
        """CALLS_PER_PROMPT plus one call per delta event."""
        return CALLS_PER_PROMPT + self.events["delta"] / self.prompts

    @property
    def idle_slot_seconds(self) -> float:
        """Per prompt, how long one of the `concurrency` slots had no sequence in the engine."""
        return (self.concurrency * self.seconds - self.engine.slot_seconds) / self.prompts

    def check_engine(self, config: Config) -> None:
        """The simulator generated exactly the answers asked for: nothing twice, nothing cut."""
        expected = self.prompts * config.max_tokens
        if self.engine.tokens != expected or self.tokens != expected:
            self.problems.append(
                f"expected {expected} tokens, the engine generated {self.engine.tokens}, "
                f"the client side got {self.tokens}"
            )
        if self.engine.requests != self.prompts or self.engine.disconnected:
            self.problems.append(
                f"the engine saw {self.engine.requests} requests for {self.prompts} prompts "
                f"({self.engine.disconnected} disconnected early)"
            )


def engine_stats(origin: str) -> dict[str, Any]:
    response = httpx.get(f"{origin}/stats", timeout=10)
    response.raise_for_status()
    return response.json()


# ----------------------------------------------------------------------------------------------
# (a) the engine driven directly


async def stream_one(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> int:
    """One streamed chat completion; its completion tokens, checked against the usage chunk."""
    deltas = 0
    usage: int | None = None
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("usage"):
                usage = chunk["usage"]["completion_tokens"]
            deltas += sum(1 for choice in chunk["choices"] if choice["delta"].get("content"))
    if usage != deltas:
        raise RuntimeError(f"got {deltas} tokens but the usage chunk says {usage}")
    return deltas


async def drive_engine(origin: str, config: Config) -> tuple[int, float]:
    """`concurrency` clients issue `prompts` requests in all, each as the worker's engine would
    send it; (completion tokens, seconds)."""
    url = f"{origin}/v1/chat/completions"
    numbers = itertools.count()
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)

    def body(number: int) -> dict[str, Any]:
        return {
            "model": MODEL_ID,
            "messages": [{"role": "user", "content": f"prompt {number}: tell me something"}],
            "max_tokens": config.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(PHASE_SECONDS, connect=5)) as client:

        async def one_client() -> int:
            tokens = 0
            while (number := next(numbers)) < config.prompts:
                tokens += await stream_one(client, url, body(number))
            return tokens

        started = time.perf_counter()
        runs = (one_client() for _ in range(config.concurrency))
        async with asyncio.timeout(PHASE_SECONDS):
            counts = await asyncio.gather(*runs)
        seconds = time.perf_counter() - started
    return sum(counts), seconds


def engine_phase(origin: str, config: Config) -> Phase:
    before = engine_stats(origin)
    tokens, seconds = asyncio.run(drive_engine(origin, config))
    stats = EngineStats.between(before, engine_stats(origin))
    phase = Phase("(a) load generator -> engine", config.concurrency, config.prompts, tokens, seconds, stats)
    phase.check_engine(config)
    return phase


# ----------------------------------------------------------------------------------------------
# (b) and (c) the worker draining the queue


class CompletionClock:
    """Wraps the worker's runner: notes when each prompt completes and says when all have, so the
    benchmark can stop the worker at once without polling the table while the clock runs."""

    def __init__(self, runner: PromptRunner, expected: int) -> None:
        self._runner = runner
        self.expected = expected
        self.completed = 0
        self.last_completion = 0.0
        self.other_outcomes: Counter[str] = Counter()
        self.all_done = asyncio.Event()

    async def run(self, prompt_id: str, **kwargs: Any) -> RunResult:
        result = await self._runner.run(prompt_id, **kwargs)
        if result.outcome is Outcome.COMPLETED:
            self.completed += 1
            self.last_completion = time.perf_counter()
            if self.completed >= self.expected:
                self.all_done.set()
        else:
            self.other_outcomes[str(result.outcome)] += 1
        return result


class AwsCallCounter:
    """Counts AWS API calls per `service.Operation` (a botocore `before-call` hook)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.counting = False

    def __call__(self, model: Any, **_: Any) -> None:
        if self.counting:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1


def enqueue(settings: Settings, label: str, count: int) -> list[str]:
    """Store and queue `count` prompts through the service, as the API's add does."""
    service = wiring.prompt_service(settings)
    principal = Principal(user_id="bench-user", role=Role.USER, key_id="bench-key")
    ids = []
    for number in range(count):
        new = NewPrompt(
            prompt=f"prompt {number}: tell me something",
            modelId=MODEL_ID,
            template="{prompt}",
            threadId=f"bench-{label}-{number % THREADS:04d}",
            maxRetries=0,
            sync=False,
            id=f"bench-{label}-{number:04d}",
        )
        ids.append(service.add(principal, new, sync_wait=0).prompt.id)
    return ids


def thread_events(settings: Settings, label: str) -> Counter[str]:
    """The phase's thread events by type (its prompts' threads are `bench-LABEL-NNNN`)."""
    table = clients.dynamodb_table(settings.thread_events_table)
    items = pages.items(
        table.scan,
        {"ProjectionExpression": "threadId, seq, #type", "ExpressionAttributeNames": {"#type": "type"}},
    )
    return Counter(
        str(item["type"])
        for item in items
        if int(item["seq"]) > 0 and str(item["threadId"]).startswith(f"bench-{label}-")
    )


def not_completed(settings: Settings, ids: list[str], answer: str) -> list[str]:
    """The prompts that are not `completed` with the full answer."""
    items = {
        item["id"]: item for item in pages.items(clients.dynamodb_table(settings.prompts_table).scan, {})
    }
    wrong = []
    for prompt_id in ids:
        item = items.get(prompt_id)
        if item is None or item["status"] != "completed" or item.get("answer") != answer:
            state = "missing" if item is None else f"{item['status']}, {len(item.get('answer', ''))} chars"
            wrong.append(f"{prompt_id} ({state})")
    return wrong


class PhaseUnfinished(RuntimeError):
    """A worker phase whose prompts did not all complete within PHASE_SECONDS."""


async def run_worker(
    settings: Settings, concurrency: int, expected: int
) -> tuple[Worker, CompletionClock, float]:
    """Run the worker until `expected` prompts completed, then stop and drain it; also returns the
    seconds from its start to the last completion."""
    clock = CompletionClock(wiring.prompt_runner(settings), expected)
    options = WorkerOptions(
        queue_url=settings.prompts_queue_url, concurrency=concurrency, wait_seconds=1, drain_seconds=30
    )
    worker = Worker(cast(PromptRunner, clock), wiring.queue_messages(settings), options)
    started = time.perf_counter()
    running = asyncio.create_task(worker.run(handle_signals=False))
    waiting = asyncio.create_task(clock.all_done.wait())
    try:
        await asyncio.wait({waiting, running}, timeout=PHASE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        worker.stop()
        await asyncio.wait_for(running, options.drain_seconds + 10)
    if not clock.all_done.is_set():
        done = clock.completed
        raise PhaseUnfinished(f"only {done} of {expected} prompts completed in {PHASE_SECONDS:g} s")
    return worker, clock, clock.last_completion - started


def worker_phase(
    name: str, settings: Settings, origin: str, concurrency: int, prompts: int, config: Config
) -> Phase:
    label = name.split()[0].strip("()")
    ids = enqueue(settings, label, prompts)  # off the clock
    counter = AwsCallCounter()
    clients.register_hook("before-call", counter)
    try:
        before = engine_stats(origin)
        counter.counting = True
        worker, clock, seconds = asyncio.run(run_worker(settings, concurrency, prompts))
        counter.counting = False
        stats = EngineStats.between(before, engine_stats(origin))
    finally:
        clients.clear_hooks()
    # The client side's tokens: the answers, each checked in the table below to be max_tokens long.
    phase = Phase(name, concurrency, prompts, clock.completed * config.max_tokens, seconds, stats)
    phase.check_engine(config)
    wrong = not_completed(settings, ids, config.answer)
    if wrong:
        phase.problems.append(f"{len(wrong)} prompts not completed with the full answer: {wrong[:5]}")
    if clock.other_outcomes:
        phase.problems.append(f"runner outcomes other than completed: {dict(clock.other_outcomes)}")
    phase.calls, phase.events = counter.calls, thread_events(settings, label)
    if phase.events["gap"]:
        phase.problems.append(f"{phase.events['gap']} thread events lost (gaps filled)")
    per_call = ", ".join(f"{call} {n / prompts:.2f}" for call, n in sorted(phase.calls.items()))
    per_type = ", ".join(f"{kind} {n / prompts:.2f}" for kind, n in sorted(phase.events.items()))
    phase.notes.append(
        f"worker received {worker.received}, settled {worker.settled}, peak in flight {worker.peak_inflight}"
    )
    phase.notes.append(f"AWS calls per prompt {phase.per_prompt(phase.calls):.2f}: {per_call}")
    phase.notes.append(f"thread events per prompt {phase.per_prompt(phase.events):.2f}: {per_type}")
    return phase


# ----------------------------------------------------------------------------------------------
# Setup and report


def configure(endpoint: str, catalog_file: Path, engine_origin: str, config: Config) -> Settings:
    """Point boto3 at moto, create the template's resources, and take the consumer's environment
    with a model catalog whose one model is served by the simulator."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL_"):
            del os.environ[name]  # a service-specific endpoint would bypass moto
    os.environ.update(aws_environment(endpoint))
    clients.reset()
    stack = create_resources(TEMPLATE)
    os.environ.update(stack.function_environment("ConsumerFunction"))
    model = {
        "id": MODEL_ID,
        "name": MODEL_ID,
        "template": "{prompt}",
        "engine": "openai",
        "api": "chat",
        "target": {"baseUrl": f"{engine_origin}/v1", "servedModelName": MODEL_ID},
        "parameters": {"max_tokens": config.max_tokens},
    }
    catalog_file.write_text(json.dumps({"models": [model], "defaultModelId": MODEL_ID}))
    os.environ["MODEL_CATALOG_FILE"] = str(catalog_file)
    os.environ["ENGINE"] = ""  # the catalog decides: the openai engine
    get_settings.cache_clear()
    clients.reset()
    return get_settings()


def report(phases: list[Phase], config: Config) -> None:
    full_batch = config.concurrency * 1000 / (config.a_ms + config.b_ms * config.concurrency)
    print(
        f"simulated engine: step {config.a_ms:g} ms + {config.b_ms:g} ms x batch, max_tokens "
        f"{config.max_tokens}; a full batch of {config.concurrency} at nominal step time: "
        f"{full_batch:.0f} tokens/s"
    )
    header = (
        f"{'phase':<29} {'C':>3} {'prompts':>7} {'tokens':>6} {'seconds':>7} {'tokens/s':>8} "
        f"{'steps':>5} {'mean batch':>10} {'ms/step':>7} {'busy':>4} {'idle slot s/prompt':>18}"
    )
    print(header)
    print("-" * len(header))
    for phase in phases:
        print(
            f"{phase.name:<29} {phase.concurrency:>3} {phase.prompts:>7} {phase.tokens:>6} "
            f"{phase.seconds:>7.2f} {phase.tokens_per_second:>8.1f} {phase.engine.steps:>5} "
            f"{phase.engine.mean_batch:>10.1f} {phase.engine.step_ms:>7.1f} {phase.busy:>4.0%} "
            f"{phase.idle_slot_seconds:>18.3f}"
        )
    for phase in phases:
        for note in phase.notes:
            print(f"{phase.label} {note}")
        for problem in phase.problems:
            print(f"{phase.label} PROBLEM: {problem}")


def parse_args(argv: list[str] | None = None) -> Config:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="C, for (a) and (b)")
    parser.add_argument("--prompts", type=int, default=defaults.prompts, help="N, for (a) and (b)")
    parser.add_argument("--serial-prompts", type=int, default=defaults.serial_prompts, help="for (c)")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens, help="tokens per answer")
    parser.add_argument("--a-ms", type=float, default=defaults.a_ms, help="fixed cost of a decode step")
    parser.add_argument("--b-ms", type=float, default=defaults.b_ms, help="cost per sequence in a step")
    args = parser.parse_args(argv)
    return Config(
        concurrency=args.concurrency,
        prompts=args.prompts,
        serial_prompts=args.serial_prompts,
        max_tokens=args.max_tokens,
        a_ms=args.a_ms,
        b_ms=args.b_ms,
    )


def _exit_on_signal(number: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C does: through the cleanup that stops the children."""
    raise SystemExit(128 + number)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, _exit_on_signal)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(simulated_engine(config))
        endpoint = stack.enter_context(moto_server(MOTO))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="consumer-efficiency-")))
        settings = configure(endpoint, folder / "models.json", engine, config)

        direct = engine_phase(engine, config)
        try:
            worker = worker_phase(
                "(b) ECS worker", settings, engine, config.concurrency, config.prompts, config
            )
            serial = worker_phase(
                "(c) one-at-a-time worker", settings, engine, 1, config.serial_prompts, config
            )
        except PhaseUnfinished as unfinished:
            # The headline is still the last line, so a reader (or CI) sees the miss, not a traceback.
            print(f"{direct.name}: {direct.tokens_per_second:.1f} tokens/s; a worker phase: {unfinished}")
            print(f"worker/engine throughput ratio: did not finish (target >= {TARGET_RATIO:g})")
            return 1

    phases = [direct, worker, serial]
    report(phases, config)
    print(
        f"one-at-a-time/engine throughput ratio {serial.tokens_per_second / direct.tokens_per_second:.2f}; "
        f"the whole run took {time.monotonic() - started:.0f} s"
    )
    calls, deltas = worker.per_prompt(worker.calls), worker.events["delta"] / worker.prompts
    print(
        f"AWS calls per prompt {calls:.1f} (target <= {CALLS_PER_PROMPT:g} + 1 per delta event "
        f"x {deltas:.1f} = {worker.calls_target:.1f})"
    )
    ratio = worker.tokens_per_second / direct.tokens_per_second
    print(f"worker/engine throughput ratio {ratio:.2f} (target >= {TARGET_RATIO:g})")
    missed = ratio < TARGET_RATIO or calls > worker.calls_target
    return 1 if missed or any(phase.problems for phase in phases) else 0


if __name__ == "__main__":
    raise SystemExit(main())
