"""AWS API calls per request: what an add costs, and how many DynamoDB items each list query reads.

What it measures, through the real FastAPI app (in-process, `TestClient`) on moto (`mock_aws`):

- add (async, `POST /prompt-svc/prompt`): AWS calls per service and operation, for the first request
  of a key (a cold key: the keys table is read) and for requests on a key the function has cached;
- list pages (`POST /prompt-svc/prompts`, limit 20, pages 1 and 2 via the cursor) of one user with
  10,000 prompts (in a table of 12,000: 2,000 more of 9 other users), for each filter and order of
  the query language (docs/api.md, "Cost"): key filters (threadId, status, id), time ranges
  (createdAt, updatedAt), the orders an index serves (createdAt, updatedAt), and everything else
  (substring, prefix, `or`, comparisons on other fields, other orders, random order, counts, an
  admin's list of every user): DynamoDB calls, items read, items returned, items read per item
  returned and per request.

How: every table, queue and secret of template.yaml is created in moto with
`promptsvc_dev.template.create_resources`, the API function's environment is set from the
template, the prompts are written straight into the table with a batch writer (seeding through the
API would be slow and is not what is measured), then a counter is hooked on botocore's `before-call`
(one per API call, per `service.Operation`) and `after-call` (items read: a Query's or Scan's
`ScannedCount`, i.e. the items evaluated and billed, not just those returned, a `Select: COUNT`
Query's too; 1 for a GetItem that found its item; a BatchGetItem's responses) events of every
client the service makes from then on.

Targets (the last line prints them): a warm add is exactly 2 AWS calls (1 DynamoDB write, 1 SQS
send); a page filtered by keys or time ranges, or in an order an index serves, reads at most 2
items per item returned; every other query reads at most a fixed number of items per request,
whatever the user holds (domain.query's ceilings: 1,001 for a page, 10,001 more for a count). The
script exits with status 1 when a target is missed.

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

LIST_USER_PROMPTS = 10_000  # the user whose lists are measured
OTHER_USERS = 9
OTHER_PROMPTS = 2_000  # of the other users: a user's lists never read them
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

# How long the measured function trusts a key it looked up (KEY_CACHE_SECONDS, 60 s by default):
# longer than any run, so every measured request after a key's first is warm, as the targets are
# meant. With 60 s the key was read again (a keys-table GetItem: 1 item read, 1 more DynamoDB
# call) by whichever request ran a minute after it was cached, which on a loaded machine could be a
# list page reading its 1,001 items: 1,002, a miss the list never made.
KEY_CACHE_SECONDS = 24 * 60 * 60

LIST_USER = "user-heavy"
LIST_KEY = "bench-list-key"
ADMIN_KEY = "bench-admin-key"
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
from promptsvc.domain.query import COUNT_CEILING, READ_BUDGET, SORT_CEILING  # noqa: E402
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
    os.environ["KEY_CACHE_SECONDS"] = str(KEY_CACHE_SECONDS)  # every request after a key's first warm
    get_settings.cache_clear()
    return get_settings()


@dataclass
class Corpus:
    """What was seeded: prompts per (user, thread) and per (user, status); the listed user's ids
    and times."""

    threads: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # in order
    updated: list[str] = field(default_factory=list)

    def threads_of(self, user: str) -> list[tuple[str, int]]:
        """The user's threads, largest first."""
        own = [(thread, n) for (u, thread), n in self.threads.items() if u == user]
        return sorted(own, key=lambda pair: (-pair[1], pair[0]))

    def add(self, prompt: Prompt) -> None:
        self.threads[(prompt.userId, prompt.threadId)] += 1
        self.statuses[(prompt.userId, str(prompt.status))] += 1
        if prompt.userId == LIST_USER:
            self.ids.append(prompt.id)
            self.created.append(prompt.createdAt)
            self.updated.append(prompt.updatedAt)


