"""AWS API calls per request: what an add costs, and how many DynamoDB items a list page reads.

What it measures, through the real FastAPI app (in-process, `TestClient`) on moto (`mock_aws`):

- add (async, `POST /prompt-svc/prompt`): AWS calls per service and operation, for the first request
  of a key (a cold key: the keys table is read) and for requests on a key the function has cached;
- list pages (`POST /prompt-svc/prompts`, limit 20, pages 1 and 2 via the cursor) of one user on a
  table of 10,000 prompts of 10 users, filtered by `threadId`, by `status` (`equals`, and `isInList`
  on two statuses), and unfiltered for comparison: DynamoDB calls, items read, items returned and
  items read per item returned.

How: every table, queue and secret of template.yaml is created in moto with
`promptsvc_dev.template.create_resources`, the API function's environment is set from the
template, the prompts are written straight into the table with a batch writer (seeding through the
API would be slow and is not what is measured), then a counter is hooked on botocore's `before-call`
(one per API call, per `service.Operation`) and `after-call` (items read: a Query's or Scan's
`ScannedCount`, i.e. the items evaluated and billed, not just those returned; 1 for a GetItem that
found its item; a BatchGetItem's responses) events of every client the service makes from then on.

Targets (the last line prints them): a warm add is exactly 2 AWS calls (1 DynamoDB write, 1 SQS
send); a threadId or status filtered list page reads at most 2 items per item returned. The script
exits with status 1 when a target is missed.

Run from the repository root: `.venv/bin/python benchmarks/aws_calls.py`.
"""

import json
import os
import random
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"

PROMPTS = 10_000
USERS = 10
THREADS_PER_USER = 100
LIMIT = 20
WARM_ADDS = 5
SEED = 20240601

# How the seeded prompts are spread over statuses (weights), as a queue that has been running a while.
STATUS_WEIGHTS = {
    "completed": 50,
    "scheduled": 15,
    "running": 5,
    "errored": 10,
    "abandoned": 10,
    "canceled": 10,
}

# Thread sizes are skewed (weight 1/(rank+1)): a few long conversations, many short ones.
THREAD_WEIGHTS = [1 / (rank + 1) for rank in range(THREADS_PER_USER)]

ADD_TARGET = 2
READ_RATIO_TARGET = 2.0

LIST_USER = "user-03"
LIST_KEY = "bench-list-key"
ADD_USER = "bench-adder"  # not a seeded user, so its adds do not change the listed user's pages
ADD_KEY = "bench-add-key"


def fake_aws_environment() -> None:
    """Credentials that are not real and no endpoint override: moto intercepts in-process."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            del os.environ[name]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
    )


fake_aws_environment()

# fastapi.testclient warns that starlette's TestClient would rather have httpx2; httpx works.
warnings.filterwarnings("ignore", message=".*install `httpx2`")

# Imported after the environment is set: botocore and powertools read it at import and client time.
from fastapi.testclient import TestClient  # noqa: E402
from moto import mock_aws  # noqa: E402
from promptsvc import wiring  # noqa: E402
from promptsvc.adapters import clients  # noqa: E402
from promptsvc.adapters.prompt_items import to_item  # noqa: E402
from promptsvc.api.app import create_app  # noqa: E402
from promptsvc.domain.clock import now_rfc3339  # noqa: E402
from promptsvc.domain.keys import Role  # noqa: E402
from promptsvc.domain.prompt import NewPrompt, Prompt, create_prompt  # noqa: E402
from promptsvc.domain.status import Status, is_terminal  # noqa: E402
from promptsvc.settings import Settings, get_settings  # noqa: E402
from promptsvc_dev.template import create_resources  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Counting


def items_read(operation: str, parsed: dict[str, Any]) -> int:
    """DynamoDB items an operation read (evaluated), from its parsed response."""
    if operation in ("Query", "Scan"):
        if "ScannedCount" in parsed:
            return int(parsed["ScannedCount"])
        return int(parsed.get("Count", len(parsed.get("Items", []))))
    if operation == "GetItem":
        return 1 if parsed.get("Item") else 0
    if operation == "BatchGetItem":
        return sum(len(items) for items in parsed.get("Responses", {}).values())
    if operation == "TransactGetItems":
        return sum(1 for response in parsed.get("Responses", []) if response.get("Item"))
    return 0


@dataclass(frozen=True)
class Usage:
    """What one measured request (or several) cost."""

    calls: Counter[str]  # by "service.Operation"
    items_read: int

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def dynamodb_calls(self) -> int:
        return sum(n for name, n in self.calls.items() if name.startswith("dynamodb."))

    def describe_calls(self) -> str:
        return ", ".join(f"{name}={n}" for name, n in sorted(self.calls.items())) or "none"


class Meter:
    """botocore event handlers counting API calls and DynamoDB items read."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.items_read = 0

    def before_call(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def after_call(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.service_model.service_name == "dynamodb":
            self.items_read += items_read(model.name, parsed)

    def install(self) -> None:
        """Hook every client the service creates from now on (register_hook drops existing ones)."""
        clients.register_hook("before-call", self.before_call)
        clients.register_hook("after-call", self.after_call)

    def measure(self, request: Callable[[], T]) -> tuple[T, Usage]:
        """Run one request (or several) and return its result and what it cost."""
        self.calls = Counter()
        self.items_read = 0
        result = request()
        return result, Usage(Counter(self.calls), self.items_read)


# ----------------------------------------------------------------------------------------------
# Set-up: the template's resources, the API function's environment, the seeded table


def api_settings() -> Settings:
    """Create the template's resources and take on the API function's environment."""
    stack = create_resources(TEMPLATE)
    os.environ.update(stack.function_environment("ApiFunction"))
    os.environ["ENGINE"] = "mock"
    get_settings.cache_clear()
    return get_settings()


@dataclass
class Corpus:
    """What was seeded: prompts per (user, thread) and per (user, status)."""

    threads: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)

    def threads_of(self, user: str) -> list[tuple[str, int]]:
        """The user's threads, largest first."""
        own = [(thread, n) for (u, thread), n in self.threads.items() if u == user]
        return sorted(own, key=lambda pair: (-pair[1], pair[0]))


def seeded_prompt(index: int, rng: random.Random, clock: datetime, model_id: str, template: str) -> Prompt:
    user = rng.randrange(USERS)
    thread = rng.choices(range(THREADS_PER_USER), weights=THREAD_WEIGHTS)[0]
    status = Status(rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0])
    new = NewPrompt(
        prompt=f"Question {index}: summarise the report in three sentences.",
        modelId=model_id,
        template=template,
        threadId=f"thr-u{user:02d}-{thread:03d}",
        maxRetries=10,
        sync=False,
        id=f"prm_seed{index:05d}",
    )
    prompt = create_prompt(f"user-{user:02d}", new, clock=clock)
    if status is Status.SCHEDULED:
        return prompt
    ran = status is not Status.CANCELED or rng.random() < 0.5
    later = now_rfc3339(clock + timedelta(seconds=rng.randint(1, 120)))
    return prompt.with_status(
        status,
        runCount=rng.randint(1, 3) if ran else 0,
        lastRun=later if ran else "",
        updatedAt=later,
        answer="A short answer." if status is Status.COMPLETED else "",
        error="engine timed out" if status in (Status.ERRORED, Status.ABANDONED) else "",
    )


