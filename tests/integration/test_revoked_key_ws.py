"""A revoked key stops its open WebSocket connections within the key cache's bound (issue 9, item 6).

The key cache's clock is injected: "the cache expired" is a clock moved past `KEY_CACHE_SECONDS`,
never a sleep.
"""

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.connections_api import management_client
from promptsvc.adapters.key_table import DynamoKeyRepository
from promptsvc.domain.thread_events import EventType, ThreadEvent
from promptsvc.services.subscriptions import REVOKED
from promptsvc.settings import Settings

from tests.conftest import auth
from tests.integration.test_ws_and_fanout import expect, record, run_stream, send, stream, ws  # noqa: F401

CREATED = "2026-11-22T03:10:00.000000Z"


class Wire:
    """A fake Management API: the frames posted to each connection, and the connections closed."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.closed: list[str] = []

    def post(self, connection_id: str, payload: dict[str, Any]) -> None:
        self.frames[connection_id].append(payload)

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def user_key(client: TestClient, keys: dict[str, str]) -> dict[str, str]:
    """A fresh key of alice's, made by the admin: `{key, keyId, ...}`."""
    response = client.post("/prompt-svc/keys", json={"userId": "alice"}, headers=auth(keys["admin"]))
    assert response.status_code == 201, response.text
    return response.json()


def revoke(how: str, client: TestClient, settings: Settings, user_key: dict[str, str]) -> None:
    if how == "api":  # by its own user, through the API (another function's cache)
        response = client.delete(f"/prompt-svc/keys/{user_key['keyId']}", headers=auth(user_key["key"]))
        assert response.status_code == 200, response.text
    else:  # straight in the keys table
        assert DynamoKeyRepository(settings.keys_table).delete(user_key["keyId"])


def event(log: Any, thread_id: str, text: str) -> ThreadEvent:
    return log.append(ThreadEvent(thread_id, "alice", "prm_alice", EventType.DELTA, CREATED, text=text))


@pytest.mark.parametrize("how", ["api", "table"])
def test_a_revoked_key_stops_its_open_connections_once_the_key_cache_expires(
    client: TestClient, settings: Settings, user_key: dict[str, str], how: str
) -> None:
    wire, clock = Wire(), Clock()
    keys: Callable[[], Any] = lambda: wiring.key_service(settings, monotonic=clock)  # noqa: E731
    service = wiring.subscription_service(settings, poster=wire, keys=keys(), close=wire.close)
    fanout = wiring.fanout(settings, poster=wire, keys=keys(), close=wire.close)  # another function
    store, log = wiring.connection_store(settings), wiring.thread_event_log(settings)
    for connection_id in ("conn-1", "conn-2"):
        service.connect(connection_id, f"Bearer {user_key['key']}")
        service.message(connection_id, '{"action": "subscribe", "threadId": "t"}')
    first = event(log, "t", "before")
    assert fanout.publish(first).delivered == ["conn-1", "conn-2"]

    revoke(how, client, settings, user_key)
    clock.now += settings.key_cache_seconds + 1

    service.message("conn-1", '{"action": "subscribe", "threadId": "u", "after": 0}')
    second = event(log, "t", "after")
    report = fanout.publish(second)

    assert wire.frames["conn-1"] == [
        {"type": "subscribed", "threadId": "t", "after": 0},
        first.wire(),
        {"type": "error", "action": "subscribe", "error": REVOKED},
    ]
    assert wire.frames["conn-2"] == [{"type": "subscribed", "threadId": "t", "after": 0}, first.wire()]
    assert report.outcomes == {"conn-2": "revoked"}
    assert sorted(wire.closed) == ["conn-1", "conn-2"]
    for connection_id in ("conn-1", "conn-2"):
        assert store.get_connection(connection_id) is None
        assert store.threads_of(connection_id) == []


