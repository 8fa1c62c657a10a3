"""Load on the local stack (issue 9): concurrent adds, gets and lists from several users, then a drain.

Starts `promptsvc dev` (mock engine) as a subprocess on free loopback ports, makes a key per user,
and for `--seconds` (60 by default) runs `--workers` asyncio workers per user, each looping over
add (not sync), get (of one of its user's prompts) and list (its user's newest page) with httpx.
Then it waits for the queue to drain (at most `--drain-seconds`) and checks every added prompt:
completed exactly once (`runCount == 1`, one `running` and one `completed` event on its thread,
an answer that echoes it). Prints requests/s, p50 and p99 per route, the errors, the prompts
lost (not completed after the drain) and run twice; the last line is
`load: N req/s, E errors, L lost`. A timing on a shared machine, so a benchmark, not a test.
"""

import argparse
import asyncio
import queue
import random
import statistics
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from promptsvc_dev import dev_process

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "load-admin-key"
STARTUP_SECONDS = 90.0
TERMINAL = ("completed", "abandoned", "canceled")
ROUTES = ("add", "get", "list")


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)  # "route: status or exception"
    added: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))  # user -> ids

    def record(self, route: str, started: float, response: httpx.Response | None, problem: str = "") -> None:
        self.latencies[route].append(time.monotonic() - started)
        if response is not None and not response.is_success:
            problem = f"{response.status_code} {response.text[:80]}"
        if problem:
            self.errors[f"{route}: {problem}"] += 1


def start_server(seconds_limit: float) -> tuple[subprocess.Popen[str], str, "queue.Queue[str]"]:
    flags = ("--engine", "mock", "--mock-chunk-delay", "0")
    dev = dev_process.start_dev(*flags, api_key=ADMIN_KEY, cwd=ROOT, startup_seconds=seconds_limit)
    return dev.process, dev.base_url, dev.output