def seed_prompts(settings: Settings) -> Corpus:
    """Write PROMPTS prompts of USERS users straight into the table, one every ~30 s over 3.5 days."""
    rng = random.Random(SEED)
    model = wiring.catalog(settings).resolve(None)
    corpus = Corpus()
    clock = datetime(2024, 6, 1, tzinfo=UTC)
    with clients.dynamodb_table(settings.prompts_table).batch_writer() as batch:
        for index in range(PROMPTS):
            clock += timedelta(seconds=rng.randint(1, 60), microseconds=rng.randint(0, 999_999))
            prompt = seeded_prompt(index, rng, clock, model.id, model.template)
            item = to_item(prompt)
            if is_terminal(prompt.status):
                item["expiresAt"] = int((clock + timedelta(days=30)).timestamp())
            batch.put_item(Item=item)
            corpus.threads[(prompt.userId, prompt.threadId)] += 1
            corpus.statuses[(prompt.userId, str(prompt.status))] += 1
    return corpus


# ----------------------------------------------------------------------------------------------
# Benchmarks


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class AddFigures:
    cold: Usage
    warm: list[Usage]

    @property
    def warm_calls(self) -> int:
        """The most calls any warm add made (each one must meet the target)."""
        return max(usage.total_calls for usage in self.warm)


def bench_add(http: TestClient, meter: Meter) -> AddFigures:
    def add(n: int) -> Usage:
        body = {"prompt": f"benchmark prompt {n}", "threadId": "bench-thread"}
        response, usage = meter.measure(
            lambda: http.post("/prompt-svc/prompt", json=body, headers=auth(ADD_KEY))
        )
        if response.status_code != 200:
            raise RuntimeError(f"add failed: {response.status_code} {response.text}")
        return usage

    cold = add(0)
    return AddFigures(cold=cold, warm=[add(n) for n in range(1, WARM_ADDS + 1)])


@dataclass(frozen=True)
class PageFigures:
    case: str
    page: int
    usage: Usage
    returned: int

    @property
    def ratio(self) -> float:
        """Items read per item returned (an empty page counts its reads as if it returned one)."""
        return self.usage.items_read / self.returned if self.returned else float(self.usage.items_read)


