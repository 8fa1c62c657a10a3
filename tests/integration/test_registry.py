"""The prompt registry (/v2/prompts) on moto: validation, isolation, versioning, paging, deletion and
conditional writes. Every successful response is also checked against the orq SDK's own models."""

import warnings
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from orq_ai_sdk import models as sdk
from promptsvc.adapters.clients import client as aws_client
from promptsvc.adapters.registry_table import DynamoRegistryRepository
from promptsvc.api.registry_routes import router as registry_router
from promptsvc.domain.errors import Conflict, NotFound
from promptsvc.domain.registry import PageRequest, RegistryPromptPatch, domain_id
from promptsvc.services.registry import RegistryService
from promptsvc.settings import Settings
from promptsvc_dev.template import LocalStack

from tests.conftest import auth

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "What is the weather today?"},
]
PROMPT = {"model": "openai/gpt-4o", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 1000}


def sdk_valid(model: type, data: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # prompt_config is deprecated in the SDK
        return model.model_validate(data)


def create(test_client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    payload = {"display_name": "Weather", "path": "Default", "prompt": PROMPT, **body}
    response = test_client.post("/v2/prompts", json=payload, headers=auth(key))
    assert response.status_code == 200, response.text
    sdk_valid(sdk.CreatePromptPrompt, response.json())
    return response.json()


def get(test_client: TestClient, key: str, path: str, **params: Any) -> Any:
    response = test_client.get(path, params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def patch(test_client: TestClient, key: str, prompt_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = test_client.patch(f"/v2/prompts/{prompt_id}", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    sdk_valid(sdk.UpdatePromptPrompt, response.json())
    return response.json()


def versions(test_client: TestClient, key: str, prompt_id: str, **params: Any) -> dict[str, Any]:
    body = get(test_client, key, f"/v2/prompts/{prompt_id}/versions", **params)
    sdk_valid(sdk.ListPromptVersionsResponseBody, body)
    return body


def listing(test_client: TestClient, key: str, **params: Any) -> dict[str, Any]:
    body = get(test_client, key, "/v2/prompts", **params)
    sdk_valid(sdk.GetAllPromptsResponseBody, body)
    return body


def registry_items(stack: LocalStack, prompt_id: str) -> list[dict[str, Any]]:
    items = aws_client("dynamodb").scan(TableName=stack.refs["RegistryTable"])["Items"]
    return [item for item in items if item["promptId"]["S"] == prompt_id]


# -- create and read ------------------------------------------------------------------------


def test_create_answers_the_entity_with_every_field_of_the_spec(
    client: TestClient, keys: dict[str, str]
) -> None:
    created = create(
        client, keys["alice"], description="Asks about weather", metadata={"language": "English"}
    )

    assert created["type"] == "prompt"
    assert created["owner"] == "alice" == created["created_by_id"] == created["updated_by_id"]
    assert created["domain_id"] == domain_id("alice")
    assert created["created"] == created["updated"] and created["created"].endswith("Z")
    assert created["display_name"] == "Weather" and created["path"] == "Default"
    assert created["description"] == "Asks about weather"
    assert created["metadata"] == {"language": "English"}
    version = created["prompt"]["version"]
    assert created["prompt"] == {**PROMPT, "version": version}
    config = created["prompt_config"]
    assert config["version"] == version and config["model"] == "openai/gpt-4o"
    assert config["messages"] == MESSAGES
    assert config["model_parameters"] == {"temperature": 0.7, "maxTokens": 1000}
    [only] = versions(client, keys["alice"], created["_id"])["data"]
    assert only["_id"] == version


def test_get_answers_what_create_answered(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])

    fetched = get(client, keys["alice"], f"/v2/prompts/{created['_id']}")

    sdk_valid(sdk.GetOnePromptPrompt, fetched)
    assert fetched == created


def test_unknown_keys_in_the_prompt_and_metadata_are_kept(client: TestClient, keys: dict[str, str]) -> None:
    prompt = {**PROMPT, "x_vendor": {"a": [1, 2]}, "messages": [{**MESSAGES[1], "x_note": "n"}]}

    created = create(client, keys["alice"], prompt=prompt, metadata={"team": "ops", "use_cases": ["SQL"]})

    fetched = get(client, keys["alice"], f"/v2/prompts/{created['_id']}")
    assert fetched["prompt"]["x_vendor"] == {"a": [1, 2]}
    assert fetched["prompt"]["messages"][0]["x_note"] == "n"
    assert fetched["metadata"] == {"team": "ops", "use_cases": ["SQL"]}


def test_the_specs_nested_load_balancer_is_stored_flat(client: TestClient, keys: dict[str, str]) -> None:
    balancer = {
        "type": "weight_based",
        "models": {
            "type": "weight_based",
            "models": [
                {"model": "openai/gpt-4o", "weight": 0.7},
                {"model": "anthropic/claude", "weight": 0.3},
            ],
        },
    }

    created = create(client, keys["alice"], prompt={**PROMPT, "load_balancer": balancer})

    assert created["prompt"]["load_balancer"] == {
        "type": "weight_based",
        "models": [{"model": "openai/gpt-4o", "weight": 0.7}, {"model": "anthropic/claude", "weight": 0.3}],
    }


def test_a_prompt_may_be_left_out_on_create(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"], prompt=None)

    assert created["prompt"] == {"messages": [], "version": created["prompt"]["version"]}


# -- validation -----------------------------------------------------------------------------


INVALID_CREATES = (
    ({"display_name": "x" * 129}, "display_name: String should have at most 128 characters"),
    ({"display_name": ""}, "display_name: String should have at least 1 character"),
    ({"display_name": None}, "display_name"),
    ({"path": "a//b"}, "path: must be segments separated by '/'"),
    ({"path": ""}, "path: must be segments"),
    ({"path": "/Default"}, "path: must be segments"),
    (
        {"prompt": {**PROMPT, "temperature": 2.5}},
        "prompt.temperature: Input should be less than or equal to 2",
    ),
    ({"prompt": {**PROMPT, "top_p": -1}}, "prompt.top_p"),
    ({"prompt": {**PROMPT, "stop": ["a", "b", "c", "d", "e"]}}, "prompt.stop"),
    ({"prompt": {"model": "m"}}, "prompt: messages is required"),
    ({"prompt": {**PROMPT, "messages": [{"role": "tool", "content": "x"}]}}, "tool_call_id"),
    ({"prompt": {**PROMPT, "messages": [{"role": "developer", "content": "x"}]}}, "messages.0.role"),
    ({"prompt": {**PROMPT, "retry": {"count": 11}}}, "prompt.retry.count"),
    ({"prompt": {**PROMPT, "cache": {"type": "exact_match", "ttl": 0}}}, "prompt.cache.ttl"),
    ({"prompt": {**PROMPT, "timeout": {"call_timeout": -1}}}, "prompt.timeout.call_timeout"),
    ({"prompt": {**PROMPT, "fallbacks": [{}]}}, "prompt.fallbacks.0.model"),
    ({"metadata": {"language": "Klingon"}}, "metadata.language"),
    ({"prompt": "hello"}, "prompt: Input should be a valid dictionary"),
    ({"display_name": None, "path": ""}, "display_name: Input should be a valid string; path: must be"),
)


def test_invalid_creates_are_422_naming_the_field(client: TestClient, keys: dict[str, str]) -> None:
    # One test, many cases: each case's setup (a fresh moto stack) would cost more than the case.
    for body, message in INVALID_CREATES:
        payload = {"display_name": "Weather", "path": "Default", "prompt": PROMPT, **body}

        response = client.post("/v2/prompts", json=payload, headers=auth(keys["alice"]))

        assert response.status_code == 422, (body, response.text)
        assert message in response.json()["message"], body
    assert listing(client, keys["alice"])["data"] == []


def test_required_fields_are_422(client: TestClient, keys: dict[str, str]) -> None:
    for missing in ("display_name", "path"):
        payload = {"display_name": "Weather", "path": "Default", "prompt": PROMPT}
        del payload[missing]

        response = client.post("/v2/prompts", json=payload, headers=auth(keys["alice"]))

        assert response.status_code == 422
        assert response.json() == {"message": f"{missing}: Field required"}


def test_a_body_that_is_not_a_json_object_is_400(client: TestClient, keys: dict[str, str]) -> None:
    headers = {**auth(keys["alice"]), "Content-Type": "application/json"}
    created = create(client, keys["alice"])

    for raw in (b"{not json", b"[1, 2]", b'"text"'):
        for method, path in (("POST", "/v2/prompts"), ("PATCH", f"/v2/prompts/{created['_id']}")):
            response = client.request(method, path, content=raw, headers=headers)

            assert response.status_code == 400, (raw, method)
            assert set(response.json()) == {"message"}


def test_a_prompt_too_large_for_an_item_is_422_naming_the_field(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack
) -> None:
    big = {**PROMPT, "messages": [{"role": "user", "content": "x" * 450_000}]}

    response = client.post(
        "/v2/prompts",
        json={"display_name": "Big", "path": "Default", "prompt": big},
        headers=auth(keys["alice"]),
    )

    assert response.status_code == 422
    assert response.json()["message"].startswith("prompt: too large")
    assert aws_client("dynamodb").scan(TableName=local_stack.refs["RegistryTable"])["Items"] == []


def test_a_patch_that_makes_the_prompt_too_large_is_422(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])

    response = client.patch(
        f"/v2/prompts/{created['_id']}", json={"description": "d" * 420_000}, headers=auth(keys["alice"])
    )

    assert response.status_code == 422
    assert response.json()["message"].startswith("description: too large")


BAD_PAGING = (
    ({"limit": 0}, 422, "limit: Input should be greater than or equal to 1"),
    ({"limit": 201}, 422, "limit: Input should be less than or equal to 200"),
    ({"limit": "ten"}, 422, "limit"),
    ({"starting_after": "not-a-ulid"}, 400, "starting_after"),
    ({"ending_before": "01ARZ3NDEKTSV4RRFFQ69G5FA"}, 400, "ending_before"),
    (
        {"starting_after": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "ending_before": "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
        400,
        "cannot be used together",
    ),
)


def test_bad_paging_parameters(client: TestClient, keys: dict[str, str]) -> None:
    paths = ("/v2/prompts", f"/v2/prompts/{create(client, keys['alice'])['_id']}/versions")
    for params, status, needle in BAD_PAGING:
        for path in paths:
            response = client.get(path, params=params, headers=auth(keys["alice"]))

            assert response.status_code == status, (path, params, response.text)
            assert needle in response.json()["message"], (path, params)


# -- auth and isolation -----------------------------------------------------------------------

ROUTES = [
    ("POST", "/v2/prompts"),
    ("GET", "/v2/prompts"),
    ("GET", "/v2/prompts/{prompt_id}"),
    ("PATCH", "/v2/prompts/{prompt_id}"),
    ("DELETE", "/v2/prompts/{prompt_id}"),
    ("GET", "/v2/prompts/{prompt_id}/versions"),
    ("GET", "/v2/prompts/{prompt_id}/versions/{version_id}"),
]


def test_every_route_needs_a_valid_key(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])
    routes = {(r.path, m) for r in registry_router.routes if isinstance(r, APIRoute) for m in r.methods}
    assert routes == {(path, method) for method, path in ROUTES}

    for method, path in ROUTES:
        url = path.replace("{prompt_id}", created["_id"]).replace(
            "{version_id}", created["prompt"]["version"]
        )
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "nope"}):
            response = client.request(method, url, json={}, headers=headers)

            assert response.status_code == 401, (method, path, headers)
            assert "API key" in response.json()["message"]
    assert get(client, keys["alice"], f"/v2/prompts/{created['_id']}") == created


def test_another_users_prompt_is_404_exactly_like_a_missing_one(
    client: TestClient, keys: dict[str, str]
) -> None:
    created = create(client, keys["alice"])
    version = created["prompt"]["version"]
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

    for method, path in ROUTES[2:]:
        theirs = path.replace("{prompt_id}", created["_id"]).replace("{version_id}", version)
        absent = path.replace("{prompt_id}", missing).replace("{version_id}", version)

        as_bob = client.request(method, theirs, json={"display_name": "mine"}, headers=auth(keys["bob"]))
        as_nobody = client.request(method, absent, json={"display_name": "mine"}, headers=auth(keys["bob"]))

        assert as_bob.status_code == as_nobody.status_code == 404, (method, path)
        assert as_bob.json()["message"] == as_nobody.json()["message"].replace(missing, created["_id"])
    assert get(client, keys["alice"], f"/v2/prompts/{created['_id']}") == created  # untouched


def test_lists_hold_only_the_callers_prompts(client: TestClient, keys: dict[str, str]) -> None:
    mine = create(client, keys["alice"])
    create(client, keys["bob"])

    assert [p["_id"] for p in listing(client, keys["alice"])["data"]] == [mine["_id"]]
    assert len(listing(client, keys["bob"])["data"]) == 1
    assert listing(client, keys["admin"])["data"] == []


def test_ids_that_are_not_ulids_are_404(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])

    for prompt_id in ("nope", created["_id"].lower(), "x" * 3000):
        response = client.get(f"/v2/prompts/{prompt_id}", headers=auth(keys["alice"]))

        assert response.status_code == 404
        assert set(response.json()) == {"message"}


def test_prompt_svc_errors_keep_their_own_shape(client: TestClient, keys: dict[str, str]) -> None:
    response = client.get("/prompt-svc/prompt/nope", headers=auth(keys["alice"]))

    assert response.status_code == 404
    assert set(response.json()) == {"error"}


# -- updates and versions ---------------------------------------------------------------------


def test_changing_the_prompt_makes_a_new_version_and_keeps_the_old_one(
    client: TestClient, keys: dict[str, str]
) -> None:
    created = create(client, keys["alice"], description="first")
    first = created["prompt"]["version"]

    updated = patch(
        client, keys["alice"], created["_id"], {"prompt": {"temperature": 0.2}, "description": "second"}
    )

    second = updated["prompt"]["version"]
    assert second != first and updated["prompt_config"]["version"] == second
    assert updated["prompt"]["temperature"] == 0.2
    assert updated["prompt"]["messages"] == MESSAGES  # merged: keys left out stay
    assert updated["updated"] > updated["created"] == created["created"]
    listed = versions(client, keys["alice"], created["_id"])["data"]
    assert [v["_id"] for v in listed] == [second, first]
    assert listed[0]["description"] == "second" and listed[1]["description"] == "first"
    old = get(client, keys["alice"], f"/v2/prompts/{created['_id']}/versions/{first}")
    sdk_valid(sdk.GetPromptVersionResponseBody, old)
    assert old["prompt"] == {**PROMPT, "version": first}
    assert old["prompt_config"]["model_parameters"]["temperature"] == 0.7


def test_updates_that_leave_the_prompt_alone_make_no_version(
    client: TestClient, keys: dict[str, str]
) -> None:
    created = create(client, keys["alice"], metadata={"language": "English"})
    bodies: list[dict[str, Any]] = [
        {"display_name": "Renamed"},
        {"description": "new words"},
        {"description": None},
        {"metadata": {"language": "Dutch", "team": "ops"}},
        {"path": "Project/folder"},
        {"prompt": PROMPT},  # the same prompt again
        {"prompt": {"temperature": 0.7}},  # a merge that changes nothing
        {},
    ]

    for body in bodies:
        updated = patch(client, keys["alice"], created["_id"], body)

        assert updated["prompt"] == created["prompt"], body
        for field, value in body.items():
            if field != "prompt":
                assert updated[field] == value, body
    assert len(versions(client, keys["alice"], created["_id"])["data"]) == 1
    final = get(client, keys["alice"], f"/v2/prompts/{created['_id']}")
    assert (final["display_name"], final["path"], final["description"]) == ("Renamed", "Project/folder", None)
    assert final["metadata"] == {"language": "Dutch", "team": "ops"}


def test_a_null_in_the_prompt_patch_removes_the_key(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])

    updated = patch(client, keys["alice"], created["_id"], {"prompt": {"max_tokens": None, "model": None}})

    assert "max_tokens" not in updated["prompt"] and "model" not in updated["prompt"]
    assert updated["prompt_config"]["model_parameters"] == {"temperature": 0.7}
    assert len(versions(client, keys["alice"], created["_id"])["data"]) == 2


