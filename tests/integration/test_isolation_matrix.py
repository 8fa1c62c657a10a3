"""The isolation matrix (issue 9): every route, HTTP and WebSocket, times every kind of caller.

Callers: the owner of the thing the route names (alice), another user (bob), an admin (who names
the owner with `userId`, as README's admin access allows), and four that must get 401: no key, an
unknown key, a revoked key, a malformed Authorization header. Another user's prompt, thread or
registry entry is indistinguishable from a missing one.

Each cell observes one short string: the status (or the WebSocket frame type), and for routes that
show data, whether the owner's data was visible ("sees") or the answer was exactly the one a name
nobody used gets ("hidden"). Every cell works on its own freshly made target, in one moto world
per module (a world per cell would cost a second each).
"""

import itertools
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from moto import mock_aws
from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.adapters.key_table import DynamoKeyRepository
from promptsvc.api import key_routes, registry_routes, routes
from promptsvc.api.app import create_app
from promptsvc.domain.errors import Unauthorized
from promptsvc.domain.keys import Role
from promptsvc.services.subscriptions import REVOKED, SubscriptionService
from promptsvc.settings import Settings, get_settings
from promptsvc_dev.template import create_resources

from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY, TEMPLATE

OWNER, OTHER, ADMIN = "owner", "other", "admin"
NO_KEY, UNKNOWN, REVOKED_KEY, MALFORMED = "no key", "unknown key", "revoked key", "malformed header"
CALLERS = (OWNER, OTHER, ADMIN, NO_KEY, UNKNOWN, REVOKED_KEY, MALFORMED)
KEYLESS = (NO_KEY, UNKNOWN, REVOKED_KEY, MALFORMED)
_names = itertools.count(1)


