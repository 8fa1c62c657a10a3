"""The local WebSocket API (`promptsvc_dev.ws_gateway`) with stand-in handlers, driven by a real
`websockets` client and a real boto3 `apigatewaymanagementapi` client; and the DynamoDB stream pump
(`promptsvc_dev.stream_source`) on a moto server, as `promptsvc dev` runs them."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from promptsvc.adapters import clients
from promptsvc_dev.dev import aws_environment, free_port
from promptsvc_dev.stream_source import DynamoStreamSource, lambda_record
from promptsvc_dev.template import create_resources, load_template
from promptsvc_dev.ws_gateway import WebSocketGateway, template_routes
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import TEMPLATE

GOOD = "good-key"
WAIT = 10.0


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


def management(endpoint: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class StandIn:
    """A ws handler like the real one: $connect checks the key; `subscribe` answers through the
    @connections API (from the handler's worker thread, as the real handler does)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.endpoint = ""

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self.lock:
            self.events.append(event)
        route = event["requestContext"]["routeKey"]
        if route == "$connect":
            token = (event.get("queryStringParameters") or {}).get("token")
            bearer = event["headers"].get("Authorization", "").removeprefix("Bearer ")
            if GOOD not in (token, bearer):
                return {"statusCode": 401, "body": "unauthorized"}
        if route == "subscribe":
            body = json.loads(event["body"])
            answer = {"subscribed": body.get("threadId")}
            management(self.endpoint).post_to_connection(
                ConnectionId=event["requestContext"]["connectionId"], Data=json.dumps(answer).encode()
            )
        if route == "explode":
            raise RuntimeError("boom")
        return {"statusCode": 200}

    def routes(self) -> list[str | None]:
        with self.lock:
            return [e["requestContext"]["routeKey"] for e in self.events]

    def of(self, route: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["requestContext"]["routeKey"] == route]


@pytest.fixture
def handler() -> StandIn:
    return StandIn()


@pytest.fixture
def gateway(handler: StandIn) -> Iterator[WebSocketGateway]:
    gw = WebSocketGateway.from_template(load_template(TEMPLATE), handler)
    gw.start()
    handler.endpoint = gw.endpoint
    yield gw
    gw.stop()


@pytest.fixture
def api(gateway: WebSocketGateway) -> Any:
    return management(gateway.endpoint)


def open_client(gateway: WebSocketGateway, handler: StandIn, **kwargs: Any) -> tuple[ClientConnection, str]:
    """Connect with the good key; returns the socket and its connection id."""
    before = len(handler.of("$connect"))
    socket = connect(gateway.url + f"?token={GOOD}", open_timeout=WAIT, **kwargs)
    connects = wait_for(lambda: handler.of("$connect")[before:])
    return socket, connects[0]["requestContext"]["connectionId"]


# -- routes from the template --------------------------------------------------------------------


def test_routes_come_from_the_template() -> None:
    expression, routes = template_routes(load_template(TEMPLATE))
    assert expression == "$request.body.action"
    assert {"$connect", "$disconnect", "$default", "subscribe", "unsubscribe"} <= set(routes)


# -- $connect --------------------------------------------------------------------------------------


def test_connect_is_accepted_with_a_real_shaped_event(gateway: WebSocketGateway, handler: StandIn) -> None:
    socket, connection_id = open_client(gateway, handler)
    with socket:
        (event,) = handler.of("$connect")
        context = event["requestContext"]
        assert context["eventType"] == "CONNECT"
        assert context["stage"] == "local"
        assert context["identity"]["sourceIp"] == "127.0.0.1"
        assert len(connection_id) == 16 and connection_id.endswith("=")
        assert isinstance(context["connectedAt"], int) and isinstance(context["requestTimeEpoch"], int)
        for name in ("apiId", "requestId", "domainName"):
            assert context[name]
        assert event["queryStringParameters"] == {"token": GOOD}
        assert event["multiValueQueryStringParameters"] == {"token": [GOOD]}
        assert event["headers"]["Sec-WebSocket-Version"] == "13"
        assert event["multiValueHeaders"]["Sec-WebSocket-Version"] == ["13"]
        assert event["isBase64Encoded"] is False


def test_connect_with_an_authorization_header(gateway: WebSocketGateway, handler: StandIn) -> None:
    with connect(gateway.url, additional_headers={"Authorization": f"Bearer {GOOD}"}, open_timeout=WAIT):
        (event,) = handler.of("$connect")
        assert "queryStringParameters" not in event  # as API Gateway: absent when there is no query


def test_a_rejected_connect_refuses_the_upgrade(gateway: WebSocketGateway, handler: StandIn) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(gateway.url + "?token=wrong", open_timeout=WAIT)
    assert refused.value.response.status_code == 401
    assert handler.routes() == ["$connect"]  # never connected: no $disconnect either


def test_plain_http_is_not_a_connection(gateway: WebSocketGateway, handler: StandIn) -> None:
    websocket_port = gateway.url.replace("ws://", "http://")
    for origin in (websocket_port, gateway.endpoint + "/"):  # both sides: one host in AWS
        response = httpx.get(origin + "?token=" + GOOD, timeout=WAIT)
        assert response.status_code == 426
        assert response.headers["x-amzn-ErrorType"] == "UpgradeRequired"
    assert handler.events == []


# -- messages ------------------------------------------------------------------------------------


def test_messages_are_routed_by_action(gateway: WebSocketGateway, handler: StandIn) -> None:
    socket, connection_id = open_client(gateway, handler)
    with socket:
        sent = [
            json.dumps({"action": "unsubscribe", "threadId": "t1"}),
            json.dumps({"action": "no-such-route"}),
            "not json at all",
            json.dumps({"action": "$connect"}),  # a body cannot pick a $ route
            json.dumps(["action"]),
        ]
        for text in sent:
            socket.send(text)

        def messages_in() -> list[dict[str, Any]]:
            with handler.lock:
                return [e for e in handler.events if e["requestContext"]["eventType"] == "MESSAGE"]

        messages = wait_for(lambda: len(messages_in()) == len(sent) and messages_in())
    assert [e["requestContext"]["routeKey"] for e in messages] == [
        "unsubscribe", "$default", "$default", "$default", "$default",
    ]  # fmt: skip
    assert [e["body"] for e in messages] == sent  # the raw text, in order
    for event in messages:
        assert event["requestContext"]["connectionId"] == connection_id
        assert event["requestContext"]["messageId"]
        assert event["isBase64Encoded"] is False


def test_a_handler_answers_through_the_connections_api(gateway: WebSocketGateway, handler: StandIn) -> None:
    socket, _ = open_client(gateway, handler)
    with socket:
        socket.send(json.dumps({"action": "subscribe", "threadId": "t1"}))
        assert json.loads(socket.recv(timeout=WAIT)) == {"subscribed": "t1"}


def test_a_failing_handler_gets_the_client_an_error_frame(handler: StandIn) -> None:
    gw = WebSocketGateway(handler, routes=["$connect", "$disconnect", "explode"])  # and no $default
    gw.start()
    try:
        socket, connection_id = open_client(gw, handler)
        with socket:
            socket.send(json.dumps({"action": "explode"}))
            error = json.loads(socket.recv(timeout=WAIT))
            assert error["message"] == "Internal server error"
            assert error["connectionId"] == connection_id and error["requestId"]
            socket.send(json.dumps({"action": "anything"}))  # no route and no $default
            assert json.loads(socket.recv(timeout=WAIT))["message"] == "Forbidden"
    finally:
        gw.stop()


def test_close_sends_disconnect(gateway: WebSocketGateway, handler: StandIn) -> None:
    socket, connection_id = open_client(gateway, handler)
    socket.close()
    (event,) = wait_for(lambda: handler.of("$disconnect"))
    context = event["requestContext"]
    assert context["eventType"] == "DISCONNECT"
    assert context["connectionId"] == connection_id
    assert context["disconnectStatusCode"] == 1000


# -- the @connections API ----------------------------------------------------------------------


def test_posted_frames_reach_the_client_in_order(
    gateway: WebSocketGateway, handler: StandIn, api: Any
) -> None:
    socket, connection_id = open_client(gateway, handler)
    with socket:
        for i in range(20):
            api.post_to_connection(ConnectionId=connection_id, Data=json.dumps({"seq": i}).encode())
        received = [json.loads(socket.recv(timeout=WAIT)) for _ in range(20)]
    assert received == [{"seq": i} for i in range(20)]


def test_the_connections_api_over_plain_http(gateway: WebSocketGateway, handler: StandIn) -> None:
    """The wire: 410 `GoneException` for an unknown connection, 200 and one frame for a live one."""
    assert gateway.endpoint != gateway.url.replace("ws://", "http://").rstrip("/")  # a port of its own
    unknown = httpx.post(f"{gateway.endpoint}/@connections/bm9zdWNoY29ubmVj", content=b"x", timeout=WAIT)
    assert unknown.status_code == 410
    assert unknown.headers["x-amzn-ErrorType"] == "GoneException" and unknown.headers["x-amzn-RequestId"]
    assert "gone" in unknown.json()["message"]
    socket, connection_id = open_client(gateway, handler)
    with socket:
        url = f"{gateway.endpoint}/@connections/{connection_id}"
        posted = httpx.post(url, content=b'{"seq": 1}', timeout=WAIT)
        assert posted.status_code == 200
        assert socket.recv(timeout=WAIT) == '{"seq": 1}'  # UTF-8 posts arrive as text frames
        assert httpx.post(url, content=b"\xff\x00", timeout=WAIT).status_code == 200
        assert socket.recv(timeout=WAIT) == b"\xff\x00"  # others as binary frames
        refused = httpx.put(url, content=b"x", timeout=WAIT)
        assert refused.status_code == 405
        assert refused.headers["x-amzn-ErrorType"] == "MethodNotAllowedException"


def test_an_endpoint_with_the_stage_works_too(gateway: WebSocketGateway, handler: StandIn) -> None:
    socket, connection_id = open_client(gateway, handler)
    with socket:
        management(gateway.endpoint + "/local").post_to_connection(ConnectionId=connection_id, Data=b"hi")
        assert socket.recv(timeout=WAIT) == "hi"


def test_get_connection(gateway: WebSocketGateway, handler: StandIn, api: Any) -> None:
    socket, connection_id = open_client(gateway, handler)
    with socket:
        described = api.get_connection(ConnectionId=connection_id)
    assert described["Identity"]["SourceIp"] == "127.0.0.1"
    assert described["ConnectedAt"] <= described["LastActiveAt"]


def test_a_closed_connection_is_gone(gateway: WebSocketGateway, handler: StandIn, api: Any) -> None:
    socket, connection_id = open_client(gateway, handler)
    socket.close()
    wait_for(lambda: handler.of("$disconnect"))
    for call in (
        lambda: api.post_to_connection(ConnectionId=connection_id, Data=b"late"),
        lambda: api.get_connection(ConnectionId=connection_id),
        lambda: api.delete_connection(ConnectionId=connection_id),
    ):
        with pytest.raises(api.exceptions.GoneException) as gone:
            call()
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId="bm9zdWNoY29ubmVj", Data=b"x")


