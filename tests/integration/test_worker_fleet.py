"""The ECS worker and the fleet's scaling (infra/ecs-gpu/stack.yaml), on moto: it publishes the
prompts it runs, holds scale-in protection while busy, and when the last task is stopped (SIGTERM,
the fleet going to zero) it finishes what runs, gives back what waits, and lets go of its
protection, so nothing is lost."""

import asyncio
import json

import httpx
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.ecs_task_protection import TaskProtection
from promptsvc.adapters.prompt_queue import SqsMessages
from promptsvc.consumer.fleet_metrics import FleetMetrics
from promptsvc.consumer.worker import Worker, WorkerOptions
from promptsvc.settings import Settings

from tests.integration.helpers import add
from tests.integration.test_worker import Gauge, queue_counts, run_until, statuses


class Published(FleetMetrics):
    """Each sample is a minute later, so each publishes the one before; kept, not printed."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        super().__init__("prompts", sample_seconds=0.01, clock=self._tick)
        self.values: list[float] = []

    def _tick(self) -> float:
        self.now += 60
        return self.now

    def publish(self, minute: int, value: float) -> None:
        self.values.append(value)


def agent() -> tuple[TaskProtection, list[bool]]:
    """Task protection against a stand-in for the ECS agent's endpoint, recording each state set."""
    states: list[bool] = []

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.method == "PUT" and request.url.path == "/task-protection/v1/state"
        states.append(json.loads(request.content)["ProtectionEnabled"])
        return httpx.Response(200, json={"protection": {}})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return TaskProtection("http://agent", http=http), states


def fleet_worker(settings: Settings, gauge: Gauge, **options: object) -> tuple[Worker, Published, list[bool]]:
    protection, states = agent()
    published = Published()
    runner = wiring.prompt_runner(settings, {"mock": gauge})
    messages = SqsMessages(settings.prompts_queue_url, settings.prompts_dlq_url)
    opts = WorkerOptions(queue_url=settings.prompts_queue_url, wait_seconds=1, **options)  # type: ignore[arg-type]
    worker = Worker(runner, messages, opts, protection=protection, fleet_metrics=published)
    return worker, published, states


def test_the_worker_publishes_the_prompts_it_runs_and_is_protected_while_busy(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    gauge = Gauge()
    gauge.chunk_delay = 0.1
    ids = [add(client, keys["alice"], prompt="one two three four")["id"] for _ in range(6)]
    worker, published, states = fleet_worker(settings, gauge, concurrency=2)

    asyncio.run(run_until(worker, lambda: set(statuses(client, keys["alice"], ids)) == {"completed"}))

    assert set(statuses(client, keys["alice"], ids)) == {"completed"}
    assert max(published.values) == 2  # never more than its engine slots
    assert min(published.values) == 0  # idle at the start (and again at the end)
    assert worker.running() == 0
    assert True in states and states[-1] is False  # protected while busy, released once idle
    assert queue_counts(settings) == (0, 0)  # nothing left: the stack's quiet period can begin


def test_when_the_last_task_is_stopped_it_finishes_what_runs_and_gives_back_the_rest(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    gauge = Gauge()
    gauge.chunk_delay = 0.4  # busy past the protection's first look (once a second)
    ids = [add(client, keys["alice"], prompt="one two three four")["id"] for _ in range(6)]
    worker, _, states = fleet_worker(settings, gauge, concurrency=2, drain_seconds=30)

    # SIGTERM (what ECS sends when the count goes to 0) once two prompts run.
    asyncio.run(run_until(worker, lambda: gauge.started >= 2, check_every=0.01))

    found = statuses(client, keys["alice"], ids)
    assert found.count("completed") == 2  # the running ones finished within the drain
    assert found.count("scheduled") == 4 and "running" not in found  # the rest were given back
    assert queue_counts(settings) == (4, 0)  # visible at once: StartFirstTaskAlarm sees them
    assert True in states and states[-1] is False  # protection held while busy, released on exit
