"""POST /prompt-svc/prompts: the query language over DynamoDB indexes, paging and counting."""

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promptsvc.adapters import clients
from promptsvc.adapters.prompt_reads import DynamoPromptReader
from promptsvc.services.listing import PromptLister, ReadLimits
from promptsvc.settings import Settings
from promptsvc_dev.sqs_source import SqsEventSource

from tests.conftest import auth


def values(*items: object) -> str:
    return json.dumps(list(items))


def list_page(client: TestClient, key: str, **query: Any) -> dict[str, Any]:
    response = client.post("/prompt-svc/prompts", json={"query": query}, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def list_all(client: TestClient, key: str, **query: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    for _ in range(100):
        page = list_page(client, key, **query, **({"jsonAfter": after} if after else {}))
        items.extend(page["prompts"])
        after = page.get("after")
        if not after:
            return items
    raise AssertionError("paging never ended")


@pytest.fixture
def seeded(client: TestClient, keys: dict[str, str], consumer: SqsEventSource) -> dict[str, list[str]]:
    """Alice: 7 prompts in thread a, 5 in thread b (3 completed, the rest scheduled); Bob: 4 in a."""
    ids: dict[str, list[str]] = {"a": [], "b": [], "bob": []}
    for i in range(5):
        ids["b"].append(_add(client, keys["alice"], f"banana {i}", "b", maxRetries=i))
    consumer.drain()  # the five in b are completed
    for i in range(7):
        ids["a"].append(_add(client, keys["alice"], f"apple {i}", "a", maxRetries=i))
    for i in range(4):
        ids["bob"].append(_add(client, keys["bob"], f"cherry {i}", "a"))
    return ids


def _add(client: TestClient, key: str, text: str, thread: str, **extra: Any) -> str:
    response = client.post(
        "/prompt-svc/prompt", json={"prompt": text, "threadId": thread, **extra}, headers=auth(key)
    )
    return response.json()["prompt"]["id"]


@pytest.fixture
def calls() -> Iterator[Counter[str]]:
    counter: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counter[model.name] += 1

    clients.register_hook("before-call.dynamodb", count)
    yield counter
    clients.clear_hooks()


def test_default_order_is_newest_first(client: TestClient, keys: dict[str, str], seeded: dict) -> None:
    listed = list_all(client, keys["alice"], limit=5)

    assert [p["id"] for p in listed] == list(reversed(seeded["b"] + seeded["a"]))


def test_thread_filter_pages_without_repeats_or_gaps(
    client: TestClient, keys: dict[str, str], seeded: dict
) -> None:
    query = {"filters": [{"fields": ["threadId"], "op": "equals", "jsonValues": values("a")}], "limit": 3}

    first = list_page(client, keys["alice"], **query)
    listed = list_all(client, keys["alice"], **query)

    assert len(first["prompts"]) == 3 and first["after"]
    assert [p["id"] for p in listed] == list(reversed(seeded["a"]))


def test_status_filters_and_both_value_spellings(
    client: TestClient, keys: dict[str, str], seeded: dict
) -> None:
    done = list_all(
        client,
        keys["alice"],
        filters=[{"fields": ["status"], "op": "equals", "valuesJson": values("completed")}],
    )
    either = list_all(
        client, keys["alice"], limit=4,
        filters=[{"fields": ["status"], "op": "isInList", "jsonValues": values("completed", "scheduled")}],
    )  # fmt: skip

    assert {p["id"] for p in done} == set(seeded["b"])
    assert [p["id"] for p in either] == list(reversed(seeded["b"] + seeded["a"]))


def test_user_queries_are_index_queries_never_scans(
    client: TestClient, keys: dict[str, str], seeded: dict, calls: Counter[str]
) -> None:
    for filters in [
        [],
        [{"fields": ["threadId"], "op": "equals", "jsonValues": values("a")}],
        [{"fields": ["status"], "op": "isInList", "jsonValues": values("scheduled", "errored")}],
        [{"fields": ["prompt"], "op": "containsSubstring", "jsonValues": values("apple")}],
    ]:
        list_all(client, keys["alice"], filters=filters, orderBys=[{"field": "runCount"}], count=True)
        list_all(client, keys["alice"], filters=filters)

    assert calls["Scan"] == 0
    assert calls["Query"] > 0


def test_or_substring_prefix_and_comparisons(client: TestClient, keys: dict[str, str], seeded: dict) -> None:
    either = list_all(
        client, keys["alice"],
        filters=[{"op": "or", "subFilters": [
            {"fields": ["prompt"], "op": "startsWith", "jsonValues": values("apple 1")},
            {"fields": ["prompt"], "op": "containsSubstring", "jsonValues": values("nana 4")},
        ]}],
    )  # fmt: skip
    small = list_all(
        client, keys["alice"],
        filters=[
            {"fields": ["maxRetries"], "op": "lessThan", "jsonValues": values(2)},
            {"fields": ["threadId"], "op": "equals", "jsonValues": values("a")},
        ],
    )  # fmt: skip
    several_fields = list_all(
        client, keys["alice"],
        filters=[{"fields": ["prompt", "threadId"], "op": "containsSubstring", "jsonValues": values("b")}],
    )  # fmt: skip

    assert {p["prompt"] for p in either} == {"apple 1", "banana 4"}
    assert {p["prompt"] for p in small} == {"apple 0", "apple 1"}
    assert {p["id"] for p in several_fields} == set(seeded["b"])


def test_order_by_another_field_pages_stably(client: TestClient, keys: dict[str, str], seeded: dict) -> None:
    listed = list_all(client, keys["alice"], limit=4, orderBys=[{"field": "maxRetries", "desc": True}])

    retries = [p["maxRetries"] for p in listed]
    assert retries == sorted(retries, reverse=True)
    assert sorted(p["id"] for p in listed) == sorted(seeded["a"] + seeded["b"])


@pytest.mark.parametrize("order", [{"randomize": True}, {"sortingType": "random"}])
def test_random_order_pages_without_repeats(
    client: TestClient, keys: dict[str, str], seeded: dict, order: dict
) -> None:
    listed = list_all(client, keys["alice"], limit=5, orderBys=[order])

    assert sorted(p["id"] for p in listed) == sorted(seeded["a"] + seeded["b"])


def test_count_is_the_filtered_total(client: TestClient, keys: dict[str, str], seeded: dict) -> None:
    thread = list_page(
        client, keys["alice"], count=True, limit=2,
        filters=[{"fields": ["threadId"], "op": "equals", "jsonValues": values("a")}],
    )  # fmt: skip
    apples = list_page(
        client, keys["alice"], count=True, limit=1,
        filters=[{"fields": ["prompt"], "op": "startsWith", "jsonValues": values("apple")}],
    )  # fmt: skip

    assert thread["count"] == 7 and len(thread["prompts"]) == 2
    assert apples["count"] == 7
    assert list_page(client, keys["admin"], count=True)["count"] == 16


def test_admin_filters_by_user_thread_and_status(
    client: TestClient, keys: dict[str, str], seeded: dict
) -> None:
    thread = list_all(
        client, keys["admin"], filters=[{"fields": ["threadId"], "op": "equals", "jsonValues": values("a")}]
    )
    bobs = list_all(
        client, keys["admin"], filters=[{"fields": ["userId"], "op": "equals", "jsonValues": values("bob")}]
    )

    assert {p["id"] for p in thread} == set(seeded["a"] + seeded["bob"])
    assert {p["id"] for p in bobs} == set(seeded["bob"])


def test_cursors_are_opaque_and_bound_to_their_query(
    client: TestClient, keys: dict[str, str], seeded: dict
) -> None:
    page = list_page(client, keys["alice"], limit=2)
    cursor = page["after"]
    forged = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")

    assert list_page(client, keys["alice"], limit=2, afterJson=json.dumps(cursor))["prompts"]  # JS spelling
    for bad, key in [(forged, "alice"), ("not-a-cursor", "alice"), (cursor, "bob")]:
        response = client.post(
            "/prompt-svc/prompts", json={"query": {"limit": 2, "jsonAfter": bad}}, headers=auth(keys[key])
        )
        assert response.status_code == 400
        assert "cursor" in response.json()["error"]
    other_query = {"limit": 2, "jsonAfter": cursor, "orderBys": [{"field": "status"}]}
    assert (
        client.post(
            "/prompt-svc/prompts", json={"query": other_query}, headers=auth(keys["alice"])
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"filters": [{"fields": ["colour"], "op": "equals", "jsonValues": "[1]"}]}, "colour"),
        ({"filters": [{"fields": ["status"], "op": "like", "jsonValues": "[1]"}]}, "like"),
        ({"filters": [{"fields": ["status"], "op": "equals", "jsonValues": "[1"}]}, "jsonValues"),
        ({"filters": [{"fields": ["status"], "op": "equals", "jsonValues": '{"a": 1}'}]}, "array"),
        ({"filters": [{"fields": ["runCount"], "op": "lessThan", "jsonValues": "[1, 2]"}]}, "exactly one"),
        ({"filters": [{"op": "or"}]}, "subFilters"),
        ({"orderBys": [{"field": "colour"}]}, "colour"),
        ({"orderBys": [{"field": "status", "sortingType": "alphabetical"}]}, "alphabetical"),
        ({"limit": 101}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"count": "yes"}, "count"),
        ({"filters": "status"}, "filters"),
    ],
)
def test_bad_queries_are_400_naming_the_problem(
    client: TestClient, keys: dict[str, str], query: dict, named: str
) -> None:
    response = client.post("/prompt-svc/prompts", json={"query": query}, headers=auth(keys["alice"]))

    assert response.status_code == 400
    assert named in response.json()["error"]