def test_patch_ignores_the_read_only_fields_the_sdk_sends(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])
    read_only = {
        "owner": "mallory",
        "domain_id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
        "created": "2000-01-01T00:00:00Z",
        "updated": "2000-01-01T00:00:00Z",
        "created_by_id": "mallory",
        "updated_by_id": "mallory",
    }

    updated = patch(client, keys["alice"], created["_id"], {**read_only, "display_name": "Renamed"})

    assert updated["owner"] == "alice" and updated["created_by_id"] == "alice"
    assert updated["domain_id"] == created["domain_id"] and updated["created"] == created["created"]
    assert updated["display_name"] == "Renamed"


def test_invalid_patches_are_422_and_change_nothing(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])
    cases = [
        ({"display_name": "x" * 129}, "display_name: String should have at most 128 characters"),
        ({"display_name": None}, "display_name: must be a string"),
        ({"path": None}, "path: must be a string"),
        ({"path": "a/"}, "path: must be segments"),
        ({"prompt": {"temperature": 9}}, "prompt.temperature"),
        ({"prompt": {"messages": [{"role": "user"}]}}, "prompt.messages.0"),
        ({"prompt": {"messages": [{"role": "developer", "content": "x"}]}}, "prompt.messages.0.role"),
        (
            {"prompt": {"load_balancer": {"type": "weight_based", "models": []}}},
            "prompt.load_balancer.models",
        ),
        ({"metadata": {"use_cases": ["Juggling"]}}, "metadata.use_cases.0"),
        ({"prompt": ["not", "an", "object"]}, "prompt: Input should be a valid dictionary"),
    ]

    for body, needle in cases:
        response = client.patch(f"/v2/prompts/{created['_id']}", json=body, headers=auth(keys["alice"]))

        assert response.status_code == 422, (body, response.text)
        assert needle in response.json()["message"], body
    assert get(client, keys["alice"], f"/v2/prompts/{created['_id']}") == created


