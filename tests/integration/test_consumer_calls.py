"""What a run of a prompt costs in AWS calls (docs/consumer.md, "AWS calls per prompt"): its
claim, its thread events (a block for its start, one write per delta, the closing status moving
the thread's counter), its answer; and one read per poll for all the runs a process watches."""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.consumer.runner import Outcome, PromptRunner
from promptsvc.domain.clock import now_rfc3339
from promptsvc.engines.base import Delta, EngineEvent, EngineRequest, Finish
from promptsvc.engines.registry import EngineRegistry
from promptsvc.settings import Settings

from tests.conftest import auth
from tests.integration.helpers import EngineOf, add


@pytest.fixture
def calls() -> Iterator[Counter[str]]:
    counter: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counter[model.name] += 1

    clients.register_hook("before-call", count)
    yield counter
    clients.clear_hooks()


def words(count: int, pause: float) -> EngineOf:
    async def stream(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        for i in range(count):
            if i:
                await asyncio.sleep(pause)
            yield Delta(f"w{i} ")
        yield Finish("stop", completion_tokens=count)

    return EngineOf(stream)


def runner(settings: Settings, engine: EngineOf, cancel_poll: float, *, usage: bool = False) -> PromptRunner:
    return PromptRunner(
        wiring.prompt_store(settings, completes=usage),
        wiring.catalog_source(settings).get,
        EngineRegistry(settings.engines, {"mock": engine}),
        events=wiring.thread_event_log(settings),
        cancel_poll=cancel_poll,
        usage=wiring.usage_table(settings) if usage else None,
    )


def thread_events(client: TestClient, key: str, thread: str) -> list[dict[str, Any]]:
    return client.get(f"/prompt-svc/thread/{thread}/events", headers=auth(key)).json()["events"]


def test_a_run_costs_seven_calls_and_one_per_delta_event(
    client: TestClient, keys: dict[str, str], settings: Settings, calls: Counter[str]
) -> None:
    prompt = add(client, keys["alice"], threadId="costs")
    run = runner(settings, words(4, pause=0.3), cancel_poll=60)  # no poll falls inside the run
    calls.clear()

    result = asyncio.run(run.run(prompt["id"], user_id="alice"))

    assert result.outcome is Outcome.COMPLETED
    made = dict(calls)
    seen = thread_events(client, keys["alice"], "costs")
    deltas = sum(1 for e in seen if e["type"] == "delta")
    assert [e.get("status") for e in seen if e["type"] == "status"] == ["scheduled", "running", "completed"]
    assert 1 <= deltas <= 4
    # UpdateItem: the claim, the start's block of seqs, the closing event's seq; the answer is a
    # TransactWriteItems (LIMITS_TABLE: with the key's in-flight slot and tokens of the day);
    # PutItem: scheduled, running, each delta, completed.
    assert made == {"UpdateItem": 3, "TransactWriteItems": 1, "PutItem": 3 + deltas}


def test_the_usage_counters_ride_on_the_answers_write(
    client: TestClient, keys: dict[str, str], settings: Settings, calls: Counter[str]
) -> None:
    """The prompt's usage and its usage counters (and the key's in-flight slot) are one
    transaction with the answer: no call more than without them, and counted exactly once."""
    prompt = add(client, keys["alice"], threadId="counted")
    run = runner(settings, words(4, pause=0.3), cancel_poll=60, usage=True)
    calls.clear()

    assert asyncio.run(run.run(prompt["id"], user_id="alice")).outcome is Outcome.COMPLETED

    made = dict(calls)
    seen = thread_events(client, keys["alice"], "counted")
    deltas = sum(1 for e in seen if e["type"] == "delta")
    assert made == {"UpdateItem": 3, "TransactWriteItems": 1, "PutItem": 3 + deltas}


def test_the_runs_a_process_watches_share_one_read_a_poll(
    client: TestClient, keys: dict[str, str], settings: Settings, calls: Counter[str]
) -> None:
    prompts = [add(client, keys["alice"], threadId=f"w{i}")["id"] for i in range(6)]
    run = runner(settings, words(12, pause=0.1), cancel_poll=0.2)

    async def all_at_once() -> list[Outcome]:
        results = await asyncio.gather(*(run.run(p, user_id="alice") for p in prompts))
        return [r.outcome for r in results]

    calls.clear()
    outcomes = asyncio.run(all_at_once())

    assert outcomes == [Outcome.COMPLETED] * 6
    assert calls["GetItem"] == 0
    # About 1.1 s of generation each, all at once: a read every 0.2 s for all six, not six.
    assert 1 <= calls["BatchGetItem"] <= 10


def test_a_cancel_is_noticed_by_the_shared_read_within_its_poll(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    busy = [add(client, keys["alice"], threadId=f"b{i}")["id"] for i in range(3)]
    target = add(client, keys["alice"], threadId="stopped")["id"]
    run = runner(settings, words(40, pause=0.05), cancel_poll=0.1)

    def status(prompt_id: str) -> str:
        response = client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(keys["alice"]))
        return str(response.json()["prompt"]["status"])

    async def scenario() -> dict[str, Outcome]:
        running = {p: asyncio.create_task(run.run(p, user_id="alice")) for p in [*busy, target]}
        while status(target) != "running":
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(
            client.post, f"/prompt-svc/prompt/{target}/cancel", headers=auth(keys["alice"])
        )
        return {p: (await task).outcome for p, task in running.items()}

    outcomes = asyncio.run(scenario())

    assert outcomes[target] is Outcome.CANCELED
    assert [outcomes[p] for p in busy] == [Outcome.COMPLETED] * 3
    answer = client.get(f"/prompt-svc/prompt/{target}", headers=auth(keys["alice"])).json()["answer"]
    assert 0 < len(answer.split()) < 40  # stopped part way, the partial answer kept


def test_a_duplicate_of_a_running_prompt_costs_its_refused_claim_and_no_read(
    client: TestClient, keys: dict[str, str], settings: Settings, calls: Counter[str]
) -> None:
    prompt = add(client, keys["alice"])
    lease_until = int(time.time() * 1000) + 60_000
    wiring.prompt_store(settings).claim_waiting(prompt["id"], "alice", now_rfc3339(), lease_until)
    run = runner(settings, words(1, pause=0), cancel_poll=60)
    calls.clear()

    result = asyncio.run(run.run(prompt["id"], user_id="alice"))

    assert result.outcome is Outcome.BUSY and 55 <= result.retry_after <= 61  # kept until the lease ends
    assert dict(calls) == {"UpdateItem": 1}  # the refused claim says what it found: no GetItem
