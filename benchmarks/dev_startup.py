"""How long `promptsvc dev` takes from start to ready (the issue's bound: under 10 s).

Starts `promptsvc dev` as a subprocess several times on free ports and times the moment it prints
that it is ready, then checks it answers over HTTP. Prints each run, then the median as the last
line. A timing on a shared machine, so it is a benchmark, not a test.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from promptsvc_dev.dev import free_port

ROOT = Path(__file__).resolve().parents[1]
RUNS = 3
TARGET_SECONDS = 10.0


def one_start() -> float:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROMPTSVC_", "POWERTOOLS_"))}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "promptsvc_dev.cli", "dev", "--port", str(port), "--ws-port", str(free_port()),
         "--api-key", "bench-key"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "promptsvc dev is ready" in line:
                ready = time.monotonic() - started
                break
        else:
            raise RuntimeError("promptsvc dev exited before it was ready")
        response = httpx.post(
            f"http://127.0.0.1:{port}/prompt-svc/prompts",
            headers={"Authorization": "Bearer bench-key"},
            json={},
        )
        response.raise_for_status()
        return ready
    finally:
        process.terminate()
        process.wait(30)


def main() -> int:
    times = []
    for run in range(1, RUNS + 1):
        seconds = one_start()
        times.append(seconds)
        print(f"run {run}: ready after {seconds:.2f} s")
    median = statistics.median(times)
    print(f"promptsvc dev start to ready {median:.2f} s median of {RUNS} (target < {TARGET_SECONDS:.0f} s)")
    return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