def test_an_unknown_version_is_404(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])
    other = create(client, keys["alice"])

    for version in ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "nope", other["prompt"]["version"]):
        response = client.get(f"/v2/prompts/{created['_id']}/versions/{version}", headers=auth(keys["alice"]))
        assert response.status_code == 404
        assert "not found" in response.json()["message"]


# -- paging -----------------------------------------------------------------------------------


def walk(fetch: Any, limit: int) -> tuple[list[list[str]], list[bool]]:
    """Every page forwards (starting_after), then backwards (ending_before) from the last one."""
    pages, more = [], []
    body = fetch(limit=limit)
    while True:
        pages.append([item["_id"] for item in body["data"]])
        more.append(body["has_more"])
        if not body["has_more"]:
            break
        body = fetch(limit=limit, starting_after=pages[-1][-1])
    return pages, more


def walk_back(fetch: Any, first_page: list[str], limit: int) -> list[list[str]]:
    pages = [first_page]
    while True:
        body = fetch(limit=limit, ending_before=pages[-1][0])
        if not body["data"]:
            return pages
        pages.append([item["_id"] for item in body["data"]])
        if not body["has_more"]:
            return pages


def test_the_list_pages_newest_first_both_ways(client: TestClient, keys: dict[str, str]) -> None:
    ids = [create(client, keys["alice"], display_name=f"p{i}")["_id"] for i in range(7)]
    newest_first = ids[::-1]

    def fetch(**params: Any) -> dict[str, Any]:
        return listing(client, keys["alice"], **params)

    pages, more = walk(fetch, 3)

    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:7]]
    assert more == [True, True, False]
    assert fetch()["data"][0]["_id"] == ids[-1] and len(fetch()["data"]) == 7  # default limit 10
    back = walk_back(fetch, pages[-1], 3)
    assert back == [newest_first[6:7], newest_first[3:6], newest_first[0:3]]
    assert fetch(limit=3, ending_before=newest_first[4])["has_more"] is True
    assert fetch(limit=3, ending_before=newest_first[3])["has_more"] is False
    assert fetch(limit=2, ending_before=newest_first[0]) == {"object": "list", "data": [], "has_more": False}
    assert fetch(limit=2, starting_after=newest_first[-1])["data"] == []
    assert [p["_id"] for p in fetch(limit=7)["data"]] == newest_first and not fetch(limit=7)["has_more"]