def list_page(http: TestClient, meter: Meter, query: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
    response, usage = meter.measure(
        lambda: http.post("/prompt-svc/prompts", json={"query": query}, headers=auth(LIST_KEY))
    )
    if response.status_code != 200:
        raise RuntimeError(f"list failed: {response.status_code} {response.text}")
    return response.json(), usage


def bench_list(
    http: TestClient, meter: Meter, case: str, filters: list[dict[str, Any]], pages: int = 2
) -> list[PageFigures]:
    """Pages 1..pages of one query, following the cursor."""
    figures: list[PageFigures] = []
    query: dict[str, Any] = {"limit": LIMIT, "filters": filters}
    for page in range(1, pages + 1):
        body, usage = list_page(http, meter, query)
        figures.append(PageFigures(case, page, usage, len(body["prompts"])))
        if "after" not in body:
            break
        query = {**query, "jsonAfter": body["after"]}
    return figures


def equals(name: str, *values: str) -> dict[str, Any]:
    op = "equals" if len(values) == 1 else "isInList"
    return {"fields": [name], "op": op, "jsonValues": json.dumps(list(values))}


# ----------------------------------------------------------------------------------------------
# Report


def print_add(figures: AddFigures) -> None:
    print("add (async, POST /prompt-svc/prompt): AWS calls per request")
    print(
        f"  cold key (first request of the key): {figures.cold.total_calls}  {figures.cold.describe_calls()}"
    )
    for n, usage in enumerate(figures.warm, start=1):
        print(f"  warm key, add {n}:                    {usage.total_calls}  {usage.describe_calls()}")


def print_pages(pages: list[PageFigures]) -> None:
    header = f"  {'case':<44} {'page':>4} {'ddb calls':>9} {'read':>6} {'returned':>8} {'read/ret':>8}  calls"
    print(header)
    for p in pages:
        print(
            f"  {p.case:<44} {p.page:>4} {p.usage.dynamodb_calls:>9} {p.usage.items_read:>6}"
            f" {p.returned:>8} {p.ratio:>8.2f}  {p.usage.describe_calls()}"
        )


def run() -> int:
    started = time.perf_counter()
    with mock_aws():
        clients.reset()
        try:
            settings = api_settings()
            corpus = seed_prompts(settings)
            keys = wiring.key_service(settings)
            keys.bootstrap(LIST_KEY, LIST_USER, Role.USER)
            keys.bootstrap(ADD_KEY, ADD_USER, Role.USER)
            seeded = time.perf_counter() - started

            meter = Meter()
            meter.install()  # after seeding: only the measured requests are counted
            with TestClient(create_app(settings)) as http:
                adds = bench_add(http, meter)

                threads = corpus.threads_of(LIST_USER)
                (big_thread, big_size), (small_thread, small_size) = threads[0], threads[-1]
                statuses = {s: corpus.statuses[(LIST_USER, s)] for s in STATUS_WEIGHTS}
                # The first list request of a key in a function reads the key, and the function's
                # first page with a cursor fetches the cursor secret (then cached): shown, not judged;
                # the pages below are measured warm.
                _, cold_list = list_page(http, meter, {"limit": LIMIT})
                scheduled, running = statuses["scheduled"], statuses["running"]
                cases = [
                    (f"threadId={big_thread} ({big_size})", [equals("threadId", big_thread)]),
                    (f"threadId={small_thread} ({small_size})", [equals("threadId", small_thread)]),
                    (f"status=scheduled ({scheduled})", [equals("status", "scheduled")]),
                    (
                        f"status in [scheduled,running] ({scheduled + running})",
                        [equals("status", "scheduled", "running")],
                    ),
                ]
                filtered = [page for case, where in cases for page in bench_list(http, meter, case, where)]
                unfiltered = bench_list(http, meter, f"no filter ({sum(statuses.values())})", [])
        finally:
            clients.clear_hooks()
            get_settings.cache_clear()

    user_prompts = sum(statuses.values())
    print(
        f"table: {PROMPTS:,} prompts of {USERS} users ({THREADS_PER_USER} threads each, all statuses), "
        f"seeded in {seeded:.1f} s; listing as {LIST_USER} ({user_prompts} prompts)"
    )
    print()
    print_add(figures=adds)
    print()
    print(f"list (POST /prompt-svc/prompts, limit {LIMIT}, newest first; page 2 via the cursor)")
    print(f"  first list request (cold key, cold cursor secret), no filter: {cold_list.describe_calls()}")
    print_pages(filtered)
    print("  for comparison, no filter:")
    print_pages(unfiltered)
    print()

    warm_add = adds.warm_calls
    # The target is 1 DynamoDB write and 1 SQS send: 2 calls of which 1 is DynamoDB.
    warm_ok = all(usage.total_calls == ADD_TARGET and usage.dynamodb_calls == 1 for usage in adds.warm)
    worst = max(filtered, key=lambda p: p.ratio)
    list_ok = worst.ratio <= READ_RATIO_TARGET
    if not warm_ok:
        print(f"MISSED: a warm add made {warm_add} AWS calls, target {ADD_TARGET}")
    if not list_ok:
        print(
            f"MISSED: '{worst.case}' page {worst.page} read {worst.usage.items_read} items for "
            f"{worst.returned} returned ({worst.ratio:.2f} per item), target <= {READ_RATIO_TARGET:g}"
        )
    print(f"run time: {time.perf_counter() - started:.1f} s")
    print(
        f"add: {warm_add} AWS calls; list: {worst.ratio:.2f} items read per item returned "
        f"(target: add == {ADD_TARGET}, list <= {READ_RATIO_TARGET:g})"
    )
    return 0 if warm_ok and list_ok else 1


if __name__ == "__main__":
    sys.exit(run())