def test_an_empty_body_lists_with_defaults(client: TestClient, keys: dict[str, str], seeded: dict) -> None:
    response = client.post("/prompt-svc/prompts", headers=auth(keys["alice"]))

    assert response.status_code == 200
    assert len(response.json()["prompts"]) == 12


def test_time_ranges_and_update_order(client: TestClient, keys: dict[str, str], seeded: dict) -> None:
    everything = list_all(client, keys["alice"], limit=100)
    newest_first = [p["id"] for p in everything]
    middle = everything[3]["createdAt"]
    older = list_all(
        client, keys["alice"], limit=2,
        filters=[{"fields": ["createdAt"], "op": "lessThanOrEqual", "jsonValues": values(middle)}],
    )  # fmt: skip
    by_change = list_all(client, keys["alice"], limit=3, orderBys=[{"field": "updatedAt", "desc": True}])
    changed = [(p["updatedAt"], p["id"]) for p in by_change]

    assert [p["id"] for p in older] == newest_first[3:]
    assert changed == sorted(changed, reverse=True) and len(changed) == 12


@pytest.fixture
def small_limits(client: TestClient, settings: Settings) -> None:
    """The app's lister with reads bounded to 10 items a request (the service's are 1,000)."""
    limits = ReadLimits(budget=10, sort_ceiling=10, count_ceiling=10)
    lister = PromptLister(DynamoPromptReader(settings.prompts_table), lambda: b"k" * 32, limits)
    client.app.state.lister = lambda: lister  # type: ignore[attr-defined]