def test_versions_page_newest_first_both_ways(client: TestClient, keys: dict[str, str]) -> None:
    created = create(client, keys["alice"])
    ids = [created["prompt"]["version"]]
    for temperature in (0.1, 0.2, 0.3, 0.4):
        ids.append(
            patch(client, keys["alice"], created["_id"], {"prompt": {"temperature": temperature}})["prompt"][
                "version"
            ]
        )
    newest_first = ids[::-1]

    def fetch(**params: Any) -> dict[str, Any]:
        return versions(client, keys["alice"], created["_id"], **params)

    pages, more = walk(fetch, 2)

    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]
    assert more == [True, True, False]
    assert walk_back(fetch, pages[-1], 2) == [newest_first[4:5], newest_first[2:4], newest_first[0:2]]
    temperatures = [v["prompt"]["temperature"] for v in fetch(limit=5)["data"]]
    assert temperatures == [0.4, 0.3, 0.2, 0.1, 0.7]


def test_lowercase_cursors_are_read_as_the_same_id(client: TestClient, keys: dict[str, str]) -> None:
    ids = [create(client, keys["alice"])["_id"] for _ in range(3)]

    body = listing(client, keys["alice"], starting_after=ids[2].lower())

    assert [p["_id"] for p in body["data"]] == [ids[1], ids[0]]


