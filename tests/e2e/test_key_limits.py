"""End to end: a key's limits on `promptsvc dev`, under concurrent requests from several
processes (each its own connections, as separate callers would be), and as the SDK sees them."""

import multiprocessing
import time
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from typing import Any

import httpx
import pytest
from promptsvc.client import ApiError, Client, KeyLimits
from promptsvc.client.retry import RetryPolicy

from tests.e2e.conftest import ADMIN_KEY, DevServer, call

pytestmark = pytest.mark.e2e

PROCESSES = 4
EACH = 8  # requests a process sends
LIMIT = 12  # requests a minute: fewer than PROCESSES * EACH
ROOM = 25  # seconds of its minute the run must have left (it takes about one)


def burst(base_url: str, key: str, go: Event, answers: "multiprocessing.Queue[Any]") -> None:
    """One caller: wait for the start, then send EACH requests, reporting each answer."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=40) as http:
        go.wait(60)
        for _ in range(EACH):
            response = http.get("/prompt-svc/models")
            answers.put((response.status_code, response.headers.get("Retry-After"), response.text))


def new_key(server: DevServer, user: str, **limits: int) -> str:
    response = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": user, "limits": limits})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_processes_sharing_a_key_get_exactly_its_requests_a_minute(server: DevServer) -> None:
    key = new_key(server, "limited", requestsPerMinute=LIMIT)
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    answers: multiprocessing.Queue[Any] = context.Queue()
    callers = [
        context.Process(target=burst, args=(server.base_url, key, go, answers)) for _ in range(PROCESSES)
    ]
    for caller in callers:
        caller.start()
    # Not across a minute's end (its counter starts again): start with ROOM seconds of it left.
    left = 60 - datetime.now(UTC).second
    if left < ROOM:
        time.sleep(left + 0.5)
    go.set()
    got = [answers.get(timeout=60) for _ in range(PROCESSES * EACH)]
    for caller in callers:
        caller.join(30)

    statuses = [status for status, _, _ in got]
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == PROCESSES * EACH - LIMIT
    for status, retry_after, text in got:
        if status == 429:
            assert retry_after is not None and 1 <= int(retry_after) <= 60
            assert f"{LIMIT} requests per minute" in text
    # the key's listing shows its own limit
    listed = call(server, ADMIN_KEY, "GET", "/prompt-svc/keys?userId=limited").json()["keys"][0]
    assert listed["limits"]["requestsPerMinute"] == LIMIT


def test_the_sdk_sees_the_429_naming_the_limit_and_nothing_is_stored(server: DevServer) -> None:
    with Client(server.base_url, ADMIN_KEY) as admin:
        made = admin.create_key("inflight", limits=KeyLimits(prompts_in_flight=1, requests_per_minute=0))
        assert made.limits == KeyLimits(prompts_in_flight=1, requests_per_minute=0)
        listed = next(iter(admin.list_keys("inflight")))
        assert listed.limits is not None and listed.limits.prompts_in_flight == 1
    key = made.key
    with Client(server.base_url, key, retry=RetryPolicy(max_retries=0)) as client:
        held = [client.add_prompt("first", prompt_id="held-1")]
        refused = None
        # The first may finish meanwhile (the mock is quick): add until one is refused, or give up.
        for n in range(50):
            try:
                held.append(client.add_prompt("more " * 200, prompt_id=f"held-{n + 2}"))
            except ApiError as error:
                refused = error
                break
        assert refused is not None and refused.status_code == 429
        assert "1 prompts in flight" in str(refused)
        missing = call(server, key, "GET", f"/prompt-svc/prompt/held-{len(held) + 1}")
        assert missing.status_code == 404  # nothing stored