class Wire:
    """The Management API, faked: frames by connection, and the connections closed."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.closed: list[str] = []

    def post(self, connection_id: str, payload: dict[str, Any]) -> None:
        self.frames[connection_id].append(payload)

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)


@dataclass
class World:
    client: TestClient
    settings: Settings
    wire: Wire
    ws: SubscriptionService
    now: list[float] = field(default_factory=lambda: [1000.0])  # the WebSocket key cache's clock

    def header(self, caller: str) -> dict[str, str]:
        """The Authorization header of a caller (a revoked key is made and revoked on the spot)."""
        key = {
            OWNER: ALICE_KEY,
            OTHER: BOB_KEY,
            ADMIN: ADMIN_KEY,
            UNKNOWN: "psk_00112233aabbccdd_no-such-key-was-ever-made",
            REVOKED_KEY: self.revoked_key(),
        }.get(caller)
        if caller == MALFORMED:
            return {"Authorization": "Basic YWxpY2U6c2VjcmV0"}
        return {} if key is None else {"Authorization": f"Bearer {key}"}

    def new_key(self, user_id: str) -> dict[str, str]:
        response = self.client.post("/prompt-svc/keys", json={"userId": user_id}, headers=_bearer(ADMIN_KEY))
        assert response.status_code == 201, response.text
        return response.json()

    def revoked_key(self) -> str:
        made = self.new_key("alice")
        response = self.client.delete(f"/prompt-svc/keys/{made['keyId']}", headers=_bearer(ADMIN_KEY))
        assert response.status_code == 200, response.text
        return made["key"]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """moto with template.yaml's resources, the API app and the WebSocket service, once a module."""
    with pytest.MonkeyPatch.context() as env, mock_aws():
        for name in list(os.environ):
            if name.startswith("AWS_ENDPOINT_URL"):
                env.delenv(name)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "ENGINE": "mock",
        }.items():
            env.setenv(name, value)
        clients.reset()
        stack = create_resources(TEMPLATE)
        for function in stack.functions():
            for name, value in stack.function_environment(function).items():
                env.setenv(name, value)
        get_settings.cache_clear()
        settings = get_settings()
        keys = wiring.key_service(settings)
        for key, user, role in [(ADMIN_KEY, "admin", Role.ADMIN), (ALICE_KEY, "alice", Role.USER)]:
            keys.bootstrap(key, user, role)
        keys.bootstrap(BOB_KEY, "bob", Role.USER)
        wire = Wire()
        now = [1000.0]
        ws = wiring.subscription_service(
            settings,
            poster=wire,
            keys=wiring.key_service(settings, monotonic=lambda: now[0]),
            close=wire.close,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield World(client, settings, wire, ws, now)
        get_settings.cache_clear()
    clients.reset()


# ---------------------------------------------------------------- targets: what the owner made


@dataclass
class Target:
    prompt_id: str
    thread_id: str
    registry_id: str = ""
    version_id: str = ""
    key_id: str = ""


def owners_prompt(world: World) -> Target:
    """A scheduled prompt of alice's on a thread of hers that has stored events (a canceled prompt)."""
    n = next(_names)
    target = Target(f"iso-{n}", f"iso-thread-{n}")
    alice = _bearer(ALICE_KEY)
    for prompt_id in (f"iso-{n}-ended", target.prompt_id):
        body = {"prompt": "alice's secret", "id": prompt_id, "threadId": target.thread_id}
        assert world.client.post("/prompt-svc/prompt", json=body, headers=alice).status_code == 200
    response = world.client.post(f"/prompt-svc/prompt/iso-{n}-ended/cancel", headers=alice)
    assert response.status_code == 200, response.text
    return target


def owners_registry_prompt(world: World) -> Target:
    body = {
        "display_name": "Alice's weather",
        "path": "Default",
        "prompt": {
            "model": "openai/gpt-4o",
            "messages": [{"role": "user", "content": "Weather in {{city}}?"}],
        },
    }
    created = world.client.post("/v2/prompts", json=body, headers=_bearer(ALICE_KEY))
    assert created.status_code == 200, created.text
    registry_id = created.json()["_id"]
    versions = world.client.get(f"/v2/prompts/{registry_id}/versions", headers=_bearer(ALICE_KEY))
    return Target("", "", registry_id, versions.json()["data"][0]["_id"])


def owners_key(world: World) -> Target:
    return Target("", "", key_id=world.new_key("alice")["keyId"])


# ---------------------------------------------------------------- HTTP routes


def admin_names_owner(caller: str) -> dict[str, str]:
    """An admin reaches another user's prompt or thread by naming the user (ids are per user)."""
    return {"userId": "alice"} if caller == ADMIN else {}


def add(world: World, caller: str, headers: dict[str, str]) -> str:
    """Everyone sends an `id` alice already used: hers is idempotent, anyone else's is their own."""
    target = owners_prompt(world)
    mine = caller == OWNER
    body = {"prompt": "alice's secret" if mine else "someone else's", "id": target.prompt_id}
    if mine:
        body["threadId"] = target.thread_id
    response = world.client.post("/prompt-svc/prompt", json=body, headers=headers)
    if response.status_code != 200:
        return str(response.status_code)
    stored = world.client.get(f"/prompt-svc/prompt/{target.prompt_id}", headers=_bearer(ALICE_KEY))
    assert stored.json()["prompt"]["prompt"] == "alice's secret"  # alice's prompt is untouched
    return "200 same" if response.json()["prompt"]["prompt"] == "alice's secret" else "200 own"


def get(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_prompt(world)
    path = f"/prompt-svc/prompt/{target.prompt_id}"
    return str(world.client.get(path, headers=headers, params=admin_names_owner(caller)).status_code)


def cancel(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_prompt(world)
    path = f"/prompt-svc/prompt/{target.prompt_id}/cancel"
    return str(world.client.post(path, headers=headers, params=admin_names_owner(caller)).status_code)


def delete(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_prompt(world)
    path = f"/prompt-svc/prompt/{target.prompt_id}"
    return str(world.client.delete(path, headers=headers, params=admin_names_owner(caller)).status_code)


def remove(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_prompt(world)
    # An admin names the owner in the body, beside the id.
    body = {"promptId": target.prompt_id, **admin_names_owner(caller)}
    response = world.client.post("/prompt-svc/remove", json=body, headers=headers)
    return str(response.status_code)


def list_prompts(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_prompt(world)
    query = {"filters": [{"fields": ["id"], "op": "equals", "jsonValues": json.dumps([target.prompt_id])}]}
    response = world.client.post("/prompt-svc/prompts", json={"query": query}, headers=headers)
    if response.status_code != 200:
        return str(response.status_code)
    listed = [(p["id"], p["userId"]) for p in response.json()["prompts"]]
    return "200 sees" if (target.prompt_id, "alice") in listed else "200 hidden"


def thread_events(world: World, caller: str, headers: dict[str, str]) -> str:
    """Another user's view of alice's thread must equal their view of a thread nobody used."""
    target = owners_prompt(world)
    params = admin_names_owner(caller)
    response = world.client.get(
        f"/prompt-svc/thread/{target.thread_id}/events", headers=headers, params=params
    )
    if response.status_code != 200:
        return str(response.status_code)
    unused = world.client.get(
        f"/prompt-svc/thread/never-{next(_names)}/events", headers=headers, params=params
    )
    body = response.json()
    if body["events"] and all(e["threadId"] == target.thread_id for e in body["events"]):
        return "200 sees"
    return "200 hidden" if body == unused.json() else "200 leaks"


def models(world: World, caller: str, headers: dict[str, str]) -> str:
    return str(world.client.get("/prompt-svc/models", headers=headers).status_code)


def create_key(world: World, caller: str, headers: dict[str, str]) -> str:
    response = world.client.post("/prompt-svc/keys", json={"userId": "carol"}, headers=headers)
    return str(response.status_code)


def revoke_key(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_key(world)
    return str(world.client.delete(f"/prompt-svc/keys/{target.key_id}", headers=headers).status_code)


def list_keys(world: World, caller: str, headers: dict[str, str]) -> str:
    """Everyone asks for alice's keys: hers, an admin's, or (another user) a 403."""
    target = owners_key(world)
    response = world.client.get("/prompt-svc/keys", params={"userId": "alice"}, headers=headers)
    if response.status_code != 200:
        return str(response.status_code)
    listed = response.json()["keys"]
    return "200 sees" if target.key_id in {k["keyId"] for k in listed} else "200 hidden"


def rotate_key(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_key(world)
    path = f"/prompt-svc/keys/{target.key_id}/rotate"
    return str(world.client.post(path, json={"graceSeconds": 0}, headers=headers).status_code)


def update_key(world: World, caller: str, headers: dict[str, str]) -> str:
    """Only an admin changes a key; anyone else is refused before the key is looked up."""
    target = owners_key(world)
    body = {"limits": {"requestsPerMinute": 0}}
    return str(
        world.client.patch(f"/prompt-svc/keys/{target.key_id}", json=body, headers=headers).status_code
    )


def registry_create(world: World, caller: str, headers: dict[str, str]) -> str:
    body = {"display_name": "Mine", "path": "Default"}
    return str(world.client.post("/v2/prompts", json=body, headers=headers).status_code)


def registry_list(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_registry_prompt(world)
    response = world.client.get("/v2/prompts", headers=headers, params={"limit": 200})
    if response.status_code != 200:
        return str(response.status_code)
    return "200 sees" if target.registry_id in [p["_id"] for p in response.json()["data"]] else "200 hidden"


def registry_get(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_registry_prompt(world)
    return str(world.client.get(f"/v2/prompts/{target.registry_id}", headers=headers).status_code)


def registry_patch(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_registry_prompt(world)
    body = {"display_name": "renamed"}
    return str(
        world.client.patch(f"/v2/prompts/{target.registry_id}", json=body, headers=headers).status_code
    )


def registry_delete(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_registry_prompt(world)
    return str(world.client.delete(f"/v2/prompts/{target.registry_id}", headers=headers).status_code)


def registry_versions(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_registry_prompt(world)
    return str(world.client.get(f"/v2/prompts/{target.registry_id}/versions", headers=headers).status_code)


def registry_version(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_registry_prompt(world)
    path = f"/v2/prompts/{target.registry_id}/versions/{target.version_id}"
    return str(world.client.get(path, headers=headers).status_code)


# ---------------------------------------------------------------- WebSocket actions


def ws_open(world: World, caller: str) -> str | None:
    """Open a connection as the caller; its id, or None when the handshake is refused (401). A
    revoked-key connection is opened while its key is good, then the key is revoked and the key
    cache's bound passes."""
    connection_id = f"conn-{next(_names)}"
    if caller == REVOKED_KEY:
        made = world.new_key("alice")
        world.ws.connect(connection_id, made["key"])
        assert DynamoKeyRepository(world.settings.keys_table).delete(made["keyId"])
        world.now[0] += world.settings.key_cache_seconds + 1
        return connection_id
    header = world.header(caller).get("Authorization")
    try:
        if caller == UNKNOWN:  # as `?token=`
            world.ws.connect(connection_id, header.removeprefix("Bearer ") if header else None)
        else:
            world.ws.connect(connection_id, header)
    except Unauthorized:
        return None
    return connection_id


def ws_frames(world: World, connection_id: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    before = len(world.wire.frames[connection_id])
    world.ws.message(connection_id, json.dumps(message))
    return world.wire.frames[connection_id][before:]


def ws_outcome(world: World, connection_id: str, frames: list[dict[str, Any]]) -> str | None:
    if frames and frames[0] == {"type": "error", "action": frames[0].get("action"), "error": REVOKED}:
        closed = connection_id in world.wire.closed
        gone = wiring.connection_store(world.settings).get_connection(connection_id) is None
        return "error revoked, closed" if closed and gone else "error revoked, left open"
    return None


def ws_connect(world: World, caller: str, headers: dict[str, str]) -> str:
    if caller == REVOKED_KEY:  # a new handshake with a revoked key
        try:
            world.ws.connect(f"conn-{next(_names)}", world.header(REVOKED_KEY)["Authorization"])
        except Unauthorized:
            return "401"
        return "200"
    return "401" if ws_open(world, caller) is None else "200"


def ws_subscribe(world: World, caller: str, headers: dict[str, str]) -> str:
    """Subscribe to alice's thread from the start: another user's frames must equal those of a
    subscribe to a thread nobody used."""
    target = owners_prompt(world)
    connection_id = ws_open(world, caller)
    if connection_id is None:
        return "401"
    message: dict[str, Any] = {"action": "subscribe", "threadId": target.thread_id, "after": 0}
    message.update(admin_names_owner(caller))
    frames = ws_frames(world, connection_id, message)
    if (revoked := ws_outcome(world, connection_id, frames)) is not None:
        return revoked
    if not frames or frames[0]["type"] != "subscribed":
        return frames[0]["type"] if frames else "nothing"
    if len(frames) > 1 and all(f.get("threadId") == target.thread_id for f in frames[1:]):
        return "subscribed sees"
    unused = ws_frames(world, connection_id, {**message, "threadId": f"never-{next(_names)}"})
    shown = [{**f, "threadId": "T"} for f in frames]
    return "subscribed hidden" if shown == [{**f, "threadId": "T"} for f in unused] else "subscribed leaks"


def ws_unsubscribe(world: World, caller: str, headers: dict[str, str]) -> str:
    target = owners_prompt(world)
    connection_id = ws_open(world, caller)
    if connection_id is None:
        return "401"
    message = {"action": "unsubscribe", "threadId": target.thread_id, **admin_names_owner(caller)}
    frames = ws_frames(world, connection_id, message)
    return ws_outcome(world, connection_id, frames) or " ".join(f["type"] for f in frames)


def ws_ping(world: World, caller: str, headers: dict[str, str]) -> str:
    connection_id = ws_open(world, caller)
    if connection_id is None:
        return "401"
    frames = ws_frames(world, connection_id, {"action": "ping"})
    return ws_outcome(world, connection_id, frames) or " ".join(f["type"] for f in frames)


# ---------------------------------------------------------------- the matrix

Route = Callable[[World, str, dict[str, str]], str]

# route -> what the owner, another user and an admin observe; no, unknown, revoked and malformed
# keys get 401 on every HTTP route and every WebSocket handshake.
MATRIX: dict[str, tuple[Route, str, str, str]] = {
    "add": (add, "200 same", "200 own", "200 own"),
    "get": (get, "200", "404", "200"),
    "cancel": (cancel, "200", "404", "200"),
    "delete": (delete, "200", "404", "200"),
    "remove": (remove, "200", "404", "200"),
    "list": (list_prompts, "200 sees", "200 hidden", "200 sees"),
    "thread events": (thread_events, "200 sees", "200 hidden", "200 sees"),
    "models": (models, "200", "200", "200"),
    "keys create": (create_key, "403", "403", "201"),
    "keys revoke": (revoke_key, "200", "404", "200"),
    "keys list": (list_keys, "200 sees", "403", "200 sees"),
    "keys rotate": (rotate_key, "200", "404", "200"),
    "keys update": (update_key, "403", "403", "200"),
    "registry create": (registry_create, "200", "200", "200"),
    "registry list": (registry_list, "200 sees", "200 hidden", "200 hidden"),
    "registry get": (registry_get, "200", "404", "404"),
    "registry patch": (registry_patch, "200", "404", "404"),
    "registry delete": (registry_delete, "200", "404", "404"),
    "registry versions list": (registry_versions, "200", "404", "404"),
    "registry versions get": (registry_version, "200", "404", "404"),
    "ws connect": (ws_connect, "200", "200", "200"),
    "ws subscribe": (ws_subscribe, "subscribed sees", "subscribed hidden", "subscribed sees"),
    "ws unsubscribe": (ws_unsubscribe, "unsubscribed", "unsubscribed", "unsubscribed"),
    "ws ping": (ws_ping, "pong", "pong", "pong"),
}
# A connection opened before its key was revoked: every action is refused and the connection closed.
REVOKED_CONNECTION = "error revoked, closed"


def expected(route: str, caller: str) -> str:
    _, owner, other, admin = MATRIX[route]
    if caller in KEYLESS:
        if caller == REVOKED_KEY and route.startswith("ws ") and route != "ws connect":
            return REVOKED_CONNECTION
        return "401"
    return {OWNER: owner, OTHER: other, ADMIN: admin}[caller]


CELLS = [pytest.param(route, caller, id=f"{route}|{caller}") for route in MATRIX for caller in CALLERS]


@pytest.mark.parametrize(("route", "caller"), CELLS)
def test_isolation_matrix(world: World, route: str, caller: str) -> None:
    observed = MATRIX[route][0](world, caller, world.header(caller))

    assert observed == expected(route, caller)


def test_the_matrix_covers_every_http_route() -> None:
    """A new route must get its row here: the app's API routes are exactly the matrix's."""
    paths = {
        (method, route.path)
        for route in [*routes.router.routes, *key_routes.router.routes, *registry_routes.router.routes]
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert paths == {
        ("POST", "/prompt-svc/prompt"),
        ("GET", "/prompt-svc/prompt/{prompt_id}"),
        ("POST", "/prompt-svc/prompt/{prompt_id}/cancel"),
        ("DELETE", "/prompt-svc/prompt/{prompt_id}"),
        ("POST", "/prompt-svc/remove"),
        ("POST", "/prompt-svc/prompts"),
        ("GET", "/prompt-svc/thread/{thread_id}/events"),
        ("GET", "/prompt-svc/models"),
        ("POST", "/prompt-svc/keys"),
        ("DELETE", "/prompt-svc/keys/{key_id}"),
        ("GET", "/prompt-svc/keys"),
        ("POST", "/prompt-svc/keys/{key_id}/rotate"),
        ("PATCH", "/prompt-svc/keys/{key_id}"),
        ("POST", "/v2/prompts"),
        ("GET", "/v2/prompts"),
        ("GET", "/v2/prompts/{prompt_id}"),
        ("PATCH", "/v2/prompts/{prompt_id}"),
        ("DELETE", "/v2/prompts/{prompt_id}"),
        ("GET", "/v2/prompts/{prompt_id}/versions"),
        ("GET", "/v2/prompts/{prompt_id}/versions/{version_id}"),
    }


def test_a_401_names_the_problem_and_never_the_key(world: World) -> None:
    for caller in KEYLESS:
        response = world.client.post("/prompt-svc/prompts", json={}, headers=world.header(caller))
        assert response.status_code == 401
        assert "API key" in response.json()["error"]
        assert "psk_" not in response.text and "Basic" not in response.text
