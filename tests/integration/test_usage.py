"""Usage on moto: each completed prompt carries its tokens, the counters per user, day and model
equal the sum over the prompts (under concurrent completions too), failed attempts are counted
without tokens, and `GET /prompt-svc/usage` shows a user their own and an admin anyone's or all."""

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.usage_table import DynamoUsageTable
from promptsvc.consumer.runner import Outcome, PromptRunner
from promptsvc.domain.usage import MAX_USAGE_DAYS, UsageCount, estimate_tokens
from promptsvc.engines.base import Delta, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.registry import EngineRegistry
from promptsvc.settings import Settings
from promptsvc_dev.sqs_source import SqsEventSource

from tests.conftest import auth
from tests.integration.helpers import EngineOf, add

COUNTERS = ("prompts", "promptTokens", "completionTokens", "failedAttempts", "cacheHits")


def usage(client: TestClient, key: str, **params: str) -> dict[str, Any]:
    response = client.get("/prompt-svc/usage", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def prompt_of(client: TestClient, key: str, prompt_id: str) -> dict[str, Any]:
    return client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(key)).json()["prompt"]


def runner(settings: Settings, engine: EngineOf) -> PromptRunner:
    return PromptRunner(
        wiring.prompt_store(settings, completes=True),
        wiring.catalog_source(settings).get,
        EngineRegistry(settings.engines, {"mock": engine}),
        events=wiring.thread_event_log(settings),
        cancel_poll=0.05,
        usage=wiring.usage_table(settings),
    )


def test_completed_prompts_carry_their_usage_and_the_counters_equal_their_sum(
    client: TestClient, keys: dict[str, str], consumer: SqsEventSource
) -> None:
    texts = ["What is a banana?", "one", "a b c d e f g h", "Tell me more about the moon, please", "é" * 9]
    alices = [add(client, keys["alice"], prompt=text)["id"] for text in texts]
    bobs = [add(client, keys["bob"], prompt=f"bob asks {n}")["id"] for n in range(2)]
    consumer.drain()

    prompts = [prompt_of(client, keys["alice"], p) for p in alices]
    for text, prompt in zip(texts, prompts, strict=True):
        assert prompt["status"] == "completed"
        # The mock reports a token a word of the rendered prompt, one a chunk of its answer.
        assert prompt["promptTokens"] == len(f"[INST]{text}[/INST]".split())
        assert 1 <= prompt["completionTokens"] <= 4
        assert (prompt["finishReason"], prompt["usageEstimated"]) == ("stop", False)
    mine = usage(client, keys["alice"], groupBy="model")
    expected = {
        "prompts": len(texts),
        "promptTokens": sum(p["promptTokens"] for p in prompts),
        "completionTokens": sum(p["completionTokens"] for p in prompts),
        "failedAttempts": 0,
        "cacheHits": 0,
    }
    assert mine["total"] == expected
    assert mine["usage"] == [{"modelId": prompts[0]["modelId"], **expected}]
    assert mine["userId"] == "alice" and mine["groupBy"] == "model"
    by_day = usage(client, keys["alice"])
    today = datetime.now(UTC).date().isoformat()
    assert by_day["usage"] == [{"day": today, **expected}] and by_day["to"] == today
    everyone = usage(client, keys["admin"])
    assert everyone["userId"] is None
    assert everyone["total"]["prompts"] == len(texts) + len(bobs)


