"""Thread streams: the ws and stream handlers, invoked with the events/ payloads on moto.

moto's Management API has no real connections and never answers 410, so frames are checked with
botocore's Stubber on the very client the handlers post with: each expected post_to_connection
with its exact bytes, in order, and nothing more.
"""

import asyncio
import copy
import itertools
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from boto3.dynamodb.types import TypeSerializer
from botocore.stub import Stubber
from promptsvc import wiring
from promptsvc.adapters.connections_api import MAX_MESSAGE_BYTES, management_client, split
from promptsvc.adapters.thread_event_table import DynamoThreadEventLog, event_to_item
from promptsvc.domain.connections import Connection, ConnectionGone
from promptsvc.domain.keys import Role
from promptsvc.domain.names import scoped
from promptsvc.domain.thread_events import EventType, ThreadEvent
from promptsvc.settings import Settings
from promptsvc_dev.functions import LambdaContext, load_handler_module

from tests.conftest import ROOT

EVENTS = ROOT / "events"
CREATED = "2026-11-22T03:10:00.000000Z"
_sequence_numbers = itertools.count(4421584500000000017450439091)


def payload(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def ws(settings: Settings, keys: dict[str, str]) -> Any:
    return load_handler_module(ROOT, "ws")


@pytest.fixture
def stream(settings: Settings) -> Any:
    return load_handler_module(ROOT, "stream")


@pytest.fixture
def wire(settings: Settings) -> Iterator[Stubber]:
    """The Management API client the handlers post with, stubbed: expect frames, then run."""
    with Stubber(management_client(settings.websocket_endpoint)) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def log(settings: Settings) -> DynamoThreadEventLog:
    log = wiring.thread_event_log(settings)
    assert log is not None
    return log


@pytest.fixture
def store(settings: Settings) -> Any:
    return wiring.connection_store(settings)


def expect(stub: Stubber, connection_id: str, *frames: dict[str, Any]) -> None:
    for frame in frames:
        for data in split(frame):
            stub.add_response("post_to_connection", {}, {"ConnectionId": connection_id, "Data": data})


def expect_error(stub: Stubber, connection_id: str, frame: dict[str, Any], code: str, status: int) -> None:
    (data,) = split(frame)
    stub.add_client_error(
        "post_to_connection",
        service_error_code=code,
        http_status_code=status,
        expected_params={"ConnectionId": connection_id, "Data": data},
    )


def connect(ws: Any, connection_id: str, token: str | None = None, header: str | None = None) -> dict:
    event = payload("ws-connect.json")
    event["requestContext"]["connectionId"] = connection_id
    event["queryStringParameters"] = {"token": token} if token is not None else None
    event["multiValueQueryStringParameters"] = {"token": [token]} if token is not None else None
    if header is not None:
        event["headers"]["Authorization"] = header
        event["multiValueHeaders"]["Authorization"] = [header]
    return ws.lambda_handler(event, LambdaContext(function_name="WsFunction"))


def send(ws: Any, connection_id: str, body: dict[str, Any] | str) -> dict:
    event = payload("ws-subscribe.json")
    event["requestContext"]["connectionId"] = connection_id
    text = body if isinstance(body, str) else json.dumps(body)
    event["requestContext"]["routeKey"] = (
        body.get("action", "$default") if isinstance(body, dict) else "$default"
    )
    event["body"] = text
    return ws.lambda_handler(event, LambdaContext(function_name="WsFunction"))


def disconnect(ws: Any, connection_id: str) -> dict:
    event = payload("ws-disconnect.json")
    event["requestContext"]["connectionId"] = connection_id
    return ws.lambda_handler(event, LambdaContext(function_name="WsFunction"))


def subscribed(thread_id: str, after: int) -> dict[str, Any]:
    return {"type": "subscribed", "threadId": thread_id, "after": after}


def append(log: DynamoThreadEventLog, user: str, thread: str, n: int = 1, **fields: Any) -> list[ThreadEvent]:
    """Store n events of the user's prompt in the thread (deltas unless told otherwise)."""
    kind = fields.pop("type", EventType.DELTA)
    made = []
    for i in range(n):
        text = fields.get("text", f"t{i} " if kind is EventType.DELTA else None)
        event = ThreadEvent(thread, user, f"prm_{user}", kind, CREATED, **{**fields, "text": text})
        made.append(log.append(event))
    return made


def record(event: ThreadEvent, name: str = "INSERT") -> dict[str, Any]:
    """A DynamoDB stream record of the stored event, shaped as events/stream-dynamodb-batch.json."""
    serialize = TypeSerializer().serialize
    image = {k: serialize(v) for k, v in event_to_item(event, 1795317000).items()}
    made = copy.deepcopy(payload("stream-dynamodb-batch.json")["Records"][0])
    made["eventName"] = name
    made["dynamodb"].update(
        Keys={"threadKey": image["threadKey"], "seq": image["seq"]},
        SequenceNumber=str(next(_sequence_numbers)),
        SizeBytes=len(json.dumps(image)),
    )
    del made["dynamodb"]["NewImage"]
    if name == "REMOVE":  # what the TTL deletes: an old image, by the DynamoDB service
        made["dynamodb"]["OldImage"] = image
        made["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    else:
        made["dynamodb"]["NewImage"] = image
    return made


def run_stream(stream: Any, *records: dict[str, Any]) -> dict:
    return stream.lambda_handler({"Records": list(records)}, LambdaContext(function_name="StreamFunction"))


def live_subscriber(
    ws: Any, wire: Stubber, connection_id: str, key: str, thread: str, after: int = 0
) -> None:
    """Connect and subscribe to a thread with no events yet (or `after` its last one)."""
    assert connect(ws, connection_id, token=key) == {"statusCode": 200}
    expect(wire, connection_id, subscribed(thread, after))
    assert send(ws, connection_id, {"action": "subscribe", "threadId": thread}) == {"statusCode": 200}


# ---------------------------------------------------------------- $connect / $disconnect


def test_connect_accepts_the_key_of_the_token_query_parameter(
    ws: Any, store: Any, keys: dict[str, str]
) -> None:
    before = int(time.time())

    response = connect(ws, "conn-alice", token=keys["alice"])

    assert response == {"statusCode": 200}
    connection = store.get_connection("conn-alice")
    assert (connection.user_id, connection.role) == ("alice", Role.USER)
    assert before + 7200 <= connection.expires_at <= int(time.time()) + 7200


def test_connect_accepts_an_authorization_header(ws: Any, store: Any, keys: dict[str, str]) -> None:
    assert connect(ws, "conn-bob", header=f"Bearer {keys['bob']}") == {"statusCode": 200}
    assert connect(ws, "conn-admin", header=keys["admin"]) == {"statusCode": 200}  # a bare key too

    assert store.get_connection("conn-bob").user_id == "bob"
    assert store.get_connection("conn-admin").role is Role.ADMIN


@pytest.mark.parametrize(("token", "header"), [(None, None), ("not-a-key", None), (None, "Bearer psk_ab_cd")])
def test_connect_refuses_a_missing_or_unknown_key(
    ws: Any, store: Any, wire: Stubber, token: str | None, header: str | None
) -> None:
    response = connect(ws, "conn-x", token=token, header=header)

    assert response["statusCode"] == 401
    assert store.get_connection("conn-x") is None  # and nothing was posted (the stub has no response)


def test_the_example_connect_event_is_accepted_once_its_key_exists(settings: Settings) -> None:
    wiring.key_service(settings).bootstrap("devkey", "dev", Role.ADMIN)  # `promptsvc dev --api-key devkey`
    ws = load_handler_module(ROOT, "ws")

    assert ws.lambda_handler(payload("ws-connect.json"), LambdaContext()) == {"statusCode": 200}


def test_disconnect_deletes_the_connection_and_all_its_subscriptions(
    ws: Any, wire: Stubber, store: Any, keys: dict[str, str]
) -> None:
    live_subscriber(ws, wire, "conn-a", keys["alice"], "t1")
    expect(wire, "conn-a", subscribed("t2", 0))
    send(ws, "conn-a", {"action": "subscribe", "threadId": "t2"})
    live_subscriber(ws, wire, "conn-b", keys["alice"], "t1")

    assert disconnect(ws, "conn-a") == {"statusCode": 200}

    assert store.get_connection("conn-a") is None
    assert store.threads_of("conn-a") == []
    assert [s.connection_id for s in store.subscribers(scoped("alice", "t1"))] == ["conn-b"]
    assert store.subscribers(scoped("alice", "t2")) == []
    assert store.get_connection("conn-b") is not None


# ---------------------------------------------------------------- messages


def test_subscribe_to_an_own_thread_starts_after_its_last_event(
    ws: Any, wire: Stubber, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    append(log, "alice", "mine", 2)
    connect(ws, "conn-a", token=keys["alice"])
    expect(wire, "conn-a", subscribed("mine", 2))  # live only: nothing replayed

    assert send(ws, "conn-a", {"action": "subscribe", "threadId": "mine"}) == {"statusCode": 200}

    (subscription,) = store.subscribers(scoped("alice", "mine"))
    assert (subscription.connection_id, subscription.user_id, subscription.last_seq) == ("conn-a", "alice", 2)


def test_subscribe_with_after_replays_exactly_the_stored_events_after_it_in_order(
    ws: Any, wire: Stubber, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    stored = append(log, "alice", "thread-1", 5)
    connect(ws, "BqM3beKAoAMCJsQ=", token=keys["alice"])
    message = payload("ws-subscribe.json")
    message["body"] = json.dumps({"action": "subscribe", "threadId": "thread-1", "after": 2})
    expect(wire, "BqM3beKAoAMCJsQ=", subscribed("thread-1", 2), *(e.wire() for e in stored[2:]))

    assert ws.lambda_handler(message, LambdaContext()) == {"statusCode": 200}


def test_the_example_subscribe_event_replays_the_whole_thread(
    ws: Any, wire: Stubber, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    stored = append(log, "alice", "thread-1", 3)
    connect(ws, "BqM3beKAoAMCJsQ=", token=keys["alice"])
    expect(wire, "BqM3beKAoAMCJsQ=", subscribed("thread-1", 0), *(e.wire() for e in stored))

    assert ws.lambda_handler(payload("ws-subscribe.json"), LambdaContext()) == {"statusCode": 200}


def test_a_thread_id_another_user_uses_names_the_callers_own_thread_which_shows_nothing_of_theirs(
    ws: Any, stream: Any, wire: Stubber, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    stored = append(log, "alice", "alices", 3)
    connect(ws, "conn-b", token=keys["bob"])
    expect(wire, "conn-b", subscribed("alices", 0))  # bob's own (empty) thread: nothing replayed

    assert send(ws, "conn-b", {"action": "subscribe", "threadId": "alices", "after": 0}) == {
        "statusCode": 200
    }

    assert store.subscribers(scoped("alice", "alices")) == []
    (subscription,) = store.subscribers(scoped("bob", "alices"))
    assert (subscription.connection_id, subscription.last_seq) == ("conn-b", 0)
    (later,) = append(log, "alice", "alices")
    assert run_stream(stream, *(record(e) for e in [*stored, later])) == {"batchItemFailures": []}
    # and nothing was posted to bob (the stub has no response left)


def test_a_user_naming_another_users_thread_gets_an_error_frame_and_nothing_else(
    ws: Any, wire: Stubber, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    append(log, "alice", "alices", 3)
    connect(ws, "conn-b", token=keys["bob"])
    expect(
        wire,
        "conn-b",
        {
            "type": "error",
            "action": "subscribe",
            "error": "userId: only an admin may name another user's thread",
        },
    )

    body = {"action": "subscribe", "threadId": "alices", "userId": "alice", "after": 0}
    assert send(ws, "conn-b", body) == {"statusCode": 200}

    assert store.subscribers(scoped("alice", "alices")) == []
    assert store.threads_of("conn-b") == []


def test_a_user_may_name_themselves_as_the_owner(
    ws: Any, wire: Stubber, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    stored = append(log, "alice", "mine", 2)
    connect(ws, "conn-a", token=keys["alice"])
    expect(wire, "conn-a", subscribed("mine", 0), *(e.wire() for e in stored))

    send(ws, "conn-a", {"action": "subscribe", "threadId": "mine", "userId": "alice", "after": 0})


def test_an_admin_may_subscribe_to_any_users_thread_by_naming_the_user(
    ws: Any, stream: Any, wire: Stubber, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    stored = append(log, "alice", "alices", 2)
    connect(ws, "conn-admin", token=keys["admin"])
    expect(wire, "conn-admin", subscribed("alices", 0), *(e.wire() for e in stored))

    send(ws, "conn-admin", {"action": "subscribe", "threadId": "alices", "userId": "alice", "after": 0})

    (subscription,) = store.subscribers(scoped("alice", "alices"))
    assert (subscription.connection_id, subscription.last_seq) == ("conn-admin", 2)
    (live,) = append(log, "alice", "alices")  # and live events follow
    expect(wire, "conn-admin", live.wire())
    assert run_stream(stream, record(live)) == {"batchItemFailures": []}
    expect(wire, "conn-admin", {"type": "unsubscribed", "threadId": "alices"})
    send(ws, "conn-admin", {"action": "unsubscribe", "threadId": "alices", "userId": "alice"})
    assert store.subscribers(scoped("alice", "alices")) == []


def test_an_admin_naming_no_user_subscribes_to_their_own_thread(
    ws: Any, wire: Stubber, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    append(log, "alice", "alices", 2)
    connect(ws, "conn-admin", token=keys["admin"])
    expect(wire, "conn-admin", subscribed("alices", 0))  # the admin's own (empty) thread

    send(ws, "conn-admin", {"action": "subscribe", "threadId": "alices", "after": 0})

    assert store.subscribers(scoped("alice", "alices")) == []
    assert [s.connection_id for s in store.subscribers(scoped("admin", "alices"))] == ["conn-admin"]


def test_unsubscribe_stops_the_stream(
    ws: Any, stream: Any, wire: Stubber, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    live_subscriber(ws, wire, "conn-a", keys["alice"], "t")
    expect(wire, "conn-a", {"type": "unsubscribed", "threadId": "t"})

    assert send(ws, "conn-a", {"action": "unsubscribe", "threadId": "t"}) == {"statusCode": 200}

    assert store.subscribers("t") == []
    (event,) = append(log, "alice", "t")
    assert run_stream(stream, record(event)) == {"batchItemFailures": []}  # and nothing posted


def test_ping_gets_a_pong(ws: Any, wire: Stubber, keys: dict[str, str]) -> None:
    connect(ws, "conn-a", token=keys["alice"])
    expect(wire, "conn-a", {"type": "pong"})

    assert send(ws, "conn-a", {"action": "ping"}) == {"statusCode": 200}


@pytest.mark.parametrize(
    ("body", "action", "error"),
    [
        (
            "{not json",
            None,
            "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ('["ping"]', None, 'a message must be a JSON object such as {"action": "ping"}'),
        ('{"threadId": "t"}', None, "no action: use one of subscribe, unsubscribe, ping"),
        ('{"action": "dance"}', "dance", "unknown action 'dance': use one of subscribe, unsubscribe, ping"),
        (
            '{"action": "subscribe"}',
            "subscribe",
            "threadId must be a thread id (letters, digits and ._:@-, up to 128)",
        ),
        (
            '{"action": "subscribe", "threadId": "t", "after": -1}',
            "subscribe",
            "after must be a seq, 0 or more",
        ),
        (
            '{"action": "unsubscribe", "threadId": 7}',
            "unsubscribe",
            "threadId must be a thread id (letters, digits and ._:@-, up to 128)",
        ),
    ],
)
def test_a_bad_message_gets_an_error_frame_naming_the_problem(
    ws: Any, wire: Stubber, store: Any, keys: dict[str, str], body: str, action: str | None, error: str
) -> None:
    connect(ws, "conn-a", token=keys["alice"])
    expect(wire, "conn-a", {"type": "error", "action": action, "error": error})

    assert send(ws, "conn-a", body) == {"statusCode": 200}

    assert store.threads_of("conn-a") == []


def test_a_subscribe_whose_client_is_gone_forgets_the_connection(
    ws: Any, wire: Stubber, store: Any, keys: dict[str, str]
) -> None:
    connect(ws, "conn-a", token=keys["alice"])
    expect_error(wire, "conn-a", subscribed("t", 0), "GoneException", 410)

    assert send(ws, "conn-a", {"action": "subscribe", "threadId": "t"}) == {"statusCode": 200}

    assert store.get_connection("conn-a") is None
    assert store.subscribers("t") == []


# ---------------------------------------------------------------- the stream


def test_the_example_stream_batch_reaches_a_subscriber(
    ws: Any, stream: Any, wire: Stubber, keys: dict[str, str]
) -> None:
    batch = payload("stream-dynamodb-batch.json")
    live_subscriber(ws, wire, "conn-a", keys["alice"], "thread-1")
    expect(
        wire,
        "conn-a",
        {
            "seq": 1,
            "threadId": "thread-1",
            "promptId": "prm_events_example",
            "type": "status",
            "createdAt": "2026-11-22T03:10:00.123456Z",
            "status": "scheduled",
        },
        {
            "seq": 2,
            "threadId": "thread-1",
            "promptId": "prm_events_example",
            "type": "delta",
            "createdAt": "2026-11-22T03:10:00.845120Z",
            "text": "Bananas are",
        },
    )

    assert stream.lambda_handler(batch, LambdaContext()) == {"batchItemFailures": []}


def test_stream_fans_out_to_the_owners_connections_and_no_one_elses(
    ws: Any, stream: Any, wire: Stubber, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    live_subscriber(ws, wire, "conn-a1", keys["alice"], "t")
    live_subscriber(ws, wire, "conn-a2", keys["alice"], "t")
    live_subscriber(ws, wire, "conn-b", keys["bob"], "t")  # bob's own thread "t": another thread
    live_subscriber(ws, wire, "conn-b2", keys["bob"], "bobs")
    events = append(log, "alice", "t", 2)
    for event in events:
        expect(wire, "conn-a1", event.wire())
        expect(wire, "conn-a2", event.wire())

    assert run_stream(stream, *(record(e) for e in events)) == {"batchItemFailures": []}

    cursors = {s.connection_id: s.last_seq for s in store.subscribers(scoped("alice", "t"))}
    assert cursors == {"conn-a1": 2, "conn-a2": 2}
    assert [(s.connection_id, s.last_seq) for s in store.subscribers(scoped("bob", "t"))] == [("conn-b", 0)]


def test_ttl_removes_are_ignored(
    ws: Any, stream: Any, wire: Stubber, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    live_subscriber(ws, wire, "conn-a", keys["alice"], "t")
    (event,) = append(log, "alice", "t")

    assert run_stream(stream, record(event, name="REMOVE")) == {"batchItemFailures": []}


def test_a_duplicate_stream_record_is_delivered_once(
    ws: Any, stream: Any, wire: Stubber, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    live_subscriber(ws, wire, "conn-a", keys["alice"], "t")
    first, second = append(log, "alice", "t", 2)
    expect(wire, "conn-a", first.wire(), second.wire())

    assert run_stream(stream, record(first), record(first), record(second)) == {"batchItemFailures": []}
    assert run_stream(stream, record(first), record(second)) == {"batchItemFailures": []}


def test_a_gap_is_caught_up_from_the_log_in_order(
    ws: Any, stream: Any, wire: Stubber, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    live_subscriber(ws, wire, "conn-a", keys["alice"], "t")
    events = append(log, "alice", "t", 4)
    expect(wire, "conn-a", *(e.wire() for e in events))

    assert run_stream(stream, record(events[3]), record(events[1])) == {"batchItemFailures": []}


def test_a_gone_connection_is_forgotten_and_the_others_still_get_the_event(
    ws: Any, stream: Any, wire: Stubber, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    live_subscriber(ws, wire, "conn-a1", keys["alice"], "t")
    expect(wire, "conn-a1", subscribed("other", 0))
    send(ws, "conn-a1", {"action": "subscribe", "threadId": "other"})
    live_subscriber(ws, wire, "conn-a2", keys["alice"], "t")
    (event,) = append(log, "alice", "t")
    expect_error(wire, "conn-a1", event.wire(), "GoneException", 410)
    expect(wire, "conn-a2", event.wire())

    assert run_stream(stream, record(event)) == {"batchItemFailures": []}

    assert store.get_connection("conn-a1") is None
    assert store.threads_of("conn-a1") == [] and store.subscribers(scoped("alice", "other")) == []
    assert [s.connection_id for s in store.subscribers(scoped("alice", "t"))] == ["conn-a2"]
    assert store.get_connection("conn-a2") is not None


@pytest.mark.parametrize(
    ("code", "status"), [("InternalServerErrorException", 500), ("LimitExceededException", 429)]
)
def test_a_failed_post_fails_the_record_and_its_retry_reaches_only_the_connection_that_missed_it(
    ws: Any,
    stream: Any,
    wire: Stubber,
    store: Any,
    log: DynamoThreadEventLog,
    keys: dict[str, str],
    code: str,
    status: int,
) -> None:
    live_subscriber(ws, wire, "conn-a1", keys["alice"], "t")
    live_subscriber(ws, wire, "conn-a2", keys["alice"], "t")
    live_subscriber(ws, wire, "conn-a3", keys["alice"], "t")
    live_subscriber(ws, wire, "conn-a1", keys["alice"], "u")
    (event,) = append(log, "alice", "t")
    (other,) = append(log, "alice", "u")
    failing, fine = record(event), record(other)
    expect(wire, "conn-a1", event.wire())
    expect_error(wire, "conn-a2", event.wire(), code, status)
    expect(wire, "conn-a3", event.wire())
    expect(wire, "conn-a1", other.wire())

    response = run_stream(stream, failing, fine)

    assert response == {"batchItemFailures": [{"itemIdentifier": failing["dynamodb"]["SequenceNumber"]}]}
    cursors = {s.connection_id: s.last_seq for s in store.subscribers(scoped("alice", "t"))}
    assert cursors == {"conn-a1": 1, "conn-a2": 0, "conn-a3": 1}  # rolled back for conn-a2 only
    wire.assert_no_pending_responses()

    expect(wire, "conn-a2", event.wire())  # the stream's retry of the failed record (and what follows)
    assert run_stream(stream, failing, fine) == {"batchItemFailures": []}


def test_a_delta_over_128_kb_is_split_into_parts_that_concatenate_to_it(
    ws: Any, stream: Any, wire: Stubber, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    text = 'Bananas "are" berries; 香蕉 🍌\n\t' * 8000  # about 300 KB of JSON, escapes and UTF-8 included
    live_subscriber(ws, wire, "conn-a", keys["alice"], "t")
    (event,) = append(log, "alice", "t", text=text)
    frames = split(event.wire())
    for data in frames:
        wire.add_response("post_to_connection", {}, {"ConnectionId": "conn-a", "Data": data})

    assert run_stream(stream, record(event)) == {"batchItemFailures": []}

    parts = [json.loads(data) for data in frames]
    assert len(parts) >= 3
    assert all(len(data) <= MAX_MESSAGE_BYTES for data in frames)
    assert "".join(p["text"] for p in parts) == text
    assert [(p["seq"], p["part"], p["parts"]) for p in parts] == [
        (1, n, len(parts)) for n in range(1, len(parts) + 1)
    ]
    assert all(
        {k: v for k, v in p.items() if k not in ("text", "part", "parts")}
        == {k: v for k, v in event.wire().items() if k != "text"}
        for p in parts
    )


def test_split_leaves_a_small_message_whole_and_fills_parts_up_to_the_limit() -> None:
    small = {"seq": 1, "type": "delta", "text": "hi"}
    assert split(small) == [json.dumps(small, separators=(",", ":")).encode()]

    big = {"seq": 3, "threadId": "t", "type": "delta", "text": "é" * 5000 + '"' * 5000}
    frames = split(big, limit=4096)

    assert all(len(f) <= 4096 for f in frames) and all(len(f) > 3500 for f in frames[:-1])
    assert "".join(json.loads(f)["text"] for f in frames) == big["text"]


# ---------------------------------------------------------------- replay and live at once


class Client:
    """A fake Management API for the interleaving tests: records frames, and between frames lets
    the stream run (what another Lambda would do at that moment)."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.between: Callable[[], None] = lambda: None

    def post(self, connection_id: str, payload: dict[str, Any]) -> None:
        self.frames[connection_id].append(payload)
        self.between()


@pytest.mark.parametrize("seed", range(12))
def test_replay_and_live_delivery_at_once_give_each_connection_every_event_once_in_order(
    ws: Any, stream: Any, settings: Settings, log: DynamoThreadEventLog, keys: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    client = Client()
    # Here the "other Lambda" runs nested inside a post, so it can never wait out the claim that
    # post holds: it gives up at once and its record is retried, as the stream would retry it.
    settings = settings.model_copy(update={"claim_wait_seconds": 0})
    ws.service = wiring.subscription_service(settings, poster=client)
    stream.fanout = wiring.fanout(settings, poster=client)
    retried: list[dict[str, Any]] = []
    connections = ["conn-a1", "conn-a2"]
    for connection_id in connections:
        connect(ws, connection_id, token=keys["alice"])
    n = 8
    events = append(log, "alice", "t", n)
    # The stream delivers each event, some twice, in an order shuffled by retries; part of it runs
    # before the subscribes, the rest between the frames the replays post.
    deliveries = [*events, *rng.sample(events, 3)]
    rng.shuffle(deliveries)
    pending = iter(deliveries)

    def live(count: int) -> None:
        batch = [record(e) for e in itertools.islice(pending, count)]
        if batch:
            try:
                failed = {f["itemIdentifier"] for f in run_stream(stream, *batch)["batchItemFailures"]}
            except BatchProcessingError:  # every record failed: Lambda retries the whole batch
                failed = {r["dynamodb"]["SequenceNumber"] for r in batch}
            retried.extend(r for r in batch if r["dynamodb"]["SequenceNumber"] in failed)

    live(rng.randint(0, 3))
    client.between = lambda: live(rng.randint(0, 2))
    for connection_id in connections:
        send(ws, connection_id, {"action": "subscribe", "threadId": "t", "after": 0})
    client.between = lambda: None
    live(len(deliveries))
    if retried:  # the stream's retry of what was refused while a claim was held
        assert run_stream(stream, *retried) == {"batchItemFailures": []}

    for connection_id in connections:
        frames = client.frames[connection_id]
        assert frames[0] == subscribed("t", 0)
        assert [f["seq"] for f in frames[1:]] == list(range(1, n + 1)), (seed, connection_id)


def test_a_live_subscribe_racing_new_events_misses_none(
    ws: Any, stream: Any, settings: Settings, store: Any, log: DynamoThreadEventLog, keys: dict[str, str]
) -> None:
    """An event stored after the subscribe read the thread's last seq, and streamed before the
    subscription existed, is replayed by the subscribe itself."""
    client = Client()
    fanout = wiring.fanout(settings, poster=client)
    service = wiring.subscription_service(settings, poster=client)
    append(log, "alice", "t", 2)
    connect(ws, "conn-a", token=keys["alice"])
    late: list[ThreadEvent] = []

    def store_and_stream_one() -> None:  # runs when `subscribed` is posted
        client.between = lambda: None
        late.extend(append(log, "alice", "t"))
        assert fanout.publish(late[0]).outcomes == {}

    client.between = store_and_stream_one
    service.subscribe("conn-a", "t", None)

    assert client.frames["conn-a"] == [subscribed("t", 2), late[0].wire()]
    assert store.subscription(scoped("alice", "t"), "conn-a").last_seq == 3


def test_a_connection_of_another_user_on_the_fanout_sees_nothing(
    settings: Settings, store: Any, log: DynamoThreadEventLog
) -> None:
    """Defence in depth: a subscription of bob's on alice's thread key, however it came about (the
    subscribe action only ever gives bob his own threads)."""
    client = Client()
    fanout = wiring.fanout(settings, poster=client)
    bob = Connection("conn-b", "bob", Role.USER, 2_000_000_000)
    subscription = store.subscribe(bob, scoped("alice", "t"), 0)
    events = append(log, "alice", "t", 3)

    assert fanout.replay(subscription).last_seq == 3
    assert fanout.publish(events[-1]).outcomes == {"conn-b": "duplicate"}
    assert client.frames == {}


def test_connection_gone_names_the_connection() -> None:
    assert ConnectionGone("c1").connection_id == "c1"


def test_a_subscriber_of_a_retried_prompt_sees_the_reset(
    ws: Any, settings: Settings, keys: dict[str, str]
) -> None:
    """The consumer's own events for a failed-then-retried run, replayed to a subscriber."""
    from promptsvc.domain.keys import Principal, Role
    from promptsvc.domain.prompt import NewPrompt
    from promptsvc.engines.base import Delta, EngineError, Finish

    from tests.integration.helpers import EngineOf

    attempts = iter([EngineError("503 busy", retryable=True), None])

    async def flaky(request: Any) -> Any:
        yield Delta("first try ")
        failure = next(attempts)
        if failure:
            raise failure
        yield Delta("second try")
        yield Finish()

    service = wiring.prompt_service(settings)
    new = NewPrompt("hi", service.catalog.default_model_id, "{prompt}", "retried", 3, False, "prm-retried")
    service.add(Principal("alice", Role.USER, "k"), new, sync_wait=0)
    runner = wiring.prompt_runner(settings, {"mock": EngineOf(flaky)})
    asyncio.run(runner.run("prm-retried", user_id="alice"))
    asyncio.run(runner.run("prm-retried", user_id="alice"))
    client = Client()
    ws.service = wiring.subscription_service(settings, poster=client)
    connect(ws, "conn-r", token=keys["alice"])

    send(ws, "conn-r", {"action": "subscribe", "threadId": "retried", "after": 0})

    frames = client.frames["conn-r"][1:]
    kinds = [f["type"] if f["type"] != "status" else f["status"] for f in frames if f["type"] != "delta"]
    assert kinds == ["scheduled", "running", "errored", "reset", "running", "completed"]
    reset_at = next(i for i, f in enumerate(frames) if f["type"] == "reset")
    before = "".join(f["text"] for f in frames[:reset_at] if f["type"] == "delta")
    after = "".join(f["text"] for f in frames[reset_at:] if f["type"] == "delta")
    assert (before, after) == ("first try ", "first try second try")  # what a client shows: `after`