# -- delete -----------------------------------------------------------------------------------


def test_delete_removes_the_prompt_and_every_version(
    client: TestClient, keys: dict[str, str], local_stack: LocalStack
) -> None:
    created = create(client, keys["alice"])
    kept = create(client, keys["alice"])
    for temperature in (0.1, 0.2):
        patch(client, keys["alice"], created["_id"], {"prompt": {"temperature": temperature}})
    assert len(registry_items(local_stack, created["_id"])) == 4

    response = client.delete(f"/v2/prompts/{created['_id']}", headers=auth(keys["alice"]))

    assert response.status_code == 200 and response.content == b""
    assert registry_items(local_stack, created["_id"]) == []
    assert client.get(f"/v2/prompts/{created['_id']}", headers=auth(keys["alice"])).status_code == 404
    assert client.delete(f"/v2/prompts/{created['_id']}", headers=auth(keys["alice"])).status_code == 404
    assert [p["_id"] for p in listing(client, keys["alice"])["data"]] == [kept["_id"]]
    assert len(registry_items(local_stack, kept["_id"])) == 2


def test_delete_pages_through_many_versions(settings: Settings, local_stack: LocalStack) -> None:
    service = RegistryService(DynamoRegistryRepository(settings.registry_table))
    created = service.create("alice", _new_request())
    for i in range(30):  # more than one BatchWriteItem of 25
        service.update("alice", created.id, RegistryPromptPatch(prompt={"seed": i}))

    service.delete("alice", created.id)

    assert registry_items(local_stack, created.id) == []


