"""Thread stream latency: from the engine yielding a chunk to a WebSocket client receiving it.

What it measures, on the local stack (`promptsvc dev` as a subprocess: moto, the consumer, the
events table's stream pump, the stream function, the local WebSocket API) with the mock engine at
50 chunks a second (`--mock-chunk-delay 0.02`, `MOCK_CHUNKS=300`, so each prompt streams 300 chunks
over about 6 s):

- **latency** of every chunk: the time the client receives the delta frame that carries it minus
  the time the engine yielded it; p50 and p99 over all chunks (at least 500: 2 prompts of 300);
- **event writes** (rows put in the thread events table: what the stream carries) per prompt, status
  and delta, and all of them per second of generation (the first chunk's yield to the last's): the
  coalescing of deltas (`DELTA_INTERVAL_SECONDS`, 0.25 s) is what keeps this near 4 plus the three
  status writes, whatever the token rate. Every event the client receives is one write, and the
  client gets them all (seq has no gaps, which is checked).

How the two clocks meet: the dev subprocess is started through a three-line bootstrap (`BOOT`) that
wraps the mock engine's `stream` so each chunk's text *is* its yield time, `<1795321234.123456>`
(`time.time()` taken as the engine yields it). Deltas are coalesced by whole chunks, so each delta
frame holds the stamps of the chunks it carries; the client stamps each frame as `recv` returns it
(same machine, same wall clock). Nothing else in the stack is patched. The prompts run two at a
time, each on its own thread and WebSocket connection, subscribed before the prompt is added.

Targets (the last line): chunk latency p50 < 0.3 s, and fewer than 6 event writes (status and
delta) per second of generation. Exits 1 on a miss. Run from the repository root:
`.venv/bin/python benchmarks/stream_latency.py`.
"""

import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from promptsvc_dev.dev import free_port
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bench-admin-key"
PROMPTS = 2
CONCURRENCY = 2
CHUNKS = 300
CHUNK_DELAY = 0.02  # 50 chunks (tokens) a second
PROMPT_TEXT = "b" * (4 * CHUNKS)  # rendered with template "{prompt}": exactly CHUNKS chunks of 4
WAIT = 30.0
TARGET_P50 = 0.3
TARGET_WRITES_PER_SECOND = 6.0

# Runs `promptsvc dev` with the mock engine's chunks replaced by their yield time.
BOOT = """
import sys, time
from promptsvc.engines import base, mock
_stream = mock.MockEngine.stream
async def stream(self, request):
    async for event in _stream(self, request):
        yield base.Delta(f"<{time.time():.6f}>") if isinstance(event, base.Delta) else event
mock.MockEngine.stream = stream
from promptsvc_dev.cli import main
sys.exit(main(sys.argv[1:]))
"""
STAMP = re.compile(r"<(\d+\.\d+)>")


@dataclass
class Run:
    thread_id: str
    latencies: list[float] = field(default_factory=list)
    chunks: int = 0
    status_writes: int = 0
    delta_writes: int = 0
    generation_seconds: float = 0.0


@dataclass
class Dev:
    process: subprocess.Popen[str]
    api: str
    ws: str
    output: "queue.Queue[str]"