@pytest.mark.usefixtures("small_limits")
def test_past_the_read_ceilings_a_query_is_a_400_saying_why(
    client: TestClient, keys: dict[str, str], seeded: dict
) -> None:
    """Alice has 12 prompts; sorting or counting more than 10 is refused, naming what to narrow."""
    by_runs = client.post(
        "/prompt-svc/prompts",
        json={"query": {"orderBys": [{"field": "maxRetries"}]}},
        headers=auth(keys["alice"]),
    )
    counted = client.post("/prompt-svc/prompts", json={"query": {"count": True}}, headers=auth(keys["alice"]))
    narrowed = list_page(
        client, keys["alice"], count=True, orderBys=[{"field": "maxRetries"}],
        filters=[{"fields": ["threadId"], "op": "equals", "jsonValues": values("a")}],
    )  # fmt: skip

    assert by_runs.status_code == 400
    assert "query.orderBys" in by_runs.json()["error"] and "at most 10" in by_runs.json()["error"]
    assert counted.status_code == 400 and "query.count" in counted.json()["error"]
    assert narrowed["count"] == 7 and [p["maxRetries"] for p in narrowed["prompts"]] == list(range(7))


@pytest.mark.usefixtures("small_limits")
def test_a_filter_no_key_serves_may_answer_a_short_page_with_a_cursor(
    client: TestClient, keys: dict[str, str], seeded: dict
) -> None:
    """Each request reads at most 10 of alice's 12 prompts: the first page ends after 10 read, with
    what matched among them and a cursor; all pages together are the answer."""
    where = [{"fields": ["prompt"], "op": "startsWith", "jsonValues": values("banana")}]
    first = list_page(client, keys["alice"], limit=5, filters=where)
    listed = list_all(client, keys["alice"], limit=5, filters=where)

    assert len(first["prompts"]) < 5 and first["after"]  # a short page, and more to come
    assert [p["id"] for p in listed] == list(reversed(seeded["b"]))
