"""API keys, roles and per-user isolation."""

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from promptsvc.adapters.clients import client as aws_client
from promptsvc.api.routes import router
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.integration.helpers import add


def test_every_route_requires_a_key(client: TestClient) -> None:
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 8
    for route in routes:
        path = route.path.replace("{prompt_id}", "p1").replace("{key_id}", "k1")
        for method in route.methods:
            response = client.request(method, path, json={})
            assert response.status_code == 401, (method, path)
            assert "API key" in response.json()["error"]


@pytest.mark.parametrize("header", ["Bearer nope", "nope", "Bearer ", "Basic abc"])
def test_unknown_or_malformed_keys_are_401(client: TestClient, header: str) -> None:
    response = client.post("/prompt-svc/prompts", json={}, headers={"Authorization": header})

    assert response.status_code == 401


def test_a_bare_key_works_like_bearer(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post("/prompt-svc/prompts", json={}, headers={"Authorization": keys["alice"]})

    assert response.status_code == 200


def test_admin_creates_a_key_that_works_and_revoking_it_stops_it(
    client: TestClient, keys: dict[str, str]
) -> None:
    created = client.post("/prompt-svc/keys", json={"userId": "carol"}, headers=auth(keys["admin"]))
    assert created.status_code == 201
    body = created.json()
    assert body["userId"] == "carol" and body["role"] == "user" and body["key"].startswith("psk_")
    assert add(client, body["key"])["userId"] == "carol"

    revoked = client.delete(f"/prompt-svc/keys/{body['keyId']}", headers=auth(keys["admin"]))

    assert revoked.status_code == 200
    assert client.post("/prompt-svc/prompts", json={}, headers=auth(body["key"])).status_code == 401


def test_admin_can_create_admin_keys(client: TestClient, keys: dict[str, str]) -> None:
    created = client.post(
        "/prompt-svc/keys", json={"userId": "ops", "role": "admin"}, headers=auth(keys["admin"])
    )
    add(client, keys["alice"])

    listed = client.post("/prompt-svc/prompts", json={}, headers=auth(created.json()["key"])).json()

    assert created.json()["role"] == "admin"
    assert [p["userId"] for p in listed["prompts"]] == ["alice"]


@pytest.mark.parametrize("body", [{"userId": "x", "role": "root"}, {"userId": ""}, {"userId": "a#b"}, {}])
def test_bad_key_requests_are_400(client: TestClient, keys: dict[str, str], body: dict) -> None:
    response = client.post("/prompt-svc/keys", json=body, headers=auth(keys["admin"]))

    assert response.status_code == 400
    assert "userId" in response.json()["error"] or "role" in response.json()["error"]


def test_users_cannot_create_keys(client: TestClient, keys: dict[str, str]) -> None:
    response = client.post(
        "/prompt-svc/keys", json={"userId": "alice", "role": "admin"}, headers=auth(keys["alice"])
    )

    assert response.status_code == 403


def test_users_revoke_only_their_own_keys(client: TestClient, keys: dict[str, str]) -> None:
    created = client.post("/prompt-svc/keys", json={"userId": "alice"}, headers=auth(keys["admin"])).json()

    assert client.delete(f"/prompt-svc/keys/{created['keyId']}", headers=auth(keys["bob"])).status_code == 404
    assert (
        client.delete(f"/prompt-svc/keys/{created['keyId']}", headers=auth(keys["alice"])).status_code == 200
    )


def test_keys_are_stored_hashed(client: TestClient, local_stack: LocalStack, keys: dict[str, str]) -> None:
    created = client.post("/prompt-svc/keys", json={"userId": "dave"}, headers=auth(keys["admin"])).json()
    secret = created["key"].split("_", 2)[2]

    stored = repr(aws_client("dynamodb").scan(TableName=local_stack.refs["ApiKeysTable"])["Items"])

    for raw in [created["key"], secret, *keys.values()]:
        assert raw not in stored


def test_users_see_only_their_own_prompts(client: TestClient, keys: dict[str, str]) -> None:
    mine = add(client, keys["alice"], threadId="shared-name")
    theirs = add(client, keys["bob"], threadId="shared-name")
    bob = auth(keys["bob"])

    assert client.get(f"/prompt-svc/prompt/{mine['id']}", headers=bob).status_code == 404
    assert client.post(f"/prompt-svc/prompt/{mine['id']}/cancel", headers=bob).status_code == 404
    assert client.delete(f"/prompt-svc/prompt/{mine['id']}", headers=bob).status_code == 404
    assert client.post("/prompt-svc/remove", json={"promptId": mine["id"]}, headers=bob).status_code == 404
    for query in [
        {},
        {"filters": [{"fields": ["threadId"], "op": "equals", "jsonValues": '["shared-name"]'}]},
    ]:
        listed = client.post("/prompt-svc/prompts", json={"query": query}, headers=bob).json()["prompts"]
        assert [p["id"] for p in listed] == [theirs["id"]]
    assert client.get(f"/prompt-svc/prompt/{mine['id']}", headers=auth(keys["alice"])).status_code == 200


def test_admin_sees_everyone(client: TestClient, keys: dict[str, str]) -> None:
    mine = add(client, keys["alice"])
    theirs = add(client, keys["bob"])
    admin = auth(keys["admin"])

    listed = client.post("/prompt-svc/prompts", json={}, headers=admin).json()["prompts"]

    assert {p["id"] for p in listed} == {mine["id"], theirs["id"]}
    # Ids are per user: an admin names whose prompt it means; without a name, their own.
    assert client.get(f"/prompt-svc/prompt/{mine['id']}?userId=alice", headers=admin).status_code == 200
    assert client.get(f"/prompt-svc/prompt/{mine['id']}", headers=admin).status_code == 404