def seeded_prompt(
    index: int, user: str, rng: random.Random, clock: datetime, model_id: str, template: str
) -> Prompt:
    thread = rng.choices(range(THREADS_PER_USER), weights=THREAD_WEIGHTS)[0]
    status = Status(rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0])
    new = NewPrompt(
        prompt=f"Question {index}: summarise the report in three sentences.",
        modelId=model_id,
        template=template,
        threadId=f"thr-{user}-{thread:03d}",
        maxRetries=10,
        sync=False,
        id=f"prm_seed{index:05d}",
    )
    prompt = create_prompt(user, new, clock=clock)
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
    """Write the listed user's prompts and the others' (shuffled together) straight into the table,
    one every ~30 s over about four days."""
    rng = random.Random(SEED)
    owners = [LIST_USER] * LIST_USER_PROMPTS
    owners += [f"user-{rng.randrange(OTHER_USERS):02d}" for _ in range(OTHER_PROMPTS)]
    rng.shuffle(owners)
    model = wiring.catalog(settings).resolve(None)
    corpus = Corpus()
    clock = datetime(2024, 6, 1, tzinfo=UTC)
    with clients.dynamodb_table(settings.prompts_table).batch_writer() as batch:
        for index, user in enumerate(owners):
            clock += timedelta(seconds=rng.randint(1, 60), microseconds=rng.randint(0, 999_999))
            prompt = seeded_prompt(index, user, rng, clock, model.id, model.template)
            item = to_item(prompt)
            if is_terminal(prompt.status):
                item["expiresAt"] = int((clock + timedelta(days=30)).timestamp())
            batch.put_item(Item=item)
            corpus.add(prompt)
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


# Which target a list query answers to: a page that reads little more than itself, or a fixed
# number of items per request.
PER_ITEM = "per item"
PER_REQUEST = "per request"
PAGE_CEILING = max(READ_BUDGET, SORT_CEILING + 1)  # items a page request reads at most
COUNT_READS = COUNT_CEILING + 1  # and a count, besides


@dataclass(frozen=True)
class ListCase:
    """One query of the language, as its user (or the admin) sends it."""

    name: str
    kind: str  # "key filter", "time range", "index order", "other filter", "other order", "count"
    query: dict[str, Any]
    key: str = LIST_KEY

    @property
    def target(self) -> str:
        return PER_ITEM if self.kind in ("key filter", "time range", "index order") else PER_REQUEST


@dataclass(frozen=True)
class PageFigures:
    case: ListCase
    page: int
    usage: Usage
    returned: int
    status: int  # the HTTP status: 400 when the query was refused past a ceiling

    @property
    def ratio(self) -> float:
        """Items read per item returned (an empty page counts its reads as if it returned one)."""
        return self.usage.items_read / self.returned if self.returned else float(self.usage.items_read)

    @property
    def ceiling(self) -> int:
        return PAGE_CEILING + (COUNT_READS if self.case.query.get("count") else 0)

    @property
    def within_target(self) -> bool:
        if self.case.target == PER_ITEM:
            return self.status == 200 and self.ratio <= READ_RATIO_TARGET
        return self.usage.items_read <= self.ceiling


def list_page(
    http: TestClient, meter: Meter, query: dict[str, Any], key: str = LIST_KEY
) -> tuple[int, dict[str, Any], Usage]:
    response, usage = meter.measure(
        lambda: http.post("/prompt-svc/prompts", json={"query": query}, headers=auth(key))
    )
    if response.status_code not in (200, 400):
        raise RuntimeError(f"list failed: {response.status_code} {response.text}")
    return response.status_code, response.json(), usage


