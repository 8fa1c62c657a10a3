"""The client side of a chaos run against a `promptsvc dev --chaos ...` (benchmarks/chaos.py and
tests/e2e/test_chaos.py share it): prompts over many threads, some sync, some canceled, some
removed, a few threads watched over the WebSocket API; then a drain, then everything the
invariant checker (dev/promptsvc_dev/chaos_check.py) reads.

Over real HTTP, as a client would: a 5xx or a broken connection is retried with the same body
(an add with the same `id` is idempotent), and counted.
"""

import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from promptsvc_dev.chaos_check import TERMINAL, Observed, Submitted, Violation

FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "tempor")


HANDSHAKE_SECONDS = 30  # API Gateway's $connect integration may take up to 29 s


def dev_environment(workdir: Path, stall_seconds: float = 1.5) -> dict[str, str]:
    """The environment of a `promptsvc dev --chaos` to run against: the shipped catalog with short
    stall timeouts (a stall costs seconds, not 30), quick retries, and the mock engine's attempt
    log (`attempt_log(workdir)`), which the checker compares answers with."""
    catalog = json.loads(resources.files("promptsvc.data").joinpath("models.json").read_text())
    for model in catalog["models"]:
        model["timeouts"] = {"callSeconds": 60, "stallSeconds": stall_seconds}
    path = workdir / "chaos-models.json"
    path.write_text(json.dumps(catalog))
    return {
        "MODEL_CATALOG_FILE": str(path),
        "MOCK_ATTEMPT_LOG": str(attempt_log(workdir)),
        "RETRY_BASE_SECONDS": "0.5",
        "RETRY_CAP_SECONDS": "4",
    }


def attempt_log(workdir: Path) -> Path:
    return workdir / "mock-attempts.jsonl"


@dataclass(frozen=True)
class Workload:
    prompts: int = 1000
    per_thread: int = 8
    users: int = 2
    workers: int = 16
    sync_share: float = 0.1
    cancel_share: float = 0.1
    remove_share: float = 0.05
    low_retries_share: float = 0.2  # maxRetries 1: some prompts run out of retries
    watched_share: float = 0.1  # threads with a WebSocket subscriber
    seed: int = 0
    drain_seconds: float = 600.0
    # After the drain, before reading events: the last events of removed prompts' runs, and the
    # event log's HOLE_SECONDS (30), after which a seq whose write never landed reads as a `gap`
    # (before it, a reader stops at the hole).
    settle_seconds: float = 35.0


@dataclass(frozen=True)
class _Planned:
    id: str
    thread: str
    user: str
    body: dict[str, Any]
    action: str  # "", "cancel" or "remove"
    delay: float  # before the action


@dataclass
class Run:
    observed: Observed
    figures: dict[str, float] = field(default_factory=dict)
    ws_violations: list[Violation] = field(default_factory=list)
    drain_seconds: float = 0.0
    drained: bool = False


