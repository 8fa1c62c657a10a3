"""Thread contention: a hundred prompts on one thread drain about as fast as on a hundred threads.

What it measures, on the local stack (`promptsvc dev` as a subprocess: moto, the Lambda consumer
behind the SQS event source emulator, the events stream and the WebSocket fan-out), with the mock
engine at `--mock-chunk-delay 0.5` (each prompt streams 4 chunks over about 2 s):

- **separate**: the time from the first add to the last prompt terminal, for `PROMPTS` prompts each
  on its own thread;
- **one thread**: the same for `PROMPTS` prompts all on one thread, where every run allocates its
  events' seqs from the same counter.

It then checks that every event of the busy thread is stored once with gapless seqs (events lost
to contention are what this guards against). Target (the last line): one thread / separate
<= 1.5. Exits 1 on a miss. Run from the repository root:
`.venv/bin/python benchmarks/thread_contention.py [--prompts N]`.
"""

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from promptsvc_dev.dev_process import start_dev

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bench-admin-key"
TARGET = 1.5
DRAIN_LIMIT = 600.0


def drain_seconds(http: httpx.Client, prompts: int, thread_of: Callable[[int], str], tag: str) -> float:
    def add(i: int) -> str:
        body = {"prompt": f"{tag} prompt {i}", "threadId": thread_of(i), "id": f"{tag}-{i}"}
        response = http.post("/prompt-svc/prompt", json=body)
        response.raise_for_status()
        return response.json()["prompt"]["id"]

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(add, range(prompts)))
    waiting = set(ids)
    while waiting and time.monotonic() - started < DRAIN_LIMIT:
        for prompt_id in list(waiting):
            status = http.get(f"/prompt-svc/prompt/{prompt_id}").json()["prompt"]["status"]
            if status in ("completed", "canceled", "abandoned"):
                waiting.discard(prompt_id)
        time.sleep(0.2)
    if waiting:
        raise SystemExit(f"{len(waiting)} prompts of {tag} not terminal after {DRAIN_LIMIT} s")
    return time.monotonic() - started


def gapless(http: httpx.Client, thread_id: str) -> tuple[int, bool]:
    seqs: list[int] = []
    after = 0
    while True:
        body = http.get(f"/prompt-svc/thread/{thread_id}/events?after={after}&limit=1000").json()
        seqs += [e["seq"] for e in body["events"]]
        if body["after"] == after:
            return len(seqs), seqs == list(range(1, len(seqs) + 1))
        after = body["after"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=100)
    args = parser.parse_args()
    dev = start_dev("--mock-chunk-delay", "0.5", api_key=ADMIN_KEY, cwd=ROOT)
    try:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=dev.base_url, headers=headers, timeout=60) as http:
            separate = drain_seconds(http, args.prompts, lambda i: f"own-{i}", "separate")
            shared = drain_seconds(http, args.prompts, lambda i: "busy", "shared")
            events, ok = gapless(http, "busy")
    finally:
        dev.stop()
    ratio = shared / separate
    print(f"separate threads: {args.prompts} prompts drained in {separate:.1f} s")
    print(f"one thread:       {args.prompts} prompts drained in {shared:.1f} s")
    print(f"busy thread: {events} events, gapless: {ok}")
    print(f"one-thread/separate drain ratio {ratio:.2f} (target <= {TARGET})")
    return 0 if ratio <= TARGET and ok else 1


if __name__ == "__main__":
    sys.exit(main())