def bench_list(http: TestClient, meter: Meter, case: ListCase, pages: int = 2) -> list[PageFigures]:
    """Pages 1..pages of one query, following the cursor."""
    figures: list[PageFigures] = []
    query: dict[str, Any] = {"limit": LIMIT, **case.query}
    for page in range(1, pages + 1):
        status, body, usage = list_page(http, meter, query, case.key)
        figures.append(PageFigures(case, page, usage, len(body.get("prompts", [])), status))
        if status != 200 or "after" not in body:
            break
        query = {**query, "jsonAfter": body["after"]}
    return figures


def where(name: str, op: str, *values: Any) -> dict[str, Any]:
    return {"fields": [name], "op": op, "jsonValues": json.dumps(list(values))}


def equals(name: str, *values: str) -> dict[str, Any]:
    return where(name, "equals" if len(values) == 1 else "isInList", *values)


def list_cases(corpus: Corpus) -> list[ListCase]:
    """Every filter and order of the query language, on the listed user's 10,000 prompts."""
    threads = corpus.threads_of(LIST_USER)
    (big, big_n), (middle, middle_n), (small, small_n) = threads[0], threads[10], threads[-1]
    statuses = {s: corpus.statuses[(LIST_USER, s)] for s in STATUS_WEIGHTS}
    created, updated = corpus.created, sorted(corpus.updated)
    rng = random.Random(SEED)
    return [
        ListCase(f"no filter ({len(created)})", "key filter", {}),
        ListCase(f"threadId={big} ({big_n})", "key filter", {"filters": [equals("threadId", big)]}),
        ListCase(f"threadId={small} ({small_n})", "key filter", {"filters": [equals("threadId", small)]}),
        ListCase(
            f"threadId in [{big}, {middle}] ({big_n + middle_n})",
            "key filter",
            {"filters": [equals("threadId", big, middle)]},
        ),
        ListCase(
            f"status=scheduled ({statuses['scheduled']})",
            "key filter",
            {"filters": [equals("status", "scheduled")]},
        ),
        ListCase(
            f"status in [scheduled,running] ({statuses['scheduled'] + statuses['running']})",
            "key filter",
            {"filters": [equals("status", "scheduled", "running")]},
        ),
        ListCase("id in [5 ids]", "key filter", {"filters": [equals("id", *rng.sample(corpus.ids, 5))]}),
        ListCase(
            "createdAt >= the newest 1,500's",
            "time range",
            {"filters": [where("createdAt", "greaterThanOrEqual", created[-1500])]},
        ),
        ListCase(
            "createdAt in [4,000th, 5,000th)",
            "time range",
            {
                "filters": [
                    where("createdAt", "greaterThanOrEqual", created[4000]),
                    where("createdAt", "lessThan", created[5000]),
                ]
            },
        ),
        ListCase(
            f"createdAt < the middle, threadId={big}",
            "time range",
            {"filters": [where("createdAt", "lessThan", created[5000]), equals("threadId", big)]},
        ),
        ListCase(
            "updatedAt >= the newest 1,500's, by updatedAt",
            "time range",
            {
                "filters": [where("updatedAt", "greaterThanOrEqual", updated[-1500])],
                "orderBys": [{"field": "updatedAt", "desc": True}],
            },
        ),
        ListCase(
            "updatedAt < the 3,000th, by updatedAt",
            "time range",
            {
                "filters": [where("updatedAt", "lessThan", updated[3000])],
                "orderBys": [{"field": "updatedAt", "desc": True}],
            },
        ),
        ListCase("order createdAt (oldest first)", "index order", {"orderBys": [{"field": "createdAt"}]}),
        ListCase(
            "order updatedAt (newest first)",
            "index order",
            {"orderBys": [{"field": "updatedAt", "desc": True}]},
        ),
        ListCase("order updatedAt (oldest first)", "index order", {"orderBys": [{"field": "updatedAt"}]}),
        *other_cases(corpus, big, small, updated),
    ]


