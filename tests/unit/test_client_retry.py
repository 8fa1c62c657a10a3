"""The SDK's retry rule (promptsvc.client.retry) and the calls' repeat safety (promptsvc.client.calls)."""

import json
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
from promptsvc.client import ApiError, Prompt, RetryPolicy, calls
from promptsvc.client.ids import new_prompt_id
from promptsvc.client.retry import Repeat, retry_after
from promptsvc.domain.names import ID_PATTERN


def test_throttling_is_retried_by_every_call_other_5xx_only_by_safe_ones() -> None:
    policy = RetryPolicy()
    for status in (429, 503):
        assert policy.retries(status, Repeat.SAFE) and policy.retries(status, Repeat.NOT_DONE_ONLY)
    for status in (500, 502, 504):
        assert policy.retries(status, Repeat.SAFE) and not policy.retries(status, Repeat.NOT_DONE_ONLY)
    for status in (400, 401, 404, 409, 413):
        assert not policy.retries(status, Repeat.SAFE)


def test_the_wait_is_retry_after_when_given_bounded_else_backoff() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=10)
    assert policy.delay(0, retry_after=3) == 3
    assert policy.delay(0, retry_after=600) == 10
    for retry in range(6):
        backoff = min(10, 0.5 * 2**retry)
        assert backoff / 2 <= policy.delay(retry) <= backoff


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": "7"})) == 7
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (retry_after(httpx.Response(429, headers={"Retry-After": later})) or 0) <= 120
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(429)) is None


def test_which_calls_are_safe_to_repeat() -> None:
    add = calls.add_prompt(
        "hi", model_id=None, thread_id=None, sync=False, prompt_id=None, max_retries=None, template=None
    )
    assert add.repeat is Repeat.SAFE and re.fullmatch(ID_PATTERN, add.body["id"])  # a client-made id
    assert calls.list_prompts(status=None, thread_id=None, page_size=5, after=None).repeat is Repeat.SAFE
    assert calls.cancel_prompt("p").repeat is Repeat.NOT_DONE_ONLY
    assert calls.remove_prompt("p").repeat is Repeat.NOT_DONE_ONLY
    assert calls.registry_create({}).repeat is Repeat.NOT_DONE_ONLY


def test_client_ids_are_distinct_valid_and_in_creation_order() -> None:
    ids = [new_prompt_id() for _ in range(200)]
    assert len(set(ids)) == 200 and all(re.fullmatch(ID_PATTERN, i) and len(i) == 30 for i in ids)
    assert [i[:14] for i in ids] == sorted(i[:14] for i in ids)  # the time part (ms) never goes back


def test_a_list_query_filters_and_carries_the_cursor() -> None:
    call = calls.list_prompts(status="completed", thread_id="t1", page_size=5, after="CUR")
    assert call.body == {
        "query": {
            "filters": [
                {"op": "equals", "fields": ["status"], "jsonValues": json.dumps(["completed"])},
                {"op": "equals", "fields": ["threadId"], "jsonValues": json.dumps(["t1"])},
            ],
            "limit": 5,
            "jsonAfter": "CUR",
        }
    }


def test_errors_read_either_apis_shape() -> None:
    assert (
        calls.error_of(httpx.Response(404, json={"error": "prompt 'x' not found"})).message
        == "prompt 'x' not found"
    )
    assert calls.error_of(httpx.Response(422, json={"message": "display_name: too long"})).message == (
        "display_name: too long"
    )
    plain = calls.error_of(httpx.Response(502, text="Bad Gateway"))
    assert isinstance(plain, ApiError) and (plain.status_code, plain.message) == (502, "Bad Gateway")


def test_a_prompt_reads_from_the_add_answer() -> None:
    prompt = Prompt.from_response(
        {"answer": "Yellow.", "prompt": {"id": "p", "threadId": "t", "status": "completed", "runCount": 1}}
    )
    assert (prompt.id, prompt.thread_id, prompt.answer, prompt.run_count, prompt.terminal) == (
        "p",
        "t",
        "Yellow.",
        1,
        True,
    )