def test_delete_connection_closes_it(gateway: WebSocketGateway, handler: StandIn, api: Any) -> None:
    socket, connection_id = open_client(gateway, handler)
    with socket:
        api.delete_connection(ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=WAIT)
    (event,) = wait_for(lambda: handler.of("$disconnect"))
    assert event["requestContext"]["connectionId"] == connection_id
    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId=connection_id, Data=b"x")


def test_a_message_over_128_kb_is_refused(gateway: WebSocketGateway, handler: StandIn, api: Any) -> None:
    socket, connection_id = open_client(gateway, handler)
    with socket, pytest.raises(api.exceptions.PayloadTooLargeException):
        api.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024 + 1))


def test_stop_disconnects_every_client(handler: StandIn) -> None:
    gw = WebSocketGateway(handler, routes=["$connect", "$disconnect"])
    gw.start()
    socket, _ = open_client(gw, handler)
    gw.stop()
    assert len(handler.of("$disconnect")) == 1
    with pytest.raises(ConnectionClosed):
        socket.recv(timeout=WAIT)


# -- the DynamoDB stream pump ------------------------------------------------------------------


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on 127.0.0.1 (in-process `mock_aws` does not serve streams to a reader)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    httpx.post(f"{endpoint}/moto-api/reset")  # moto's state is per process, shared by its servers
    for name, value in aws_environment(endpoint).items():
        monkeypatch.setenv(name, value)
    clients.reset()
    yield endpoint
    clients.reset()
    httpx.post(f"{endpoint}/moto-api/reset")
    server.stop()


