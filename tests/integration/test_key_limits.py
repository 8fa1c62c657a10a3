"""Limits per API key on moto (docs/api.md, "Limits per key"): requests per minute, prompts in
flight, tokens per day; a 429 with Retry-After and nothing stored or queued; the in-flight slot
given back exactly once however the prompt ends."""

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters import prompt_table
from promptsvc.adapters.clients import client as aws_client
from promptsvc.adapters.limit_table import DynamoLimitCounters
from promptsvc.api.app import create_app
from promptsvc.consumer.dead_letters import abandon
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.keys import Principal, Role
from promptsvc.domain.limits import KeyLimits, LimitExceeded, in_flight_item, tokens_item
from promptsvc.services.limits import LimitService
from promptsvc.settings import Settings
from promptsvc_dev.sqs_source import SqsEventSource
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.integration.helpers import add, queue_depth, stored_prompts

FIXED = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)  # 30 s into its minute


@pytest.fixture
def clock() -> list[datetime]:
    """The limits' clock (a test moves it)."""
    return [FIXED]


@pytest.fixture
def app_client(settings: Settings, keys: dict[str, str], clock: list[datetime]) -> Iterator[TestClient]:
    """The API with the limits on the test's clock."""
    app = create_app(settings)
    limits = LimitService(
        DynamoLimitCounters(settings.limits_table), KeyLimits(0, 0, 0), clock=lambda: clock[0]
    )
    app.state.limits = limits
    app.state.prompts = wiring.prompt_service(settings, limits)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def new_key(client: TestClient, admin: str, **limits: int) -> str:
    response = client.post(
        "/prompt-svc/keys", json={"userId": "carol", "limits": limits}, headers=auth(admin)
    )
    assert response.status_code == 201, response.text
    assert response.json()["limits"] == {
        "requestsPerMinute": None, "promptsInFlight": None, "tokensPerDay": None, **limits
    }  # fmt: skip
    return str(response.json()["key"])


def counter(settings: Settings, item: str) -> int:
    found = aws_client("dynamodb").get_item(TableName=settings.limits_table, Key={"key": {"S": item}})
    return int(found.get("Item", {}).get("n", {}).get("N", "0"))


def key_id(key: str) -> str:
    return key.split("_")[1]


def carols(stack: LocalStack) -> int:
    return sum(1 for item in stored_prompts(stack) if item["userId"]["S"] == "carol")


def test_the_request_past_the_minutes_limit_is_a_429_with_retry_after_and_nothing_is_stored(
    app_client: TestClient, keys: dict[str, str], local_stack: LocalStack, clock: list[datetime]
) -> None:
    key = new_key(app_client, keys["admin"], requestsPerMinute=3)
    assert app_client.get("/prompt-svc/models", headers=auth(key)).status_code == 200
    add(app_client, key)
    assert app_client.get("/prompt-svc/keys", headers=auth(key)).status_code == 200
    depth = queue_depth(local_stack)

    refused = app_client.post("/prompt-svc/prompt", json={"prompt": "one more"}, headers=auth(key))

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"
    assert "3 requests per minute" in refused.json()["error"]
    assert carols(local_stack) == 1 and queue_depth(local_stack) == depth
    assert app_client.get("/prompt-svc/models", headers=auth(key)).status_code == 429
    no_route = app_client.get("/prompt-svc/no-such-route", headers=auth(key))  # counted as well
    assert no_route.status_code == 429 and no_route.headers["Retry-After"] == "30"
    assert (
        app_client.post("/v2/prompts", json={}, headers=auth(key)).json()["message"].startswith("rate limit")
    )
    # other keys are not held back; the key's next minute is a window of its own
    assert app_client.get("/prompt-svc/models", headers=auth(keys["alice"])).status_code == 200
    clock[0] = FIXED.replace(minute=1, second=0)
    assert app_client.get("/prompt-svc/models", headers=auth(key)).status_code == 200
    listed = app_client.get("/prompt-svc/keys", headers=auth(key)).json()["keys"][0]
    assert listed["limits"] == {"requestsPerMinute": 3, "promptsInFlight": None, "tokensPerDay": None}


