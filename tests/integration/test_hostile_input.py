"""Hostile and malformed input over the FastAPI app on moto: each case is a 4xx JSON error naming the
problem, in the shape of its API (`{"error"}` on /prompt-svc, `{"message"}` on /v2), with nothing
stored or queued. The socket-level cases (chunked bodies, huge headers, lying lengths) are in
tests/e2e/test_hostile_requests.py."""

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promptsvc.adapters import clients
from promptsvc.adapters.clients import client as aws_client
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.integration.helpers import add, queue_depth, stored_prompts


def nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` arrays inside each other around `leaf`."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_text(depth: int) -> str:
    return "[" * depth + "]" * depth


def post_raw(client: TestClient, path: str, text: str, key: str) -> Any:
    return client.post(path, content=text.encode("utf-8", "surrogatepass"), headers=auth(key))


def assert_error(response: Any, status: int, *words: str, field: str = "error") -> None:
    assert response.status_code == status, response.text
    message = response.json()[field]
    for word in words:
        assert word in message, message


def nothing_stored(stack: LocalStack) -> None:
    assert stored_prompts(stack) == []
    assert queue_depth(stack) == 0


def registry_items(stack: LocalStack) -> list[dict[str, Any]]:
    return aws_client("dynamodb").scan(TableName=stack.refs["RegistryTable"])["Items"]


# -- bodies of the queue API ------------------------------------------------------------------------

DEEP = 10_000  # far past Python's recursion limit: a RecursionError (500) before the fix


@pytest.mark.parametrize(
    "body",
    [
        '{"prompt": "hi", "extra": ' + deep_text(DEEP) + "}",
        '{"promptConfigId": "x", "variables": {"a": ' + deep_text(DEEP) + "}}",
        '{"prompt": "hi", "variables": ' + json.dumps({"a": nested(40)}) + "}",
    ],
    ids=["anywhere", "variables-recursion", "variables-past-32"],
)
def test_deeply_nested_bodies_are_400_and_store_nothing(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack, body: str
) -> None:
    response = post_raw(client, "/prompt-svc/prompt", body, keys["alice"])

    assert_error(response, 400, "invalid JSON body", "nested more than 32 levels")
    nothing_stored(local_stack)


def test_nesting_up_to_the_bound_is_accepted(client: TestClient, keys: dict[str, str]) -> None:
    body = {"prompt": "hi", "extra": nested(31)}  # the body object itself is the 32nd level

    response = client.post("/prompt-svc/prompt", json=body, headers=auth(keys["alice"]))

    assert response.status_code == 200, response.text


def test_an_integer_of_thousands_of_digits_is_400(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack
) -> None:
    response = post_raw(
        client, "/prompt-svc/prompt", '{"prompt": "hi", "maxRetries": 1' + "0" * 5000 + "}", keys["alice"]
    )

    assert_error(response, 400, "more than 20 digits")
    nothing_stored(local_stack)


@pytest.mark.parametrize("number", ["1e999", "NaN", "-Infinity"])
def test_numbers_json_cannot_hold_are_400(client: TestClient, keys: dict[str, str], number: str) -> None:
    response = post_raw(client, "/prompt-svc/prompt", f'{{"prompt": "hi", "x": {number}}}', keys["alice"])

    assert_error(response, 400, "invalid JSON body", number)


@pytest.mark.parametrize("where", ["prompt", "threadId", "key"])
def test_a_lone_surrogate_is_400_and_stores_nothing(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack, where: str
) -> None:
    body = {
        "prompt": '{"prompt": "a \\ud800 b"}',
        "threadId": '{"prompt": "hi", "threadId": "t\\udfff"}',
        "key": '{"prompt": "hi", "variables": {"\\ud800": "x"}}',
    }[where]

    response = post_raw(client, "/prompt-svc/prompt", body, keys["alice"])

    assert_error(response, 400, "lone UTF-16 surrogate")
    nothing_stored(local_stack)


def test_a_paired_surrogate_is_text(client: TestClient, keys: dict[str, str]) -> None:
    response = post_raw(client, "/prompt-svc/prompt", '{"prompt": "smile \\ud83d\\ude00"}', keys["alice"])

    assert response.status_code == 200, response.text
    assert response.json()["prompt"]["prompt"] == "smile \U0001f600"


def test_an_empty_prompt_id_to_remove_is_400(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack
) -> None:
    kept = add(client, keys["alice"])

    response = client.post("/prompt-svc/remove", json={"promptId": ""}, headers=auth(keys["alice"]))

    assert_error(response, 400, "promptId")
    assert [item["id"]["S"] for item in stored_prompts(local_stack)] == [kept["id"]]


def test_a_too_long_prompt_id_in_a_path_is_400(client: TestClient, keys: dict[str, str]) -> None:
    response = client.get("/prompt-svc/prompt/" + "x" * 3000, headers=auth(keys["alice"]))

    assert_error(response, 400, "prompt_id")


# -- the list query ---------------------------------------------------------------------------------


def list_query(client: TestClient, key: str, query: Any) -> Any:
    return client.post("/prompt-svc/prompts", json={"query": query}, headers=auth(key))


def thread_filter(values: list[Any], op: str = "isInList", field: str = "threadId") -> dict[str, Any]:
    return {"fields": [field], "op": op, "jsonValues": json.dumps(values)}


def test_deeply_nested_json_values_are_400(client: TestClient, keys: dict[str, str]) -> None:
    query = {"filters": [{"fields": ["threadId"], "op": "equals", "jsonValues": deep_text(DEEP)}]}

    response = list_query(client, keys["alice"], query)

    assert_error(response, 400, "query.filters[0].jsonValues", "nested more than 32 levels")


def test_a_huge_integer_in_json_values_is_400(client: TestClient, keys: dict[str, str]) -> None:
    query = {"filters": [{"fields": ["runCount"], "op": "equals", "jsonValues": "[1" + "0" * 5000 + "]"}]}

    response = list_query(client, keys["alice"], query)

    assert_error(response, 400, "query.filters[0].jsonValues", "more than 20 digits")


def test_a_deeply_nested_query_body_is_400(client: TestClient, keys: dict[str, str]) -> None:
    body = '{"query": {"filters": ' + deep_text(DEEP) + "}}"

    response = post_raw(client, "/prompt-svc/prompts", body, keys["alice"])

    assert_error(response, 400, "nested more than 32 levels")


@pytest.mark.parametrize(
    ("values", "field"),
    [([""], "id"), (["p1", ""], "id"), ([""], "threadId"), ([""], "status"), ([""], "userId")],
)
def test_an_empty_id_in_a_key_filter_is_400(
    client: TestClient, keys: dict[str, str], values: list[str], field: str
) -> None:
    response = list_query(client, keys["admin"], {"filters": [thread_filter(values, "equals", field)]})

    assert_error(response, 400, f"query.filters[0]: an empty {field}")


@pytest.mark.parametrize(
    ("order_by", "named"),
    [
        ({"field": ["createdAt"]}, "query.orderBys[0].field"),
        ({"field": {"a": 1}}, "query.orderBys[0].field"),
        ({"sortingType": ["random"]}, "query.orderBys[0].sortingType"),
        ({"field": "createdAt", "randomize": "yes"}, "query.orderBys[0].randomize"),
    ],
)
def test_a_wrong_type_in_order_bys_is_400(
    client: TestClient, keys: dict[str, str], order_by: dict[str, Any], named: str
) -> None:
    response = list_query(client, keys["alice"], {"orderBys": [order_by]})

    assert_error(response, 400, named)


def test_is_in_list_over_the_cap_is_400(client: TestClient, keys: dict[str, str]) -> None:
    response = list_query(client, keys["alice"], {"filters": [thread_filter([f"t{i}" for i in range(5000)])]})

    assert_error(response, 400, "query.filters[0]", "at most 100 values")


def test_too_many_filters_is_400(client: TestClient, keys: dict[str, str]) -> None:
    response = list_query(client, keys["alice"], {"filters": [thread_filter(["a"])] * 21})

    assert_error(response, 400, "query.filters", "at most 20 filters")


def test_sub_filters_nested_too_deeply_are_400(client: TestClient, keys: dict[str, str]) -> None:
    inner: dict[str, Any] = thread_filter(["a"], "equals")
    for _ in range(5):
        inner = {"op": "or", "subFilters": [inner]}

    response = list_query(client, keys["alice"], {"filters": [inner]})

    assert_error(response, 400, "subFilters", "nested more than 4")


def test_too_many_filters_counting_sub_filters_is_400(client: TestClient, keys: dict[str, str]) -> None:
    wide = {"op": "or", "subFilters": [thread_filter(["a"], "equals")] * 20}

    response = list_query(client, keys["alice"], {"filters": [wide] * 5})

    assert_error(response, 400, "at most 50 filters")


def test_a_too_long_value_is_400(client: TestClient, keys: dict[str, str]) -> None:
    query = {"filters": [thread_filter(["x" * 5000], "containsSubstring", "prompt")]}

    response = list_query(client, keys["alice"], query)

    assert_error(response, 400, "query.filters[0]", "1024 characters")


def test_too_many_order_bys_is_400(client: TestClient, keys: dict[str, str]) -> None:
    response = list_query(client, keys["alice"], {"orderBys": [{"field": "createdAt"}] * 6})

    assert_error(response, 400, "query.orderBys", "at most 5")


def test_a_huge_cursor_is_400(client: TestClient, keys: dict[str, str]) -> None:
    response = list_query(client, keys["alice"], {"jsonAfter": "x" * 100_000})

    assert_error(response, 400, "query.jsonAfter")


@pytest.fixture
def calls() -> Iterator[Counter[str]]:
    counter: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counter[model.name] += 1

    clients.register_hook("before-call.dynamodb", count)
    yield counter
    clients.clear_hooks()


def test_is_in_list_on_many_threads_reads_one_partition_not_one_per_value(
    client: TestClient, keys: dict[str, str], calls: Counter[str]
) -> None:
    wanted = [add(client, keys["alice"], threadId=f"t{i}")["id"] for i in range(3)]
    add(client, keys["alice"], threadId="other")
    threads = [f"t{i}" for i in range(100)]
    calls.clear()

    response = list_query(client, keys["alice"], {"filters": [thread_filter(threads)], "limit": 100})

    assert response.status_code == 200, response.text
    assert sorted(p["id"] for p in response.json()["prompts"]) == sorted(wanted)
    assert calls["Query"] <= 2  # the user's partition (was: one Query per thread id, 100)


def test_is_in_list_on_a_few_threads_still_reads_only_their_partitions(
    client: TestClient, keys: dict[str, str], calls: Counter[str]
) -> None:
    first = add(client, keys["alice"], threadId="t1")["id"]
    add(client, keys["alice"], threadId="other")
    calls.clear()

    response = list_query(client, keys["alice"], {"filters": [thread_filter(["t1", "t2"])]})

    assert [p["id"] for p in response.json()["prompts"]] == [first]
    assert calls["Query"] == 2  # one per thread: the user's other threads are never read


# -- thread events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [str(2**63), str(2**64), "1" + "0" * 5000, "-1"])
def test_thread_events_after_beyond_64_bits_is_400(
    client: TestClient, keys: dict[str, str], after: str
) -> None:
    response = client.get(f"/prompt-svc/thread/t1/events?after={after}", headers=auth(keys["alice"]))

    assert_error(response, 400, "after")


def test_thread_events_after_at_the_bound_is_an_empty_page(client: TestClient, keys: dict[str, str]) -> None:
    response = client.get(f"/prompt-svc/thread/t1/events?after={2**63 - 1}", headers=auth(keys["alice"]))

    assert response.status_code == 200, response.text
    assert response.json() == {"events": [], "after": 2**63 - 1}


def test_thread_events_of_a_too_long_thread_id_is_400(client: TestClient, keys: dict[str, str]) -> None:
    response = client.get("/prompt-svc/thread/" + "t" * 3000 + "/events", headers=auth(keys["alice"]))

    assert_error(response, 400, "thread_id")


# -- the registry (/v2/prompts): {"message"} errors -------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"display_name": "W", "path": "Default", "metadata": {"a": ' + deep_text(DEEP) + "}}",
        '{"display_name": "W", "path": "Default", "metadata": ' + json.dumps({"a": nested(40)}) + "}",
        '{"display_name": "W", "path": "Default", "metadata": {"n": 1' + "0" * 5000 + "}}",
        '{"display_name": "W \\ud800", "path": "Default"}',
    ],
    ids=["recursion", "past-32", "huge-int", "surrogate"],
)
def test_hostile_registry_bodies_are_400_and_store_nothing(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack, body: str
) -> None:
    response = post_raw(client, "/v2/prompts", body, keys["alice"])

    assert_error(response, 400, "invalid JSON body", field="message")
    assert registry_items(local_stack) == []


def test_a_hostile_registry_patch_changes_nothing(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack
) -> None:
    created = client.post(
        "/v2/prompts", json={"display_name": "W", "path": "Default"}, headers=auth(keys["alice"])
    ).json()
    before = registry_items(local_stack)

    response = client.patch(
        f"/v2/prompts/{created['_id']}",
        content='{"metadata": ' + deep_text(DEEP) + "}",
        headers=auth(keys["alice"]),
    )

    assert_error(response, 400, "nested more than 32 levels", field="message")
    assert registry_items(local_stack) == before


# -- body size, counted as it arrives ---------------------------------------------------------------


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"prompt": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


@pytest.mark.parametrize("path", ["/prompt-svc/prompt", "/v2/prompts"])
def test_a_body_without_content_length_is_still_limited(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack, path: str
) -> None:
    response = client.post(path, content=chunks(2 * 1024 * 1024), headers=auth(keys["alice"]))

    assert response.status_code == 413, response.text
    field = "message" if path.startswith("/v2") else "error"
    assert "larger than 1048576 bytes" in response.json()[field]
    nothing_stored(local_stack)
    assert registry_items(local_stack) == []


# -- paths: no redirects, every path authenticated ---------------------------------------------------


@pytest.mark.parametrize("path", ["/prompt-svc/models/", "/v2/prompts/", "/prompt-svc/nothing-here"])
def test_an_unknown_path_is_401_without_a_key(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)

    assert response.status_code == 401, response.text
    assert "location" not in response.headers


@pytest.mark.parametrize(("path", "field"), [("/prompt-svc/models/", "error"), ("/v2/prompts/", "message")])
def test_a_trailing_slash_is_404_after_auth_with_no_redirect(
    client: TestClient, keys: dict[str, str], path: str, field: str
) -> None:
    response = client.get(
        path, headers={**auth(keys["alice"]), "Host": "evil.example"}, follow_redirects=False
    )

    assert_error(response, 404, "no such route", field=field)
    assert "location" not in response.headers


def test_a_wrong_method_is_401_without_a_key(client: TestClient) -> None:
    response = client.put("/prompt-svc/prompt", content=b"{}")

    assert response.status_code == 401, response.text


def test_a_table_throttled_past_the_sdks_retries_is_a_503_with_retry_after(
    client: TestClient, keys: dict[str, str]
) -> None:
    """DynamoDB answering every call `ThrottlingException` (botocore retries, then gives up): the
    caller is asked to come back, never told the request broke."""
    from promptsvc_dev.chaos import install_throttling

    install_throttling(1.0)
    try:
        response = client.get("/prompt-svc/prompt/anything", headers=auth(keys["alice"]))
        added = client.post("/prompt-svc/prompt", json={"prompt": "hi"}, headers=auth(keys["alice"]))
    finally:
        clients.clear_hooks()

    for answer in (response, added):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "busy" in answer.json()["error"]