class StreamHandler:
    def __init__(self, fail: Callable[[list[dict[str, Any]]], Any] | None = None) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.fail = fail

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.batches.append(event["Records"])
        if self.fail is not None:
            return self.fail(event["Records"]) or {"batchItemFailures": []}
        return {"batchItemFailures": []}

    def seqs(self) -> list[list[int]]:
        return [[int(r["dynamodb"]["NewImage"]["seq"]["N"]) for r in batch] for batch in self.batches]


def put_event(table: str, seq: int, thread: str = "thr_1", owner: str = "alice") -> None:
    clients.client("dynamodb").put_item(
        TableName=table,
        Item={
            "threadKey": {"S": f"{owner}#{thread}"},  # threads are per user (domain.names.scoped)
            "threadId": {"S": thread},
            "userId": {"S": owner},
            "seq": {"N": str(seq)},
            "type": {"S": "delta"},
            "text": {"S": f"chunk {seq}"},
            "raw": {"B": b"\x00\x01"},
        },
    )


def test_a_put_reaches_the_stream_handler_in_the_lambda_shape(moto_server: str) -> None:
    stack = create_resources(TEMPLATE)
    table = stack.refs["ThreadEventsTable"]
    handler = StreamHandler()
    source = DynamoStreamSource(table, handler)
    put_event(table, 0)  # before start: LATEST does not see it
    source.start()
    try:
        put_event(table, 1)
        put_event(table, 2)
        wait_for(lambda: sum(len(b) for b in handler.batches) >= 2)
    finally:
        source.stop()
    records = [r for batch in handler.batches for r in batch]
    assert [int(r["dynamodb"]["NewImage"]["seq"]["N"]) for r in records] == [1, 2]
    record = records[0]
    assert record["eventSourceARN"] == stack.attributes[("ThreadEventsTable", "StreamArn")]
    assert record["eventSource"] == "aws:dynamodb" and record["eventName"] == "INSERT"
    created = record["dynamodb"]["ApproximateCreationDateTime"]
    assert isinstance(created, int) and abs(created - time.time()) < 60
    assert record["dynamodb"]["Keys"] == {"threadKey": {"S": "alice#thr_1"}, "seq": {"N": "1"}}
    assert record["dynamodb"]["NewImage"]["raw"] == {"B": "AAE="}  # base64, as in Lambda's JSON
    assert record["dynamodb"]["StreamViewType"] == "NEW_IMAGE"
    json.dumps(handler.batches)  # what Lambda hands a function is plain JSON