def test_concurrent_requests_from_many_instances_let_exactly_the_limit_through(settings: Settings) -> None:
    """Four API instances (each its own service and client), ten threads each, one key: exactly
    the limit is admitted, whatever the interleaving (a conditional UpdateItem each)."""
    caller = Principal("carol", Role.USER, "k-concurrent", limits=KeyLimits(requests_per_minute=7))
    instances = [
        LimitService(DynamoLimitCounters(settings.limits_table), KeyLimits(0, 0, 0), clock=lambda: FIXED)
        for _ in range(4)
    ]
    admitted: list[bool] = []
    start = threading.Barrier(40)

    def request(limits: LimitService) -> None:
        start.wait()
        try:
            limits.admit_request(caller)
        except LimitExceeded:
            admitted.append(False)
        else:
            admitted.append(True)

    threads = [threading.Thread(target=request, args=(instances[i % 4],)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert admitted.count(True) == 7 and len(admitted) == 40


def test_the_in_flight_slot_is_freed_exactly_once_however_the_prompt_ends(
    app_client: TestClient,
    keys: dict[str, str],
    local_stack: LocalStack,
    settings: Settings,
    consumer: SqsEventSource,
) -> None:
    key = new_key(app_client, keys["admin"], promptsInFlight=2)
    slots = in_flight_item(key_id(key))
    first, second = add(app_client, key)["id"], add(app_client, key)["id"]
    depth = queue_depth(local_stack)

    refused = app_client.post("/prompt-svc/prompt", json={"prompt": "third"}, headers=auth(key))

    assert refused.status_code == 429 and refused.headers["Retry-After"] == "5"
    assert "2 prompts in flight" in refused.json()["error"]
    assert carols(local_stack) == 2 and queue_depth(local_stack) == depth
    assert counter(settings, slots) == 2

    def ok(response: Any) -> None:
        assert response.status_code == 200, response.text

    ok(app_client.post(f"/prompt-svc/prompt/{first}/cancel", headers=auth(key)))  # canceled
    ok(app_client.post(f"/prompt-svc/prompt/{first}/cancel", headers=auth(key)))  # again: nothing
    third = add(app_client, key)["id"]
    ok(app_client.delete(f"/prompt-svc/prompt/{second}", headers=auth(key)))  # removed
    assert counter(settings, slots) == 1
    again = add(app_client, key, id=third)  # an idempotent re-add takes no slot
    assert again["id"] == third and counter(settings, slots) == 1
    fourth = add(app_client, key)["id"]
    consumer.drain()  # both complete
    assert counter(settings, slots) == 0
    ok(app_client.delete(f"/prompt-svc/prompt/{fourth}", headers=auth(key)))  # finished: no slot
    assert counter(settings, slots) == 0

    store = wiring.prompt_store(settings)
    stuck = add(app_client, key)["id"]
    assert counter(settings, slots) == 1
    assert abandon(store, "carol", stuck, deliveries=200)  # the dead-letter sweeper's abandon
    assert not abandon(store, "carol", stuck, deliveries=200)
    assert counter(settings, slots) == 0

    running = add(app_client, key)["id"]
    lease = int(datetime.now(UTC).timestamp() * 1000) + 60_000
    assert store.claim_waiting(running, "carol", now_rfc3339(), lease).claimed is not None
    ok(app_client.delete(f"/prompt-svc/prompt/{running}", headers=auth(key)))  # removed while running
    assert counter(settings, slots) == 0


def test_a_prompt_is_refused_once_the_keys_tokens_of_the_day_reached_its_limit(
    app_client: TestClient,
    keys: dict[str, str],
    local_stack: LocalStack,
    settings: Settings,
    consumer: SqsEventSource,
    clock: list[datetime],
) -> None:
    key = new_key(app_client, keys["admin"], tokensPerDay=10)
    first = add(app_client, key, prompt="a b c d e f g h")["id"]
    consumer.drain()
    done = app_client.get(f"/prompt-svc/prompt/{first}", headers=auth(key)).json()["prompt"]
    spent = done["promptTokens"] + done["completionTokens"]
    assert done["status"] == "completed" and spent >= 10
    ended = datetime.fromisoformat(done["updatedAt"])
    assert counter(settings, tokens_item(key_id(key), ended.date().isoformat())) == spent
    clock[0] = ended.replace(hour=23, minute=0, second=0, microsecond=0)  # the same UTC day
    depth = queue_depth(local_stack)

    refused = app_client.post("/prompt-svc/prompt", json={"prompt": "more"}, headers=auth(key))

    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3600"
    assert "10 tokens per day" in refused.json()["error"]
    assert carols(local_stack) == 1 and queue_depth(local_stack) == depth
    clock[0] = ended.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)  # the next day
    add(app_client, key)


def test_a_prompt_whose_write_fails_takes_no_slot(
    app_client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot is taken in the prompt's own write (one transaction): a write that fails, or times
    out, takes it exactly when it stored the prompt."""
    key = new_key(app_client, keys["admin"], promptsInFlight=1)

    def broken(write: object) -> None:  # the transaction answers an error: nothing written
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "gone"}}, "TransactWriteItems")

    monkeypatch.setattr(prompt_table, "retry_conflicts", broken)
    assert app_client.post("/prompt-svc/prompt", json={"prompt": "x"}, headers=auth(key)).status_code == 500
    monkeypatch.undo()
    assert counter(settings, in_flight_item(key_id(key))) == 0
    add(app_client, key)  # the one slot is free
    assert counter(settings, in_flight_item(key_id(key))) == 1


def test_a_repeated_add_takes_no_second_slot(
    app_client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    key = new_key(app_client, keys["admin"], promptsInFlight=2)
    body = {"prompt": "once", "id": "same-id"}
    first = app_client.post("/prompt-svc/prompt", json=body, headers=auth(key))
    again = app_client.post("/prompt-svc/prompt", json=body, headers=auth(key))

    assert first.status_code == again.status_code == 200
    assert again.json()["prompt"]["id"] == first.json()["prompt"]["id"]
    assert counter(settings, in_flight_item(key_id(key))) == 1