@pytest.mark.parametrize(
    ("message", "action"),
    [
        ('{"action": "ping"}', "ping"),
        ('{"action": "unsubscribe", "threadId": "t"}', "unsubscribe"),
        ("{not json", None),
        ('{"action": "dance"}', "dance"),
    ],
)
def test_every_action_of_a_revoked_connection_is_refused_and_closes_it(
    client: TestClient, settings: Settings, user_key: dict[str, str], message: str, action: str | None
) -> None:
    wire, clock = Wire(), Clock()
    service = wiring.subscription_service(
        settings, poster=wire, keys=wiring.key_service(settings, monotonic=clock), close=wire.close
    )
    service.connect("conn-1", user_key["key"])
    service.message("conn-1", '{"action": "ping"}')
    revoke("table", client, settings, user_key)

    service.message("conn-1", '{"action": "ping"}')  # within the cache bound: still trusted
    clock.now += settings.key_cache_seconds + 1
    service.message("conn-1", message)

    assert wire.frames["conn-1"] == [
        {"type": "pong"},
        {"type": "pong"},
        {"type": "error", "action": action, "error": REVOKED},
    ]
    assert wire.closed == ["conn-1"]
    assert wiring.connection_store(settings).get_connection("conn-1") is None


def test_the_handlers_close_a_revoked_connection_through_the_management_api(
    ws: Any,  # noqa: F811
    stream: Any,  # noqa: F811
    client: TestClient,
    settings: Settings,
    user_key: dict[str, str],
) -> None:
    """The real poster: an error frame, then `DELETE @connections/{id}` (what closes it on AWS and on
    the local gateway); the stream function deletes the other connection the same way."""
    clock = Clock()
    ws.service = wiring.subscription_service(settings, keys=wiring.key_service(settings, monotonic=clock))
    stream.fanout = wiring.fanout(settings, keys=wiring.key_service(settings, monotonic=clock))
    with Stubber(management_client(settings.websocket_endpoint)) as wire:
        for connection_id in ("conn-1", "conn-2"):
            ws.service.connect(connection_id, user_key["key"])
            expect(wire, connection_id, {"type": "subscribed", "threadId": "t", "after": 0})
            send(ws, connection_id, {"action": "subscribe", "threadId": "t"})
        revoke("table", client, settings, user_key)
        clock.now += settings.key_cache_seconds + 1
        expect(wire, "conn-1", {"type": "error", "action": "ping", "error": REVOKED})
        wire.add_response("delete_connection", {}, {"ConnectionId": "conn-1"})
        wire.add_response("delete_connection", {}, {"ConnectionId": "conn-2"})

        assert send(ws, "conn-1", {"action": "ping"}) == {"statusCode": 200}
        assert run_stream(stream, record(event(wiring.thread_event_log(settings), "t", "x"))) == {
            "batchItemFailures": []
        }

        wire.assert_no_pending_responses()


def test_a_connection_opened_with_a_rotated_out_secret_closes_when_the_grace_ends(
    client: TestClient, settings: Settings, user_key: dict[str, str]
) -> None:
    """Rotation keeps the previous secret working for its grace, open connections included; at the
    grace's end those opened with it close, and those opened with the new secret stay."""
    wire, clock = Wire(), Clock()
    wall = Clock()
    wall.now = time.time()
    keys: Callable[[], Any] = lambda: wiring.key_service(settings, monotonic=clock, wall=wall)  # noqa: E731
    service = wiring.subscription_service(settings, poster=wire, keys=keys(), close=wire.close)
    fanout = wiring.fanout(settings, poster=wire, keys=keys(), close=wire.close)
    log = wiring.thread_event_log(settings)
    service.connect("old", f"Bearer {user_key['key']}")
    rotated = client.post(
        f"/prompt-svc/keys/{user_key['keyId']}/rotate",
        json={"graceSeconds": 600},
        headers=auth(user_key["key"]),
    )
    assert rotated.status_code == 200, rotated.text
    service.connect("new", f"Bearer {rotated.json()['key']}")
    for connection_id in ("old", "new"):
        service.message(connection_id, '{"action": "subscribe", "threadId": "t"}')

    within = event(log, "t", "within the grace")
    assert sorted(fanout.publish(within).delivered) == ["new", "old"]

    wall.now += 601  # the grace is over: no key cache outlives it
    clock.now += 1
    after = event(log, "t", "after the grace")
    report = fanout.publish(after)

    assert report.delivered == ["new"]
    assert report.outcomes["old"] == "revoked"
    assert wire.closed == ["old"]
    assert after.wire() in wire.frames["new"] and after.wire() not in wire.frames["old"]
    service.message("new", '{"action": "ping"}')
    assert wire.frames["new"][-1] == {"type": "pong"}