def test_reported_failures_are_retried_from_the_first_failed_record(moto_server: str) -> None:
    table = create_resources(TEMPLATE).refs["ThreadEventsTable"]
    calls = {"n": 0}

    def fail_seq_2_twice(records: list[dict[str, Any]]) -> dict[str, Any] | None:
        calls["n"] += 1
        if calls["n"] <= 2:
            (two,) = [r for r in records if r["dynamodb"]["NewImage"]["seq"]["N"] == "2"]
            return {"batchItemFailures": [{"itemIdentifier": two["dynamodb"]["SequenceNumber"]}]}
        return None

    handler = StreamHandler(fail_seq_2_twice)
    source = DynamoStreamSource(table, handler, retry_base_seconds=0.001)
    source.seek()
    for seq in (1, 2, 3):
        put_event(table, seq)
    assert source.drain() == 3
    assert handler.seqs() == [[1, 2, 3], [2, 3], [2, 3]]
    assert source.delivered == 3


def test_a_failing_batch_is_retried_then_sent_to_the_failure_queue(moto_server: str) -> None:
    stack = create_resources(TEMPLATE)
    table = stack.refs["ThreadEventsTable"]

    def explode(records: list[dict[str, Any]]) -> None:
        raise RuntimeError("handler bug")

    handler = StreamHandler(explode)
    queue = stack.refs["StreamFailuresQueue"]
    source = DynamoStreamSource(
        table, handler, maximum_retry_attempts=2, retry_base_seconds=0.001, on_failure_queue_url=queue
    )
    source.seek()
    put_event(table, 1)
    put_event(table, 2)
    source.drain()
    assert handler.seqs() == [[1, 2]] * 3  # the call and 2 retries
    put_event(table, 3)  # the shard moves on
    handler.fail = None
    source.drain()
    assert handler.seqs()[-1] == [3]
    (message,) = clients.client("sqs").receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    info = json.loads(message["Body"])
    assert info["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert info["DDBStreamBatchInfo"]["batchSize"] == 2
    assert info["DDBStreamBatchInfo"]["streamArn"] == source.stream_arn


def test_bisect_isolates_a_poison_record(moto_server: str) -> None:
    table = create_resources(TEMPLATE).refs["ThreadEventsTable"]

    def poison(records: list[dict[str, Any]]) -> None:
        if any(r["dynamodb"]["NewImage"]["seq"]["N"] == "2" for r in records):
            raise RuntimeError("poison")

    handler = StreamHandler(poison)
    source = DynamoStreamSource(
        table, handler, maximum_retry_attempts=3, bisect_on_error=True, retry_base_seconds=0.001
    )
    source.seek()
    for seq in (1, 2, 3, 4):
        put_event(table, seq)
    source.drain()
    delivered = [batch for batch in handler.seqs() if 2 not in batch]
    assert sorted(s for batch in delivered for s in batch) == [1, 3, 4]


def test_the_mapping_settings_come_from_the_template(moto_server: str) -> None:
    stack = create_resources(TEMPLATE)
    events = stack.template["Resources"]["StreamFunction"]["Properties"]["Events"]["ThreadEvents"]
    source = DynamoStreamSource.from_event_properties(
        stack.refs["ThreadEventsTable"], StreamHandler(), events["Properties"]
    )
    assert (source.batch_size, source.maximum_retry_attempts) == (100, 5)
    assert source.bisect_on_error and source.report_batch_item_failures


def test_lambda_record_converts_moto_records() -> None:
    from datetime import UTC, datetime

    record = {
        "eventID": "1",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            "Keys": {"k": {"S": "a"}},
            "NewImage": {"k": {"S": "a"}, "m": {"M": {"b": {"B": b"\xff"}}}, "l": {"L": [{"BS": [b"\x01"]}]}},
            "SequenceNumber": "1",
            "SizeBytes": 10,
            "StreamViewType": "NEW_IMAGE",
        },
    }
    out = lambda_record(record, "arn:stream")
    assert out["eventSourceARN"] == "arn:stream"
    assert out["dynamodb"]["ApproximateCreationDateTime"] == 1767323045
    assert out["dynamodb"]["NewImage"]["m"] == {"M": {"b": {"B": "/w=="}}}
    assert out["dynamodb"]["NewImage"]["l"] == {"L": [{"BS": ["AQ=="]}]}
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], datetime)  # the input is untouched


@pytest.mark.parametrize(
    "text", ["{}", '{"other": 1}', "[" * 10_000 + "]" * 10_000, '{"action": ' + "[" * 5000 + "]" * 5000 + "}"]
)
def test_a_message_naming_no_route_goes_to_default_and_the_socket_stays_open(
    gateway: WebSocketGateway, handler: StandIn, text: str
) -> None:
    socket, _ = open_client(gateway, handler)
    with socket:
        socket.send(text)
        (event,) = wait_for(lambda: handler.of("$default"))
        socket.send(json.dumps({"action": "subscribe", "threadId": "t1"}))
        assert json.loads(socket.recv(timeout=WAIT)) == {"subscribed": "t1"}  # still open
    assert event["body"] == text