async def worker(
    client: httpx.AsyncClient, user: str, key: str, deadline: float, stats: Stats, rng: random.Random
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < deadline:
        mine = stats.added[user]
        route = rng.choices(ROUTES, weights=(2, 2, 1))[0] if mine else "add"
        started = time.monotonic()
        try:
            if route == "add":
                text = f"load {user} {rng.getrandbits(64):x}"
                response = await client.post("/prompt-svc/prompt", json={"prompt": text}, headers=headers)
                if response.status_code == 200:
                    prompt = response.json()["prompt"]
                    mine.append((prompt["id"], text))
            elif route == "get":
                prompt_id, _ = rng.choice(mine)
                response = await client.get(f"/prompt-svc/prompt/{prompt_id}", headers=headers)
            else:
                response = await client.post(
                    "/prompt-svc/prompts", json={"query": {"limit": 20}}, headers=headers
                )
        except httpx.HTTPError as error:
            stats.record(route, started, None, type(error).__name__)
            continue
        stats.record(route, started, response)


async def load(base_url: str, keys: dict[str, str], seconds: float, workers: int, stats: Stats) -> float:
    limits = httpx.Limits(max_connections=len(keys) * workers, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        started = time.monotonic()
        deadline = started + seconds
        rng = random.Random(9)
        await asyncio.gather(
            *(
                worker(client, user, key, deadline, stats, random.Random(rng.random()))
                for user, key in keys.items()
                for _ in range(workers)
            )
        )
        return time.monotonic() - started


async def drain(
    base_url: str, keys: dict[str, str], stats: Stats, limit: float
) -> tuple[int, int, int, float]:
    """Wait (at most `limit` s) until every added prompt is terminal and, when completed, its
    thread shows its `completed` event; (lost, run twice, with events missing, seconds)."""
    started = time.monotonic()
    # under uvicorn's 5 s keep-alive, so no request goes out on a connection the server is closing
    limits = httpx.Limits(max_connections=16, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        pending = {(user, prompt_id, text) for user, ids in stats.added.items() for prompt_id, text in ids}
        final: dict[tuple[str, str, str], dict] = {}
        gate = asyncio.Semaphore(16)
        drain_errors: Counter[str] = Counter()

        async def look(item: tuple[str, str, str]) -> bool:
            """Read the prompt and its thread's events; True once there is nothing more to wait for."""
            user, prompt_id, _ = item
            async with gate:
                headers = {"Authorization": f"Bearer {keys[user]}"}
                try:
                    response = await client.get(f"/prompt-svc/prompt/{prompt_id}", headers=headers)
                    if response.status_code != 200 or response.json()["prompt"]["status"] not in TERMINAL:
                        return False
                    body = response.json()
                    thread = body["prompt"]["threadId"]
                    events = await client.get(f"/prompt-svc/thread/{thread}/events", headers=headers)
                except httpx.HTTPError as error:  # looked at again on the next pass
                    drain_errors[type(error).__name__] += 1
                    return False
                body["events"] = events.json()["events"] if events.status_code == 200 else []
                final[item] = body
                return body["prompt"]["status"] != "completed" or "completed" in statuses(body, prompt_id)

        while pending and time.monotonic() - started < limit:
            done = await asyncio.gather(*(look(item) for item in pending))
            pending -= {item for item, ok in zip(list(pending), done, strict=True) if ok}
            if pending:
                await asyncio.sleep(1.0)
        if drain_errors:
            print(f"  transport errors while draining (retried): {dict(drain_errors)}")
        lost = twice = missing = 0
        for item in sorted(set(final) | pending):
            _, prompt_id, text = item
            body = final.get(item)
            if body is None:
                lost += 1
                print(f"  not terminal after the drain: {prompt_id}")
                continue
            prompt, seen = body["prompt"], statuses(body, prompt_id)
            if prompt["status"] != "completed" or text not in (body.get("answer") or ""):
                lost += 1
                print(
                    f"  not completed with its answer: {prompt_id} {prompt['status']} {prompt.get('error')}"
                )
            elif prompt["runCount"] != 1 or seen["running"] > 1 or seen["completed"] > 1:
                twice += 1
                print(f"  not run exactly once: {prompt_id} runs {prompt['runCount']}, events {dict(seen)}")
            elif seen["running"] != 1 or seen["completed"] != 1:
                missing += 1
                print(f"  thread events missing: {prompt_id} events {dict(seen)}")
    return lost, twice, missing, time.monotonic() - started


def statuses(body: dict, prompt_id: str) -> Counter[str]:
    """How many status events of each kind the prompt's thread holds for it."""
    return Counter(
        e.get("status") for e in body["events"] if e["type"] == "status" and e["promptId"] == prompt_id
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--users", type=int, default=4, help="users, each with its own key (default 4)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent workers per user (default 4)")
    parser.add_argument("--drain-seconds", type=float, default=600.0, help="bound of the drain (default 600)")
    args = parser.parse_args()

    process, base_url, output = start_server(STARTUP_SECONDS)
    try:
        keys = {}
        for n in range(args.users):
            response = httpx.post(
                base_url + "/prompt-svc/keys",
                json={"userId": f"load-user-{n}"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            response.raise_for_status()
            keys[f"load-user-{n}"] = response.json()["key"]
        stats = Stats()
        elapsed = asyncio.run(load(base_url, keys, args.seconds, args.workers, stats))
        print(f"load phase done: {sum(map(len, stats.latencies.values()))} requests in {elapsed:.1f} s")
        lost, twice, missing, drained = asyncio.run(drain(base_url, keys, stats, args.drain_seconds))
    finally:
        if process.poll() is not None:
            print(f"promptsvc dev exited ({process.returncode}) during the run; its last lines:")
            print("".join(list(output.queue)[-20:]))
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    server_errors = [
        line.rstrip() for line in list(output.queue) if '"level":"ERROR"' in line.replace(" ", "")
    ]

    total = sum(len(v) for v in stats.latencies.values())
    errors = sum(stats.errors.values())
    added = sum(len(v) for v in stats.added.values())
    print(f"{args.users} users x {args.workers} workers for {elapsed:.1f} s on {base_url} (mock engine)")
    for route in ROUTES:
        values = stats.latencies.get(route, [])
        if values:
            print(
                f"  {route:5} {len(values):6} requests {len(values) / elapsed:7.1f} req/s"
                f"  p50 {percentile(values, 0.5) * 1000:7.1f} ms"
                f"  p99 {percentile(values, 0.99) * 1000:7.1f} ms"
                f"  mean {statistics.fmean(values) * 1000:7.1f} ms"
            )
    for problem, count in stats.errors.most_common(10):
        print(f"  error x{count}: {problem}")
    print(f"server ERROR log lines: {len(server_errors)}")
    for line in server_errors[:5]:
        print(f"  {line[:200]}")
    print(
        f"added {added} prompts; drained in {drained:.1f} s; lost {lost}; run twice {twice};"
        f" thread events missing {missing}"
    )
    print(f"load: {total / elapsed:.0f} req/s, {errors} errors, {lost} lost")
    return 0 if errors == lost == twice == missing == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
