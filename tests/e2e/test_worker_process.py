"""The ECS worker as a real process (`promptsvc worker`) on a moto server: SIGTERM drains, and
a SIGKILLed worker's prompt is finished by the next worker, the lost run and the crash counted."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from moto.server import ThreadedMotoServer
from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.domain.ids import new_id
from promptsvc.domain.keys import Principal, Role
from promptsvc.domain.prompt import NewPrompt, Prompt
from promptsvc.settings import Settings, get_settings
from promptsvc_dev.dev import aws_environment, free_port
from promptsvc_dev.template import create_resources

from tests.conftest import ROOT, TEMPLATE

pytestmark = pytest.mark.e2e

ALICE = Principal("alice", Role.USER, "k1")


@dataclass
class Stack:
    settings: Settings
    environment: dict[str, str]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    httpx.post(f"{endpoint}/moto-api/reset")  # moto's state is per process, shared by its servers
    aws = aws_environment(endpoint)
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    clients.reset()
    local = create_resources(TEMPLATE)
    function_env = local.function_environment("ConsumerFunction")
    for name, value in function_env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    child = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    child.update(aws)
    child.update(function_env)
    child.update(
        {
            "ENGINE": "mock",
            "MOCK_CHUNKS": "4",
            "WORKER_VISIBILITY_SECONDS": "2",
            "WORKER_LEASE_MARGIN_SECONDS": "0",
        }
    )
    yield Stack(get_settings(), child)
    get_settings.cache_clear()
    clients.reset()
    httpx.post(f"{endpoint}/moto-api/reset")
    moto.stop()


def add_prompts(settings: Settings, count: int) -> list[str]:
    service = wiring.prompt_service(settings)
    ids = []
    for i in range(count):
        new = NewPrompt(
            prompt=f"prompt {i}", modelId=service.catalog.default_model_id, template="{prompt}",
            threadId="t", maxRetries=3, sync=False, id=new_id("prm"),
        )  # fmt: skip
        ids.append(service.add(ALICE, new, sync_wait=0).prompt.id)
    return ids


def prompts(settings: Settings, ids: list[str]) -> list[Prompt]:
    repository = wiring.prompt_store(settings)
    return [p for p in (repository.get(ALICE.user_id, i) for i in ids) if p is not None]


def start_worker(stack: Stack, chunk_delay: float, *flags: str) -> subprocess.Popen[str]:
    env = {**stack.environment, "MOCK_CHUNK_DELAY_SECONDS": str(chunk_delay)}
    return subprocess.Popen(
        [sys.executable, "-m", "promptsvc_dev.cli", "worker", *flags],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_for(condition: Callable[[], bool], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_sigterm_stops_receiving_finishes_in_flight_prompts_and_exits_cleanly(stack: Stack) -> None:
    ids = add_prompts(stack.settings, 12)
    worker = start_worker(stack, 0.4, "--concurrency", "3", "--drain-seconds", "30")
    try:
        wait_for(lambda: any(p.status == "running" for p in prompts(stack.settings, ids)))

        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    finally:
        worker.kill()
    output = worker.stdout.read() if worker.stdout else ""

    assert code == 0, output
    statuses = [p.status for p in prompts(stack.settings, ids)]
    assert "running" not in statuses
    assert set(statuses) <= {"completed", "scheduled"}
    assert 1 <= statuses.count("completed") < 12
    assert all(p.runCount == (1 if p.status == "completed" else 0) for p in prompts(stack.settings, ids))


def test_a_killed_workers_prompt_is_finished_by_the_next_worker(stack: Stack) -> None:
    (prompt_id,) = add_prompts(stack.settings, 1)
    first = start_worker(stack, 2.0)  # 4 chunks of 2 s: still running when it is killed
    try:
        wait_for(lambda: prompts(stack.settings, [prompt_id])[0].status == "running")
        first.kill()
        first.wait(timeout=10)
    finally:
        first.kill()
    second = start_worker(stack, 0.05)
    try:
        wait_for(lambda: prompts(stack.settings, [prompt_id])[0].status == "completed")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    (done,) = prompts(stack.settings, [prompt_id])
    assert done.runCount == 2
    assert done.crashCount == 1
    assert done.answer == "prompt 0"