class ChaosClient:
    def __init__(
        self, base_url: str, admin_key: str, ws_url: str = "", progress: Callable[[str], None] | None = None
    ) -> None:
        self.progress = progress or (lambda line: None)
        self.base_url = base_url
        self.ws_url = ws_url
        self.admin_key = admin_key
        self.figures: defaultdict[str, float] = defaultdict(int)  # counts stay whole numbers
        self._lock = threading.Lock()
        self._local = threading.local()

    def _count(self, name: str, n: float = 1) -> None:
        with self._lock:
            self.figures[name] += n

    def request(
        self, key: str, method: str, path: str, body: Any = None, tries: int = 8
    ) -> httpx.Response | None:
        """The response, retrying 5xx and broken connections with a backoff; None if every try failed."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self.base_url, timeout=40)
        route = f"{method} {path.split('/')[2] if path.count('/') > 1 else path}"
        for attempt in range(tries):
            try:
                response = client.request(method, path, headers={"Authorization": f"Bearer {key}"}, json=body)
            except httpx.TransportError:
                self._count(f"http transport errors ({route})")
            else:
                if response.status_code < 500:
                    return response
                self._count(f"http {response.status_code} ({route})")
            time.sleep(min(2.0, 0.1 * 2**attempt))
        self._count(f"http gave up ({route})")
        return None

    # -- the run --------------------------------------------------------------------------------

    def run(self, workload: Workload, attempt_log: Path) -> Run:
        rng = random.Random(workload.seed)
        keys = self._user_keys(workload)
        threads = self._plan(workload, rng, keys)
        watchers = [
            _Watcher(self.ws_url, keys[user], user, thread)
            for (user, thread) in sorted({(p.user, p.thread) for plan in threads for p in plan})
            if self.ws_url and rng.random() < workload.watched_share
        ]
        for watcher in watchers:
            watcher.start()
        submitted: list[Submitted] = []
        began = time.monotonic()
        with ThreadPoolExecutor(workload.workers) as pool:
            for found in pool.map(lambda plan: self._thread(plan, keys), threads):
                submitted.extend(found)
        self.progress(f"{len(submitted)} prompts added in {time.monotonic() - began:.0f} s; draining")
        started = time.monotonic()
        drained = self._drain(submitted, keys, workload)
        drain_seconds = time.monotonic() - started
        self.progress(f"drain {'done' if drained else 'NOT done'} in {drain_seconds:.0f} s; collecting")
        time.sleep(workload.settle_seconds)
        stored, events = self._collect(submitted, keys, workload)
        for watcher in watchers:
            watcher.stop()
        attempts = [json.loads(line) for line in attempt_log.read_text().splitlines() if line.strip()]
        run = Run(Observed(submitted, stored, events, attempts), self.figures, [], drain_seconds, drained)
        for watcher in watchers:
            self.figures["ws frames"] += watcher.frames
            self.figures["ws connections closed by the gateway"] += watcher.closed
            run.ws_violations.extend(watcher.violations)
        return run

    def _user_keys(self, workload: Workload) -> dict[str, str]:
        keys = {}
        for n in range(workload.users):
            user = f"chaos-user-{n}"
            response = self.request(self.admin_key, "POST", "/prompt-svc/keys", {"userId": user})
            if response is None or response.status_code != 201:
                raise RuntimeError(f"cannot create a key for {user}: {response and response.text}")
            keys[user] = response.json()["key"]
        return keys

    def _plan(self, workload: Workload, rng: random.Random, keys: dict[str, str]) -> list[list[_Planned]]:
        users = sorted(keys)
        threads: list[list[_Planned]] = []
        for n in range(workload.prompts):
            t = n // workload.per_thread
            if len(threads) <= t:
                threads.append([])
            user, thread = users[t % len(users)], f"chaos-{workload.seed}-t{t:04d}"
            prompt_id = f"chaos-{workload.seed}-p{n:05d}"
            text = f"chaos prompt {prompt_id}: " + " ".join(rng.choices(FILLER, k=rng.randint(3, 60)))
            body: dict[str, Any] = {"id": prompt_id, "prompt": text, "threadId": thread}
            if rng.random() < workload.sync_share:
                body["sync"] = True
            if rng.random() < workload.low_retries_share:
                body["maxRetries"] = 1
            roll = rng.random()
            action = (
                "cancel"
                if roll < workload.cancel_share
                else "remove"
                if roll < workload.cancel_share + workload.remove_share
                else ""
            )
            threads[t].append(_Planned(prompt_id, thread, user, body, action, rng.uniform(0, 0.5)))
        return threads

    def _thread(self, plan: list[_Planned], keys: dict[str, str]) -> list[Submitted]:
        """Add the thread's prompts one after another (sync ones wait), then cancel and remove."""
        accepted: list[_Planned] = []
        for item in plan:
            began = time.monotonic()
            response = self.request(keys[item.user], "POST", "/prompt-svc/prompt", item.body)
            self._count(
                "add seconds" + (" (sync)" if item.body.get("sync") else ""), time.monotonic() - began
            )
            if response is None or response.status_code not in (200, 202):
                self._count(f"adds refused ({response.status_code if response is not None else 'no answer'})")
                continue
            self._count("adds" + (" (sync)" if item.body.get("sync") else ""))
            accepted.append(item)
        removed = set()
        for item in accepted:
            if not item.action:
                continue
            time.sleep(item.delay)
            key = keys[item.user]
            if item.action == "cancel":
                response = self.request(key, "POST", f"/prompt-svc/prompt/{item.id}/cancel")
            else:
                response = self.request(key, "DELETE", f"/prompt-svc/prompt/{item.id}")
            status = response.status_code if response is not None else "no answer"
            self._count(f"{item.action} {status}")
            if item.action == "remove" and response is not None and response.status_code in (200, 404):
                removed.add(item.id)
        return [Submitted(i.id, i.user, i.thread, i.id in removed) for i in accepted]

    def _drain(self, submitted: list[Submitted], keys: dict[str, str], workload: Workload) -> bool:
        """Wait until every prompt that was not removed is terminal (or gone)."""
        pending = [s for s in submitted if not s.removed]
        deadline = time.monotonic() + workload.drain_seconds
        with ThreadPoolExecutor(workload.workers) as pool:
            while pending and time.monotonic() < deadline:
                states = list(pool.map(lambda s: self._state(s, keys), pending))
                pending = [s for s, state in zip(pending, states, strict=True) if state not in TERMINAL]
                left = Counter(state for state in states if state not in TERMINAL)
                self.progress(f"  {len(pending)} prompts not terminal: {dict(left)}")
                if pending:
                    time.sleep(2.0)
        return not pending

    def _state(self, item: Submitted, keys: dict[str, str]) -> str:
        """The prompt's status; a missing prompt counts as terminal (the checker reports it lost)."""
        response = self.request(keys[item.user], "GET", f"/prompt-svc/prompt/{item.id}")
        if response is None:
            return "unreadable"
        if response.status_code == 404:
            return "completed"
        return str(response.json()["prompt"]["status"])

    def _collect(
        self, submitted: list[Submitted], keys: dict[str, str], workload: Workload
    ) -> tuple[dict[str, dict[str, Any] | None], dict[tuple[str, str], list[dict[str, Any]]]]:
        def prompt(item: Submitted) -> tuple[str, dict[str, Any] | None]:
            response = self.request(keys[item.user], "GET", f"/prompt-svc/prompt/{item.id}")
            if response is None or response.status_code == 404:
                return item.id, None
            body = response.json()
            return item.id, {**body["prompt"], "answer": body.get("answer")}

        def events(thread: tuple[str, str]) -> tuple[tuple[str, str], list[dict[str, Any]]]:
            user, name = thread
            found: list[dict[str, Any]] = []
            after = 0
            while True:
                response = self.request(
                    keys[user], "GET", f"/prompt-svc/thread/{name}/events?after={after}&limit=100"
                )
                if response is None or response.status_code != 200:
                    self._count("event pages not read")
                    return thread, found
                page = response.json()
                if not page["events"]:
                    return thread, found
                found.extend(page["events"])
                after = page["after"]

        with ThreadPoolExecutor(workload.workers) as pool:
            stored = dict(pool.map(prompt, submitted))
            threads = sorted({(s.user, s.thread) for s in submitted})
            thread_events = dict(pool.map(events, threads))
        return stored, thread_events


