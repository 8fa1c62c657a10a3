"""Key lifecycle on moto (issue 13, part 5): listing (paged, bounded, scoped, never a secret),
expiry, rotation with a grace period, the models a key may use, lastUsedAt. The key service's two
clocks are injected: `wall` (expiry, grace, lastUsedAt) and `monotonic` (the key cache)."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.adapters.clients import client as aws_client
from promptsvc.api.app import create_app
from promptsvc.settings import Settings
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.integration.helpers import queue_depth, stored_prompts

START = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
MISTRAL = "mistralai/Mistral-7B-Instruct-v0.3"
LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


@dataclass
class Clocks:
    wall: float = START
    mono: float = 1000.0


@dataclass
class Api:
    client: TestClient
    clocks: Clocks
    settings: Settings
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def instance(self) -> TestClient:
        """Another function instance: its own key cache, the same clocks."""
        app = create_app(self.settings)
        app.state.keys = _keys(self.settings, self.clocks)
        return TestClient(app, raise_server_exceptions=False)

    def create(self, user: str = "alice", **body: Any) -> dict[str, Any]:
        response = self.client.post("/prompt-svc/keys", json={"userId": user, **body}, headers=ADMIN)
        assert response.status_code == 201, response.text
        return response.json()


def _keys(settings: Settings, clocks: Clocks) -> Any:
    return wiring.key_service(settings, lambda: clocks.mono, wall=lambda: clocks.wall, api=True)


ADMIN: dict[str, str] = {}


@pytest.fixture
def api(settings: Settings, keys: dict[str, str]) -> Iterator[Api]:
    ADMIN.clear()
    ADMIN.update(auth(keys["admin"]))
    clocks = Clocks()
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(event_name: str, params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == settings.keys_table:
            calls.append((event_name.rsplit(".", 1)[-1], params))

    clients.register_hook("provide-client-params.dynamodb.*", record)
    app = create_app(settings)
    app.state.keys = _keys(settings, clocks)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield Api(test_client, clocks, settings, calls)
    clients.clear_hooks()


def _get(client: TestClient, key: str, path: str = "/prompt-svc/models") -> int:
    return client.get(path, headers=auth(key)).status_code


# -- listing -------------------------------------------------------------------------------------


def test_pages_of_keys_are_bounded_reads_that_together_list_every_key_and_no_secret(api: Api) -> None:
    made = [api.create(f"user{i % 3}") for i in range(7)]
    api.calls.clear()
    seen: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        response = api.client.get("/prompt-svc/keys", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["keys"]) <= 2
        seen += page["keys"]
        after = page.get("after")
        if after is None:
            break
    # every key (the made ones and the three of the fixture), each once, none holding a secret
    ids = [k["keyId"] for k in seen]
    assert len(ids) == len(set(ids)) == 10
    assert {m["keyId"] for m in made} <= set(ids)
    text = str(seen)
    assert "secretHash" not in text and "previousHash" not in text
    assert not any(m["key"] in text for m in made)
    assert all(k["prefix"] == f"psk_{k['keyId']}_" for k in seen if k["keyId"] in {m["keyId"] for m in made})
    # each page one read of the index that holds no hashes, of at most a page and one more item
    reads = [(op, p) for op, p in api.calls if op in ("Query", "Scan")]
    assert reads and all(p["IndexName"] == "byUser" and p["Limit"] <= 3 for _, p in reads)
    assert not [op for op, p in api.calls if op == "Scan" and "IndexName" not in p]


def test_a_user_lists_their_own_keys_newest_first_and_an_admin_anyones(api: Api, keys: dict) -> None:
    first = api.create("alice")
    api.clocks.wall += 1
    second = api.create("alice", allowedModels=[MISTRAL])
    api.create("bob")

    own = api.client.get("/prompt-svc/keys", headers=auth(second["key"])).json()["keys"]
    assert [k["keyId"] for k in own][:2] == [second["keyId"], first["keyId"]]
    assert {k["userId"] for k in own} == {"alice"}
    assert own[0]["allowedModels"] == [MISTRAL] and own[0]["state"] == "active"

    by_admin = api.client.get("/prompt-svc/keys", params={"userId": "bob"}, headers=ADMIN).json()["keys"]
    assert {k["userId"] for k in by_admin} == {"bob"}


def test_a_user_cannot_list_or_rotate_anothers_key(api: Api, keys: dict[str, str]) -> None:
    bobs = api.create("bob")
    alice = auth(keys["alice"])
    listing = api.client.get("/prompt-svc/keys", params={"userId": "bob"}, headers=alice)
    assert listing.status_code == 403 and "admin" in listing.json()["error"]
    rotated = api.client.post(f"/prompt-svc/keys/{bobs['keyId']}/rotate", headers=alice)
    assert rotated.status_code == 404
    assert api.client.delete(f"/prompt-svc/keys/{bobs['keyId']}", headers=alice).status_code == 404
    assert _get(api.client, bobs["key"]) == 200
    created = api.client.post("/prompt-svc/keys", json={"userId": "alice"}, headers=alice)
    assert created.status_code == 403


def test_a_cursor_the_service_did_not_issue_is_a_400(api: Api) -> None:
    for bad in ("nope", "AAAA", "x" * 600):
        response = api.client.get("/prompt-svc/keys", params={"after": bad}, headers=ADMIN)
        assert response.status_code == 400, (bad, response.text)
        assert "after" in response.json()["error"]
    assert api.client.get("/prompt-svc/keys", params={"limit": 101}, headers=ADMIN).status_code == 400


# -- expiry --------------------------------------------------------------------------------------


def test_an_expired_key_is_a_401_at_once_though_its_record_is_cached(api: Api) -> None:
    expires = datetime.fromtimestamp(START + 30, UTC).isoformat().replace("+00:00", "Z")
    made = api.create("alice", expiresAt=expires)
    assert made["expiresAt"] == "2030-01-01T00:00:30.000000Z"
    assert _get(api.client, made["key"]) == 200  # now cached for KEY_CACHE_SECONDS
    api.clocks.wall += 31  # the cache's clock has not moved
    response = api.client.get("/prompt-svc/models", headers=auth(made["key"]))
    assert response.status_code == 401 and response.json() == {"error": "API key expired"}
    listed = api.client.get("/prompt-svc/keys", params={"userId": "alice"}, headers=ADMIN).json()["keys"]
    assert next(k for k in listed if k["keyId"] == made["keyId"])["state"] == "expired"
    rotate = api.client.post(f"/prompt-svc/keys/{made['keyId']}/rotate", headers=ADMIN)
    assert rotate.status_code == 409


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        ("2029-12-31T23:59:59Z", "not in the future"),
        ("2030-06-01T00:00:00", "time zone"),
        ("next tuesday", "not an RFC 3339 time"),
    ],
)
def test_a_bad_expiry_is_a_400_naming_it(api: Api, expires: str, message: str) -> None:
    response = api.client.post("/prompt-svc/keys", json={"userId": "a", "expiresAt": expires}, headers=ADMIN)
    assert response.status_code == 400 and message in response.json()["error"]
    assert "expiresAt" in response.json()["error"]


# -- rotation ------------------------------------------------------------------------------------


def test_a_rotated_key_takes_both_secrets_until_the_grace_ends(api: Api) -> None:
    made = api.create("alice")
    other = api.instance()  # another function instance, which cached the key before the rotation
    assert _get(other, made["key"]) == 200

    response = api.client.post(
        f"/prompt-svc/keys/{made['keyId']}/rotate", json={"graceSeconds": 60}, headers=auth(made["key"])
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["keyId"] == made["keyId"] and rotated["key"] != made["key"]
    assert rotated["key"].startswith(rotated["prefix"]) and rotated["prefix"] == made["prefix"]
    assert rotated["graceEndsAt"] == "2030-01-01T00:01:00.000000Z"

    for instance in (api.client, other):  # the new secret works at once everywhere; so does the old
        assert _get(instance, rotated["key"]) == 200
        assert _get(instance, made["key"]) == 200
    listed = api.client.get("/prompt-svc/keys", headers=auth(rotated["key"])).json()["keys"]
    assert next(k for k in listed if k["keyId"] == made["keyId"])["state"] == "rotating"

    api.clocks.wall += 61
    for instance in (api.client, other):
        assert _get(instance, made["key"]) == 401
        assert _get(instance, rotated["key"]) == 200


def test_a_second_rotation_ends_the_first_ones_old_secret_and_the_grace_is_bounded(api: Api) -> None:
    made = api.create("bob")
    path = f"/prompt-svc/keys/{made['keyId']}/rotate"
    too_long = api.client.post(path, json={"graceSeconds": 7 * 86400 + 1}, headers=ADMIN)
    assert too_long.status_code == 400 and "graceSeconds" in too_long.json()["error"]
    first = api.client.post(path, headers=ADMIN).json()  # no body: an hour's grace
    assert first["graceEndsAt"] == "2030-01-01T01:00:00.000000Z"
    second = api.client.post(path, json={"graceSeconds": 0}, headers=ADMIN).json()
    assert _get(api.client, made["key"]) == 401
    assert _get(api.client, first["key"]) == 401  # graceSeconds 0: at once
    assert _get(api.client, second["key"]) == 200
    assert api.client.post("/prompt-svc/keys/nosuchkey/rotate", headers=ADMIN).status_code == 404


def test_a_key_is_cached_until_its_grace_ends_and_again_after_it(api: Api) -> None:
    made = api.create("alice")
    path = f"/prompt-svc/keys/{made['keyId']}/rotate"
    new = api.client.post(path, json={"graceSeconds": 10}, headers=ADMIN).json()["key"]
    assert _get(api.client, new) == 200
    api.calls.clear()
    assert _get(api.client, new) == 200 and _get(api.client, made["key"]) == 200
    assert [op for op, _ in api.calls if op == "GetItem"] == []  # within the grace: cached
    api.clocks.wall += 11
    api.clocks.mono += 11  # less than KEY_CACHE_SECONDS
    assert _get(api.client, new) == 200  # the cached record was trusted only until the grace ended
    assert [op for op, _ in api.calls if op == "GetItem"] == ["GetItem"]
    api.calls.clear()
    assert _get(api.client, new) == 200 and _get(api.client, new) == 200
    assert [op for op, _ in api.calls if op == "GetItem"] == []  # and is cached again after it


def test_a_bootstrapped_key_rotates_to_a_generated_one(api: Api, keys: dict[str, str]) -> None:
    alice = auth(keys["alice"])
    (own,) = api.client.get("/prompt-svc/keys", headers=alice).json()["keys"]
    assert own["prefix"] == ""  # all of an operator's own key is secret
    rotated = api.client.post(f"/prompt-svc/keys/{own['keyId']}/rotate", headers=alice).json()
    assert rotated["key"].startswith(f"psk_{own['keyId']}_")
    assert _get(api.client, rotated["key"]) == 200 and _get(api.client, keys["alice"]) == 200


# -- revocation, as before -----------------------------------------------------------------------


def test_revocation_is_at_once_in_the_function_that_made_it_and_within_the_cache_elsewhere(
    api: Api,
) -> None:
    made = api.create("alice")
    other = api.instance()
    assert _get(other, made["key"]) == 200
    assert (
        api.client.delete(f"/prompt-svc/keys/{made['keyId']}", headers=auth(made["key"])).status_code == 200
    )
    assert _get(api.client, made["key"]) == 401
    assert _get(other, made["key"]) == 200  # its cached record, for up to KEY_CACHE_SECONDS
    api.clocks.mono += api.settings.key_cache_seconds + 1
    assert _get(other, made["key"]) == 401


# -- models a key may use ------------------------------------------------------------------------


def test_a_prompt_for_a_model_off_the_keys_list_is_a_403_naming_it_and_nothing_is_stored_or_queued(
    api: Api, local_stack: LocalStack
) -> None:
    made = api.create("alice", allowedModels=[MISTRAL, LLAMA])
    key = auth(made["key"])
    for body, refused in (
        ({"modelId": QWEN}, QWEN),
        ({}, "huggingface/TheBloke/mistral-7b-instruct-v0.2.Q3_K_S.gguf"),  # the catalog's default
    ):
        response = api.client.post("/prompt-svc/prompt", json={"prompt": "hi", **body}, headers=key)
        assert response.status_code == 403, response.text
        assert repr(refused) in response.json()["error"]
    assert stored_prompts(local_stack) == [] and queue_depth(local_stack) == 0

    ok = api.client.post("/prompt-svc/prompt", json={"prompt": "hi", "modelId": LLAMA}, headers=key)
    assert ok.status_code == 200, ok.text
    assert len(stored_prompts(local_stack)) == 1


def test_a_stored_prompt_whose_fallback_is_off_the_list_is_refused(api: Api, local_stack: LocalStack) -> None:
    made = api.create("alice", allowedModels=[MISTRAL])
    key = auth(made["key"])
    stored = {
        "model": MISTRAL,
        "messages": [{"role": "user", "content": "Tell me about cheese."}],
        "fallbacks": [{"model": QWEN}],
    }
    body = {"display_name": "Cheese", "path": "Default/cheese", "prompt": stored}
    created = api.client.post("/v2/prompts", json=body, headers=key)
    assert created.status_code == 200, created.text
    response = api.client.post(
        "/prompt-svc/prompt", json={"promptConfigId": created.json()["_id"]}, headers=key
    )
    assert response.status_code == 403 and repr(QWEN) in response.json()["error"]
    assert stored_prompts(local_stack) == [] and queue_depth(local_stack) == 0


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["no/such-model"], "unknown model 'no/such-model'"),
        ([], "allowedModels"),
        (["m"] * 33, "allowedModels"),
    ],
)
def test_an_allow_list_is_checked_at_creation(api: Api, models: list[str], message: str) -> None:
    response = api.client.post(
        "/prompt-svc/keys", json={"userId": "alice", "allowedModels": models}, headers=ADMIN
    )
    assert response.status_code == 400 and message in response.json()["error"]


# -- lastUsedAt ----------------------------------------------------------------------------------


def _last_used(api: Api, key_id: str) -> str | None:
    item = aws_client("dynamodb").get_item(TableName=api.settings.keys_table, Key={"keyId": {"S": key_id}})
    return item["Item"].get("lastUsedAt", {}).get("S")


def test_last_used_is_written_at_most_once_per_cache_period_per_key(api: Api) -> None:
    made = api.create("alice")
    assert _last_used(api, made["keyId"]) is None
    assert _get(api.client, made["key"]) == 200
    assert _last_used(api, made["keyId"]) == "2030-01-01T00:00:00.000000Z"

    api.clocks.wall += 5
    api.calls.clear()
    for _ in range(5):
        assert _get(api.client, made["key"]) == 200
    assert _last_used(api, made["keyId"]) == "2030-01-01T00:00:00.000000Z"
    assert [op for op, _ in api.calls if op == "UpdateItem"] == []

    api.clocks.mono += api.settings.key_cache_seconds
    assert _get(api.client, made["key"]) == 200
    assert _last_used(api, made["keyId"]) == "2030-01-01T00:00:05.000000Z"
    listed = api.client.get("/prompt-svc/keys", headers=auth(made["key"])).json()["keys"]
    assert listed[0]["lastUsedAt"] == "2030-01-01T00:00:05.000000Z"


# -- changing a key ------------------------------------------------------------------------------


def test_an_admin_changes_a_keys_limits_models_and_expiry_and_the_secret_keeps_working(
    api: Api, local_stack: LocalStack
) -> None:
    made = api.create("alice", allowedModels=[MISTRAL], limits={"requestsPerMinute": 5, "tokensPerDay": 900})
    path = f"/prompt-svc/keys/{made['keyId']}"
    changed = api.client.patch(
        path,
        json={"allowedModels": [MISTRAL, LLAMA], "limits": {"requestsPerMinute": 50, "tokensPerDay": None}},
        headers=ADMIN,
    )
    assert changed.status_code == 200, changed.text
    view = changed.json()
    assert view["allowedModels"] == [MISTRAL, LLAMA]
    assert view["limits"] == {"requestsPerMinute": 50, "promptsInFlight": None, "tokensPerDay": None}
    assert view["expiresAt"] is None and view["state"] == "active" and "key" not in view

    # At once in this function: a prompt for the newly allowed model is taken.
    ok = api.client.post(
        "/prompt-svc/prompt", json={"prompt": "hi", "modelId": LLAMA}, headers=auth(made["key"])
    )
    assert ok.status_code == 200, ok.text
    listed = api.client.get("/prompt-svc/keys", headers=auth(made["key"])).json()["keys"]
    assert listed[0]["limits"]["requestsPerMinute"] == 50

    # Every model again, an expiry, and limits back to the defaults: fields left out are kept.
    later = "2030-06-01T00:00:00Z"
    again = api.client.patch(path, json={"allowedModels": None, "expiresAt": later}, headers=ADMIN).json()
    assert again["allowedModels"] is None and again["expiresAt"].startswith("2030-06-01T00:00:00")
    assert again["limits"]["requestsPerMinute"] == 50
    reset = api.client.patch(path, json={"limits": None, "expiresAt": None}, headers=ADMIN).json()
    assert reset["limits"] == {"requestsPerMinute": None, "promptsInFlight": None, "tokensPerDay": None}
    assert reset["expiresAt"] is None
    assert _get(api.client, made["key"]) == 200


def test_a_change_reaches_other_instances_within_the_key_cache(api: Api) -> None:
    made = api.create("alice")
    other = api.instance()
    assert _get(other, made["key"]) == 200
    expiry = datetime.fromtimestamp(api.clocks.wall + 60, UTC).isoformat()
    assert (
        api.client.patch(
            f"/prompt-svc/keys/{made['keyId']}", json={"expiresAt": expiry}, headers=ADMIN
        ).status_code
        == 200
    )
    api.clocks.wall += 61
    assert _get(api.client, made["key"]) == 401  # expired, at once here
    assert _get(other, made["key"]) == 200  # its cached record, for up to KEY_CACHE_SECONDS
    api.clocks.mono += api.settings.key_cache_seconds + 1
    assert _get(other, made["key"]) == 401


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"allowedModels": ["no/such-model"]}, 400, "unknown model"),
        ({"allowedModels": []}, 400, "allowedModels"),
        ({"expiresAt": "2001-01-01T00:00:00Z"}, 400, "not in the future"),
        ({"limits": {"promptsInFlight": -1}}, 400, "promptsInFlight"),
        ({"limits": {"tokensPerDay": "many"}}, 400, "tokensPerDay"),
    ],
)
def test_a_bad_change_is_a_400_naming_it_and_changes_nothing(
    api: Api, body: dict[str, Any], status: int, message: str
) -> None:
    made = api.create("alice", limits={"promptsInFlight": 3})
    response = api.client.patch(f"/prompt-svc/keys/{made['keyId']}", json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    listed = api.client.get("/prompt-svc/keys", headers=auth(made["key"])).json()["keys"][0]
    assert listed["limits"]["promptsInFlight"] == 3 and listed["allowedModels"] is None


def test_only_an_admin_changes_a_key_and_anothers_key_is_not_found(api: Api) -> None:
    mine = api.create("alice")
    theirs = api.create("bob")
    own = api.client.patch(
        f"/prompt-svc/keys/{mine['keyId']}",
        json={"limits": {"promptsInFlight": 0}},
        headers=auth(mine["key"]),
    )
    assert own.status_code == 403, own.text
    assert "only an admin" in own.json()["error"]
    missing = api.client.patch("/prompt-svc/keys/nosuchkey", json={}, headers=ADMIN)
    assert missing.status_code == 404
    revoked = api.client.delete(f"/prompt-svc/keys/{theirs['keyId']}", headers=ADMIN)
    assert revoked.status_code == 200
    gone = api.client.patch(f"/prompt-svc/keys/{theirs['keyId']}", json={"limits": None}, headers=ADMIN)
    assert gone.status_code == 404