def start_dev() -> Dev:
    port, ws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROMPTSVC_", "POWERTOOLS_"))}
    env.pop("ENGINE", None)
    env["MOCK_CHUNKS"] = str(CHUNKS)
    process = subprocess.Popen(
        [sys.executable, "-c", BOOT, "dev", "--port", str(port), "--ws-port", str(ws_port),
         "--api-key", ADMIN_KEY, "--mock-chunk-delay", str(CHUNK_DELAY)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if "promptsvc dev is ready" in line:
            return Dev(process, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{ws_port}/", lines)
    process.kill()
    raise SystemExit("promptsvc dev did not become ready:\n" + "".join(seen))


def one_prompt(dev: Dev, key: str, n: int) -> Run:
    run = Run(thread_id=f"bench-{n}-{int(time.time())}")
    frames: list[tuple[float, dict]] = []
    with connect(dev.ws + f"?token={key}", open_timeout=WAIT) as socket:
        socket.send(json.dumps({"action": "subscribe", "threadId": run.thread_id}))
        subscribed = json.loads(socket.recv(timeout=WAIT))
        assert subscribed.get("type") == "subscribed", subscribed
        added = httpx.post(
            dev.api + "/prompt-svc/prompt",
            headers={"Authorization": f"Bearer {key}"},
            json={"prompt": PROMPT_TEXT, "template": "{prompt}", "threadId": run.thread_id},
            timeout=WAIT,
        )
        assert added.status_code in (200, 201, 202), added.text
        while True:
            frame = json.loads(socket.recv(timeout=WAIT))
            frames.append((time.time(), frame))
            if frame.get("type") == "status" and frame.get("status") in (
                "completed",
                "abandoned",
                "canceled",
            ):
                break
    events = [frame for _, frame in frames]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "events missing or out of order"
    assert events[-1]["status"] == "completed", events[-1]
    stamps: list[float] = []
    for received, frame in frames:
        if frame["type"] == "delta":
            run.delta_writes += 1
            for stamp in STAMP.findall(frame["text"]):
                stamps.append(float(stamp))
                run.latencies.append(received - float(stamp))
        else:
            run.status_writes += 1
    run.chunks = len(stamps)
    run.generation_seconds = max(stamps) - min(stamps) if stamps else 0.0
    return run


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    dev = start_dev()
    try:
        made = httpx.post(
            dev.api + "/prompt-svc/keys",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            json={"userId": "bench"},
            timeout=WAIT,
        )
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        one_prompt(dev, key, -1)  # warm-up: first imports, cold clients; not counted
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            runs = list(pool.map(lambda n: one_prompt(dev, key, n), range(PROMPTS)))
    finally:
        dev.process.terminate()
        try:
            dev.process.wait(15)
        except subprocess.TimeoutExpired:
            dev.process.kill()

    latencies = [x for run in runs for x in run.latencies]
    chunks = sum(run.chunks for run in runs)
    generation = sum(run.generation_seconds for run in runs)
    deltas = sum(run.delta_writes for run in runs)
    statuses = sum(run.status_writes for run in runs)
    print(
        f"mock engine: {CHUNKS} chunks a prompt at {1 / CHUNK_DELAY:.0f} chunks/s;"
        f" {PROMPTS} prompts, {CONCURRENCY} at a time"
    )
    for run in runs:
        print(
            f"  {run.thread_id}: {run.chunks} chunks,"
            f" {run.delta_writes} delta + {run.status_writes} status writes"
            f" over {run.generation_seconds:.2f} s; latency p50 {statistics.median(run.latencies):.3f} s"
            f" max {max(run.latencies):.3f} s"
        )
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    per_second = (deltas + statuses) / generation if generation else float("inf")
    print(f"chunks measured: {chunks} (expected {PROMPTS * CHUNKS})")
    print(
        f"latency: min {min(latencies):.3f} s, mean {statistics.fmean(latencies):.3f} s,"
        f" max {max(latencies):.3f} s"
    )
    print(
        f"event writes per prompt: {(deltas + statuses) / len(runs):.1f}"
        f" ({deltas / len(runs):.1f} delta, {statuses / len(runs):.1f} status);"
        f" per second of generation: {per_second:.1f}, of which {deltas / generation:.1f} deltas"
    )
    ok = p50 < TARGET_P50 and per_second < TARGET_WRITES_PER_SECOND and chunks == PROMPTS * CHUNKS
    print(
        f"stream latency p50 {p50:.2f} s, p99 {p99:.2f} s;"
        f" {per_second:.1f} event writes per second of generation"
        f" (target: p50 < {TARGET_P50} s, writes < {TARGET_WRITES_PER_SECOND:.0f}/s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