def other_cases(corpus: Corpus, big: str, small: str, updated: list[str]) -> list[ListCase]:
    """The filters and orders no key or index serves, counts, and an admin's list of everyone."""
    one = int(corpus.ids[len(corpus.ids) // 2].removeprefix("prm_seed"))  # the middle prompt's number
    rare = where("prompt", "containsSubstring", f"Question {one}:")
    every = where("prompt", "containsSubstring", "summarise")
    some = where("prompt", "containsSubstring", "Question 1")
    either = {
        "op": "or",
        "subFilters": [equals("status", "errored"), where("runCount", "greaterThanOrEqual", 3)],
    }
    recent = where("updatedAt", "greaterThanOrEqual", updated[-1500])
    early_run = where("lastRun", "lessThanOrEqual", updated[1000])
    in_small, in_big = equals("threadId", small), equals("threadId", big)
    by_runs = [{"field": "runCount"}]
    return [
        ListCase("containsSubstring (1 in 10,000)", "other filter", {"filters": [rare]}),
        ListCase("containsSubstring (every prompt)", "other filter", {"filters": [every]}),
        ListCase(
            "startsWith 'Question 1'",
            "other filter",
            {"filters": [where("prompt", "startsWith", "Question 1")]},
        ),
        ListCase("or [status=errored, runCount>=3]", "other filter", {"filters": [either]}),
        ListCase("runCount >= 2", "other filter", {"filters": [where("runCount", "greaterThanOrEqual", 2)]}),
        ListCase(
            "updatedAt >= the newest 1,500's, newest created first", "other filter", {"filters": [recent]}
        ),
        ListCase("lastRun <= the 1,000th update", "other filter", {"filters": [early_run]}),
        ListCase("order runCount (refused: 10,000 to sort)", "other order", {"orderBys": by_runs}),
        ListCase(
            f"order runCount, threadId={small}", "other order", {"orderBys": by_runs, "filters": [in_small]}
        ),
        ListCase(
            "order status, createdAt (refused)",
            "other order",
            {"orderBys": [{"field": "status"}, {"field": "createdAt"}]},
        ),
        ListCase("random (blocks of 1,000)", "other order", {"orderBys": [{"sortingType": "random"}]}),
        ListCase(
            f"random, threadId={small}",
            "other order",
            {"orderBys": [{"randomize": True}], "filters": [in_small]},
        ),
        ListCase(
            "count, status=running (Select COUNT)",
            "count",
            {"count": True, "filters": [equals("status", "running")]},
        ),
        ListCase("count, no filter (10,000: at the ceiling)", "count", {"count": True}),
        ListCase(
            f"count, threadId={big} and a substring", "count", {"count": True, "filters": [in_big, some]}
        ),
        ListCase(
            "count, a substring (10,000 read: at the ceiling)", "count", {"count": True, "filters": [some]}
        ),
        ListCase("count, admin, every user (refused: 12,000)", "count", {"count": True}, key=ADMIN_KEY),
        ListCase("admin, every user (6 status partitions)", "other filter", {}, key=ADMIN_KEY),
    ]


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
    print(
        f"  {'kind':<12} {'case':<56} {'page':>4} {'http':>4} {'calls':>5} {'read':>6} {'returned':>8}"
        f" {'read/ret':>8}  target"
    )
    for p in pages:
        target = (
            f"<= {READ_RATIO_TARGET:g}/item" if p.case.target == PER_ITEM else f"<= {p.ceiling:,}/request"
        )
        missed = "" if p.within_target else "  MISSED"
        print(
            f"  {p.case.kind:<12} {p.case.name[:56]:<56} {p.page:>4} {p.status:>4}"
            f" {p.usage.dynamodb_calls:>5} {p.usage.items_read:>6} {p.returned:>8} {p.ratio:>8.2f}"
            f"  {target}{missed}"
        )


def measure(settings: Settings) -> tuple[float, AddFigures, Usage, list[PageFigures]]:
    started = time.perf_counter()
    corpus = seed_prompts(settings)
    keys = wiring.key_service(settings)
    keys.bootstrap(LIST_KEY, LIST_USER, Role.USER)
    keys.bootstrap(ADD_KEY, ADD_USER, Role.USER)
    keys.bootstrap(ADMIN_KEY, "bench-admin", Role.ADMIN)
    seeded = time.perf_counter() - started

    meter = Meter()
    meter.install()  # after seeding: only the measured requests are counted
    with TestClient(create_app(settings)) as http:
        adds = bench_add(http, meter)
        # The first list request of a key in a function reads the key, and the function's first
        # page with a cursor fetches the cursor secret (then cached): shown, not judged; the
        # pages below are measured warm (the admin's key is warmed too).
        _, _, cold_list = list_page(http, meter, {"limit": LIMIT})
        list_page(http, meter, {"limit": 1}, ADMIN_KEY)
        # A count costs the same on every page: one page of each (moto spends ~9 us on each
        # attribute of every item it returns, so reading 10,000 whole prompts takes it half a minute).
        pages = [
            page
            for case in list_cases(corpus)
            for page in bench_list(http, meter, case, 1 if case.kind == "count" else 2)
        ]
    return seeded, adds, cold_list, pages


def run() -> int:
    started = time.perf_counter()
    with mock_aws():
        clients.reset()
        try:
            seeded, adds, cold_list, pages = measure(api_settings())
        finally:
            clients.clear_hooks()
            get_settings.cache_clear()

    total = LIST_USER_PROMPTS + OTHER_PROMPTS
    print(
        f"table: {total:,} prompts, {LIST_USER_PROMPTS:,} of them {LIST_USER}'s and {OTHER_PROMPTS:,} of "
        f"{OTHER_USERS} other users ({THREADS_PER_USER} threads each, all statuses), seeded in {seeded:.1f} s"
    )
    print()
    print_add(figures=adds)
    print()
    print(
        f"list (POST /prompt-svc/prompts as {LIST_USER}, limit {LIMIT}, newest first unless "
        "ordered; page 2 via the cursor)"
    )
    print(f"  first list request (cold key, cold cursor secret), no filter: {cold_list.describe_calls()}")
    print_pages(pages)
    print()

    warm_add = adds.warm_calls
    # The target is 1 DynamoDB write and 1 SQS send: 2 calls of which 1 is DynamoDB.
    warm_ok = all(usage.total_calls == ADD_TARGET and usage.dynamodb_calls == 1 for usage in adds.warm)
    per_item = [p for p in pages if p.case.target == PER_ITEM]
    per_request = [p for p in pages if p.case.target == PER_REQUEST]
    worst_ratio = max(per_item, key=lambda p: p.ratio)
    worst_page = max(
        (p for p in per_request if not p.case.query.get("count")), key=lambda p: p.usage.items_read
    )
    worst_count = max((p for p in per_request if p.case.query.get("count")), key=lambda p: p.usage.items_read)
    missed = [p for p in pages if not p.within_target]
    if not warm_ok:
        print(f"MISSED: a warm add made {warm_add} AWS calls, target {ADD_TARGET}")
    for p in missed:
        print(
            f"MISSED: '{p.case.name}' page {p.page} read {p.usage.items_read} items for {p.returned} returned"
        )
    print(f"run time: {time.perf_counter() - started:.1f} s")
    print(
        f"add: {warm_add} AWS calls; list: key filters, time ranges and index orders "
        f"{worst_ratio.ratio:.2f} items read per item returned, every other query at most "
        f"{worst_page.usage.items_read:,} items per page request and {worst_count.usage.items_read:,} "
        f"with a count (targets: add == {ADD_TARGET}, <= {READ_RATIO_TARGET:g} per item, "
        f"<= {PAGE_CEILING:,} and <= {PAGE_CEILING + COUNT_READS:,} per request)"
    )
    return 0 if warm_ok and not missed else 1


if __name__ == "__main__":
    sys.exit(run())