# -- conditional writes -------------------------------------------------------------------------


def _new_request() -> Any:
    from promptsvc.domain.registry import NewRegistryPrompt

    return NewRegistryPrompt.model_validate({"display_name": "Weather", "path": "Default", "prompt": PROMPT})


class Interfering(DynamoRegistryRepository):
    """A repository where another writer updates the prompt between our read and our write,
    `times` times."""

    def __init__(self, table_name: str, other: RegistryService, times: int) -> None:
        super().__init__(table_name)
        self.other = other
        self.times = times

    def replace(self, prompt: Any, expected_revision: int, version: Any) -> bool:
        if self.times:
            self.times -= 1
            current = self.get(prompt.id)
            assert current is not None
            seed = 100 + self.times
            self.other.update(current.owner, prompt.id, RegistryPromptPatch(prompt={"seed": seed}))
        return super().replace(prompt, expected_revision, version)


def test_a_stale_write_is_refused(settings: Settings) -> None:
    repository = DynamoRegistryRepository(settings.registry_table)
    service = RegistryService(repository)
    created = service.create("alice", _new_request())
    service.update("alice", created.id, RegistryPromptPatch(display_name="First"))

    stale = repository.replace(created, created.revision, None)

    assert stale is False
    assert repository.get(created.id).display_name == "First"  # type: ignore[union-attr]


