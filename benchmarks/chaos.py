"""Chaos: 1,000 prompts through `promptsvc dev --chaos all` (every fault at once), then the invariants.

The faults (dev/promptsvc_dev/chaos.py): the mock engine fails attempts with error
statuses, stalls past the stall timeout, cuts streams midway, answers slowly, and kills the
consumer mid-prompt (the invocation dies unsettled; its lease and message run out); the SQS source
delivers some messages twice (at once and later) to three concurrent consumer invocations;
DynamoDB throttles some calls (through a botocore `before-send` hook, so botocore's retries see
them); the `@connections` API answers some posts 410 or drops the client.

The client (dev/promptsvc_dev/chaos_load.py) adds the prompts over 125 threads of 8 (2 users, 16 client
workers; a tenth sync, a tenth canceled, a twentieth removed, a fifth with `maxRetries` 1; a
tenth of the threads watched over the WebSocket API), retrying 5xx with the same body, then waits
for the drain and reads every prompt, every thread's events (paged) and the mock engine's record
of each attempt. The checker (dev/promptsvc_dev/chaos_check.py) then counts the violations of each invariant:
every prompt terminal, nothing running, `runCount <= maxRetries + 1`, one answer per completed
prompt equal to the engine's last attempt, gapless thread events whose replay gives the answer, and
each prompt's last event its terminal status (removed prompts: a terminal status event).

The last line: `chaos: 1000 prompts, N lost, N double answers, N invariant violations` (target:
all 0; "invariant violations" counts every violation, lost and double answers included). Exits 1
on a miss. Run from the repository root: `.venv/bin/python benchmarks/chaos.py [--prompts N]
[--seed N] [--chaos SPEC]`.
"""

import argparse
import dataclasses
import json
import queue
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from promptsvc_dev import dev_process
from promptsvc_dev.chaos_check import check
from promptsvc_dev.chaos_load import ChaosClient, Workload, attempt_log, dev_environment

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "chaos-admin-key"
STARTUP_LIMIT = 60.0


def start_dev(workdir: Path, chaos: str) -> tuple[subprocess.Popen[str], str, str, "queue.Queue[str]"]:
    flags = ("--mock-chunk-delay", "0.05", "--chaos", chaos)
    try:
        dev = dev_process.start_dev(*flags, api_key=ADMIN_KEY, env=dev_environment(workdir), cwd=ROOT)
    except dev_process.DevNotReady as error:
        raise SystemExit(str(error)) from None
    return dev.process, dev.base_url, dev.ws_url, dev.output


def _progress(began: float) -> Callable[[str], None]:
    return lambda line: print(f"[{time.monotonic() - began:5.0f} s] {line}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chaos", default="all", help="the chaos spec (promptsvc dev --chaos)")
    parser.add_argument("--dump", type=Path, help="write what was observed and the server's log here (JSON)")
    args = parser.parse_args()
    chaos = f"{args.chaos},seed={args.seed}"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="promptsvc-chaos-") as tmp:
        workdir = Path(tmp)
        process, base_url, ws_url, output = start_dev(workdir, chaos)
        try:
            workload = Workload(prompts=args.prompts, seed=args.seed)
            client = ChaosClient(base_url, ADMIN_KEY, ws_url, progress=_progress(began))
            run = client.run(workload, attempt_log(workdir))
        finally:
            process.send_signal(signal.SIGINT)  # a clean stop prints what the chaos profile injected
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            time.sleep(0.2)  # the reader thread's last lines
        log = []
        while not output.empty():
            log.append(output.get())
    report = check(run.observed)
    if args.dump:
        observed = dataclasses.asdict(run.observed)
        observed["events"] = {
            f"{user}/{thread}": found for (user, thread), found in run.observed.events.items()
        }
        args.dump.write_text(json.dumps({"observed": observed, "log": log}, indent=1))
    report.violations.extend(run.ws_violations)
    elapsed = time.monotonic() - began
    injected = next((line.split(":", 1)[1].strip() for line in log if "promptsvc dev chaos:" in line), "?")
    print(f"chaos profile: {chaos}")
    print(f"prompts accepted: {len(run.observed.submitted)} of {args.prompts}")
    print(
        f"run time: {elapsed:.0f} s (drain {run.drain_seconds:.0f} s{'' if run.drained else ', NOT drained'})"
    )
    for name, value in sorted(run.figures.items()):
        print(f"  {name}: {value:.1f}" if isinstance(value, float) else f"  {name}: {value}")
    for name, value in report.figures.items():
        print(f"  {name}: {value}")
    print(f"  injected by the dev stack: {injected}")
    print(f"  server log lines: {len(log)}, with a traceback: {sum('Traceback' in line for line in log)}")
    print("violations by invariant:" if report.violations else "violations: none")
    for line in report.summary():
        print(line)
    total = len(report.violations)
    print(
        f"chaos: {args.prompts} prompts, {report.lost} lost, "
        f"{report.double_answers} double answers, {total} invariant violations"
    )
    return 0 if total == 0 and report.lost == 0 and report.double_answers == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