def test_the_counters_hold_every_add_of_many_threads(settings: Settings) -> None:
    table = DynamoUsageTable(settings.usage_table)
    one = UsageCount(prompts=1, promptTokens=3, completionTokens=2, cacheHits=1)

    def adds() -> None:
        for _ in range(20):
            table.add("carol", "2026-01-01", "m#1", one)

    threads = [threading.Thread(target=adds) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    [row] = table.of_user("carol", "2026-01-01", "2026-01-01")
    assert (row.day, row.model_id) == ("2026-01-01", "m#1")  # a model id may hold the separator
    assert row.count == UsageCount(prompts=160, promptTokens=480, completionTokens=320, cacheHits=160)
    assert table.of_user("carol", "2026-01-02", "2026-01-31") == []
    assert [r.user_id for r in table.of_day("2026-01-01")] == ["carol"]


def test_concurrent_completions_each_count_once(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    async def reports(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        await asyncio.sleep(0.05)
        yield Delta("answer")
        yield Finish("stop", prompt_tokens=3, completion_tokens=2)

    prompts = [add(client, keys["alice"], prompt=f"p{n}")["id"] for n in range(12)]
    run = runner(settings, EngineOf(reports))

    async def all_at_once() -> list[Outcome]:
        results = await asyncio.gather(*(run.run(p, user_id="alice") for p in prompts))
        return [r.outcome for r in results]

    assert asyncio.run(all_at_once()) == [Outcome.COMPLETED] * 12
    # A duplicate delivery of a completed prompt does not count it again.
    assert asyncio.run(run.run(prompts[0], user_id="alice")).outcome is not Outcome.COMPLETED
    total = usage(client, keys["alice"])["total"]
    assert total == {
        "prompts": 12,
        "promptTokens": 36,
        "completionTokens": 24,
        "failedAttempts": 0,
        "cacheHits": 0,
    }


def test_a_failed_attempt_is_counted_without_tokens_and_the_retry_that_answers_with_them(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    failures = [EngineError.from_status(503, "busy")]

    async def flaky(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        yield Delta("partial ")
        if failures:
            raise failures.pop()
        yield Finish("stop", prompt_tokens=4, completion_tokens=5)

    prompt = add(client, keys["alice"], prompt="Hi")["id"]
    run = runner(settings, EngineOf(flaky))
    assert asyncio.run(run.run(prompt, user_id="alice")).outcome is Outcome.RETRY
    assert usage(client, keys["alice"])["total"]["failedAttempts"] == 1
    errored = prompt_of(client, keys["alice"], prompt)
    assert (errored["promptTokens"], errored["finishReason"]) == (0, "")

    assert asyncio.run(run.run(prompt, user_id="alice")).outcome is Outcome.COMPLETED
    total = usage(client, keys["alice"])["total"]
    assert total == {
        "prompts": 1,
        "promptTokens": 4,
        "completionTokens": 5,
        "failedAttempts": 1,
        "cacheHits": 0,
    }


def test_usage_an_engine_does_not_report_is_estimated_and_says_so(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    async def silent(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        yield Delta("twelve bytes")
        yield Finish("length")

    prompt = add(client, keys["alice"], prompt="How many?")["id"]
    assert (
        asyncio.run(runner(settings, EngineOf(silent)).run(prompt, user_id="alice")).outcome
        is Outcome.COMPLETED
    )

    stored = prompt_of(client, keys["alice"], prompt)
    assert stored["usageEstimated"] is True and stored["finishReason"] == "length"
    assert stored["completionTokens"] == estimate_tokens("twelve bytes") == 3
    assert stored["promptTokens"] == estimate_tokens("[INST]How many?[/INST]")
    assert usage(client, keys["alice"])["total"]["completionTokens"] == 3


def test_a_user_reads_only_their_own_usage_and_an_admin_anyones_or_all(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    table = DynamoUsageTable(settings.usage_table)
    today = datetime.now(UTC).date().isoformat()
    table.add("alice", today, "m1", UsageCount(prompts=1, promptTokens=10))
    table.add("bob", today, "m1", UsageCount(prompts=2, promptTokens=20))
    table.add("bob", today, "m2", UsageCount(failedAttempts=1))

    refused = client.get("/prompt-svc/usage", params={"userId": "bob"}, headers=auth(keys["alice"]))
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    assert usage(client, keys["alice"], userId="alice")["total"]["prompts"] == 1
    assert usage(client, keys["bob"])["total"]["prompts"] == 2
    bobs = usage(client, keys["admin"], userId="bob", groupBy="model")
    assert [(g["modelId"], g["prompts"], g["failedAttempts"]) for g in bobs["usage"]] == [
        ("m1", 2, 0),
        ("m2", 0, 1),
    ]
    everyone = usage(client, keys["admin"], groupBy="model")
    assert everyone["total"] == {
        "prompts": 3,
        "promptTokens": 30,
        "completionTokens": 0,
        "failedAttempts": 1,
        "cacheHits": 0,
    }
    assert usage(client, keys["admin"])["total"]["prompts"] == 3  # by day: the same sum
    assert usage(client, keys["admin"], userId="admin")["usage"] == []  # an admin's own: none


def test_a_read_is_bounded_and_its_days_validated(client: TestClient, keys: dict[str, str]) -> None:
    def status(**params: str) -> tuple[int, str]:
        response = client.get("/prompt-svc/usage", params=params, headers=auth(keys["alice"]))
        return response.status_code, response.text

    too_long = status(**{"from": "2026-01-01", "to": "2026-04-03"})
    assert too_long[0] == 400 and f"at most {MAX_USAGE_DAYS} days" in too_long[1]
    assert status(**{"from": "2026-01-01", "to": "2026-04-02"})[0] == 200
    assert status(**{"from": "2026-02-02", "to": "2026-02-01"})[0] == 400
    assert status(**{"from": "yesterday"})[0] == 400
    assert status(**{"from": "2026-02-30"})[0] == 400
    assert status(groupBy="week")[0] == 400
    assert client.get("/prompt-svc/usage").status_code == 401