def test_a_concurrent_update_is_not_lost_the_loser_reapplies_its_patch(settings: Settings) -> None:
    plain = RegistryService(DynamoRegistryRepository(settings.registry_table))
    created = plain.create("alice", _new_request())
    racing = RegistryService(Interfering(settings.registry_table, plain, times=1))

    updated = racing.update("alice", created.id, RegistryPromptPatch(prompt={"temperature": 0.1}))

    assert updated.prompt.temperature == 0.1 and updated.prompt.seed == 100  # both changes kept
    page = plain.list_versions("alice", created.id, PageRequest(limit=10))
    assert [v.prompt.temperature for v in page.items] == [0.1, 0.7, 0.7]
    assert [v.prompt.seed for v in page.items] == [100, 100, None]


def test_an_update_that_keeps_losing_is_a_409_and_writes_nothing(settings: Settings) -> None:
    plain = RegistryService(DynamoRegistryRepository(settings.registry_table))
    created = plain.create("alice", _new_request())
    racing = RegistryService(Interfering(settings.registry_table, plain, times=3))

    with pytest.raises(Conflict):
        racing.update("alice", created.id, RegistryPromptPatch(prompt={"temperature": 0.1}))

    current = plain.get("alice", created.id)
    assert current.prompt.temperature == 0.7
    assert len(plain.list_versions("alice", created.id, PageRequest(limit=10)).items) == 4  # 1 + 3 others


def test_an_update_racing_a_delete_is_404_and_leaves_nothing(
    settings: Settings, local_stack: LocalStack
) -> None:
    plain = RegistryService(DynamoRegistryRepository(settings.registry_table))
    created = plain.create("alice", _new_request())

    class DeletedMeanwhile(DynamoRegistryRepository):
        def replace(self, prompt: Any, expected_revision: int, version: Any) -> bool:
            plain.delete("alice", prompt.id)
            return super().replace(prompt, expected_revision, version)

    racing = RegistryService(DeletedMeanwhile(settings.registry_table))

    with pytest.raises(NotFound):
        racing.update("alice", created.id, RegistryPromptPatch(prompt={"temperature": 0.1}))
    assert registry_items(local_stack, created.id) == []


# -- runs of stored prompts ---------------------------------------------------------------------


def test_version_for_run_gives_the_current_or_the_named_version(settings: Settings) -> None:
    service = RegistryService(DynamoRegistryRepository(settings.registry_table))
    created = service.create("alice", _new_request())
    updated = service.update("alice", created.id, RegistryPromptPatch(prompt={"temperature": 0.1}))

    current = service.version_for_run("alice", created.id, None)
    first = service.version_for_run("alice", created.id, created.version_id)

    assert current.id == updated.version_id and current.prompt.temperature == 0.1
    assert first.id == created.version_id and first.prompt.temperature == 0.7
    assert current.prompt.messages is not None and current.prompt.messages[0].role == "system"


@pytest.mark.parametrize(
    ("user", "prompt", "version", "needle"),
    [
        ("bob", None, None, "prompt"),
        ("alice", "01ARZ3NDEKTSV4RRFFQ69G5FAV", None, "prompt '01ARZ3NDEKTSV4RRFFQ69G5FAV' not found"),
        ("alice", None, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "version '01ARZ3NDEKTSV4RRFFQ69G5FAV' of prompt"),
        ("alice", None, "v1", "version 'v1'"),
    ],
)
def test_version_for_run_names_what_was_not_found(
    settings: Settings, user: str, prompt: str | None, version: str | None, needle: str
) -> None:
    service = RegistryService(DynamoRegistryRepository(settings.registry_table))
    created = service.create("alice", _new_request())

    with pytest.raises(NotFound) as caught:
        service.version_for_run(user, prompt or created.id, version)

    assert needle in str(caught.value)