class _Watcher:
    """A WebSocket subscriber of one thread: each event must arrive once, in seq order."""

    def __init__(self, ws_url: str, key: str, user: str, thread: str) -> None:
        self.url = f"{ws_url}?token={key}"
        self.thread = thread
        self.frames = 0
        self.closed = 0
        self.violations: list[Violation] = []
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._socket: Any = None

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._socket is not None:
            self._socket.close()
        self._worker.join(5)

    def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        last = 0
        try:
            with connect(self.url, open_timeout=HANDSHAKE_SECONDS) as socket:
                self._socket = socket
                socket.send(json.dumps({"action": "subscribe", "threadId": self.thread, "after": 0}))
                while not self._stop.is_set():
                    try:
                        frame = json.loads(socket.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    seq = frame.get("seq")
                    if not isinstance(seq, int) or frame.get("part", 1) != 1:
                        continue
                    self.frames += 1
                    if seq <= last:
                        detail = f"seq {seq} after {last}"
                        self.violations.append(
                            Violation("websocket event repeated or out of order", self.thread, detail)
                        )
                    last = max(last, seq)
        except ConnectionClosed:
            if not self._stop.is_set():
                self.closed += 1
        except Exception as error:  # a refused handshake: counted, never fatal to the run
            self.violations.append(Violation("websocket subscriber failed", self.thread, repr(error)))
