"""What API Gateway's WebSocket API does, for the local stack and tests.

One port on 127.0.0.1 serves both sides of the API, as API Gateway does:

- clients connect with `ws://127.0.0.1:PORT/?token=KEY` (or an `Authorization` header). The gateway
  gives the connection an id, calls the handler with a `$connect` event of the real shape before it
  answers the HTTP upgrade, and refuses the upgrade with the handler's status when that is not 2xx;
  each text message becomes a `MESSAGE` event on the route the template's
  `RouteSelectionExpression` (`$request.body.action`) picks among the template's routes (else
  `$default`); a close becomes a `$disconnect` event;
- the `@connections` callback API the handlers post to (`WEBSOCKET_ENDPOINT`):
  `POST /@connections/{id}` sends the body to that client as one message (in the order posted),
  `GET` describes the connection, `DELETE` closes it; an unknown or closed connection is a 410
  `GoneException` in the REST-JSON error shape, so a boto3 `apigatewaymanagementapi` client raises
  exactly what it raises against AWS. A stage prefix (`/local/@connections/...`, what an endpoint
  URL ending in the stage sends) is accepted too. The callback API checks no signature.

The `websockets` asyncio server runs in its own thread and event loop; handlers run in worker
threads, so a handler that posts back to its own connection never blocks the loop. websockets reads
only handshake requests (no body), so each connection's HTTP parser is swapped for one that also
reads a request body; requests that are not WebSocket upgrades are answered from `process_request`
(one request per TCP connection, `Connection: close`).
"""

import asyncio
import base64
import concurrent.futures
import contextlib
import email.utils
import http
import json
import os
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from aws_lambda_powertools import Logger
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.frames import CloseCode
from websockets.http11 import Request, Response, parse_headers, parse_line
from websockets.protocol import CONNECTING, Protocol
from websockets.server import ServerProtocol

from promptsvc_dev.functions import LambdaContext

logger = Logger(child=True)

Handler = Callable[[dict[str, Any], Any], Any]

HOST = "127.0.0.1"
MESSAGE_LIMIT = 128 * 1024  # API Gateway: a WebSocket message is at most 128 KB
CONNECT_TIMEOUT = 29.0  # the integration timeout: a $connect that takes longer fails
_CONNECTIONS_PATH = re.compile(r"^(?:/[^/]+)?/@connections/([^/]+)/?$")
_ID_ALPHABET = string.ascii_lowercase + string.digits


def template_routes(template: dict[str, Any]) -> tuple[str, list[str]]:
    """The WebSocket API's `RouteSelectionExpression` and route keys, from template.yaml."""
    resources = template.get("Resources", {})
    apis = {
        logical: resource.get("Properties", {})
        for logical, resource in resources.items()
        if resource.get("Type") == "AWS::ApiGatewayV2::Api"
        and resource.get("Properties", {}).get("ProtocolType") == "WEBSOCKET"
    }
    if not apis:
        raise ValueError("template.yaml declares no WebSocket API (AWS::ApiGatewayV2::Api, WEBSOCKET)")
    logical, api = next(iter(apis.items()))
    routes = [
        resource["Properties"]["RouteKey"]
        for resource in resources.values()
        if resource.get("Type") == "AWS::ApiGatewayV2::Route"
        and resource.get("Properties", {}).get("ApiId") in ({"Ref": logical}, logical)
    ]
    return api.get("RouteSelectionExpression", "$request.body.action"), routes


def connection_id() -> str:
    """An id shaped like API Gateway's: 16 base64 characters ending in '=' (URL-safe: it is a path label)."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def _request_time(epoch: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _status(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 500


@dataclass
class _Client:
    connection_id: str
    socket: ServerConnection
    source_ip: str
    user_agent: str
    connected_at: int  # epoch ms
    last_active_at: int = field(default=0)
    open: bool = True

    def touch(self) -> None:
        self.last_active_at = int(time.time() * 1000)


# -- HTTP requests with a body -----------------------------------------------------------------


class _HttpServerProtocol(ServerProtocol):
    """websockets' server protocol, reading the request's method and body too (for `@connections`)."""

    http_method = "GET"
    http_body = b""

    def parse(self) -> Generator[None]:
        if self.state is CONNECTING:
            try:
                request = yield from self._parse_request()
            except Exception as exc:
                self.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
                self.handshake_exc.__cause__ = exc
                self.send_eof()
                self.parser = self.discard()
                next(self.parser)
                yield
            self.events.append(request)
        yield from Protocol.parse(self)

    def _parse_request(self) -> Generator[None, None, Request]:
        line = yield from parse_line(self.reader.read_line)
        method, path, protocol = line.decode("ascii").split(" ", 2)
        if protocol not in ("HTTP/1.1", "HTTP/1.0"):
            raise ValueError(f"unsupported protocol {protocol!r}")
        headers = yield from parse_headers(self.reader.read_line)
        if "Transfer-Encoding" in headers:
            raise NotImplementedError("transfer codings are not supported")
        length = int(headers.get("Content-Length", "0") or "0")
        if length > 2 * MESSAGE_LIMIT:
            raise ValueError(f"request body too large: {length} bytes")
        self.http_method = method
        if length and headers.get("Expect", "").lower() == "100-continue":  # curl, for bodies over 1 KB
            self.writes.append(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.http_body = bytes((yield from self.reader.read_exact(length))) if length else b""
        return Request(path, headers)


class _GatewayConnection(ServerConnection):
    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # Nothing has been received yet: restart the parser as the one that also reads bodies.
        protocol.__class__ = _HttpServerProtocol
        protocol.parser = protocol.parse()
        next(protocol.parser)
        super().__init__(protocol, *args, **kwargs)
        self.client: _Client | None = None


def _response(
    status: int, body: bytes = b"", content_type: str = "application/json", **headers: str
) -> Response:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:  # a status a handler made up
        phrase = ""
    all_headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            *headers.items(),
        ]
    )
    return Response(status, phrase, all_headers, body)


def _error(status: int, error_type: str, message: str) -> Response:
    body = json.dumps({"message": message}).encode()
    return _response(status, body, **{"x-amzn-ErrorType": error_type})


class WebSocketGateway:
    """A local API Gateway WebSocket API in front of one handler, with its `@connections` API."""

    def __init__(
        self,
        handler: Handler,
        *,
        routes: list[str],
        route_selection_expression: str = "$request.body.action",
        port: int = 0,
        stage: str = "local",
        function_name: str = "WsFunction",
        faults: Callable[[], str] | None = None,
    ) -> None:
        self.handler = handler
        self.faults = faults  # chaos: per post, "gone" (a 410), "drop" (the client too), or ""
        self.routes = list(routes)
        self.selection_path = self._selection_path(route_selection_expression)
        self.port = port
        self.stage = stage
        self.function_name = function_name
        self.api_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
        self._clients: dict[str, _Client] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="ws-handler"
        )

    @classmethod
    def from_template(cls, template: dict[str, Any], handler: Handler, **kwargs: Any) -> "WebSocketGateway":
        expression, routes = template_routes(template)
        return cls(handler, routes=routes, route_selection_expression=expression, **kwargs)

    @staticmethod
    def _selection_path(expression: str) -> list[str]:
        prefix = "$request.body."
        if not expression.startswith(prefix):
            raise ValueError(f"unsupported RouteSelectionExpression {expression!r}")
        return expression[len(prefix) :].split(".")

    @property
    def url(self) -> str:
        """Where clients connect (add `?token=KEY`)."""
        return f"ws://{HOST}:{self.port}/"

    @property
    def endpoint(self) -> str:
        """The `@connections` API endpoint: what WEBSOCKET_ENDPOINT is locally."""
        return f"http://{HOST}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="ws-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the WebSocket gateway did not start")
        if self._error is not None:
            raise RuntimeError(
                f"the WebSocket gateway could not listen on {HOST}:{self.port}"
            ) from self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_default_executor(self._executor)
        self._loop = loop
        try:
            self._server = loop.run_until_complete(self._serve())
        except BaseException as error:
            self._error = error
            self._ready.set()
            loop.close()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> Server:
        return await serve(
            self._on_open,
            HOST,
            self.port,
            process_request=self._process_request,
            create_connection=_GatewayConnection,
            max_size=MESSAGE_LIMIT,
            open_timeout=CONNECT_TIMEOUT + 1,
            compression=None,
            server_header=None,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection (each gets its `$disconnect`), then stop listening."""
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return

        async def shutdown() -> None:
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), timeout)
            except TimeoutError:
                logger.warning("WebSocket connections did not close in time")

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout + 1)
        except Exception:
            logger.exception("stopping the WebSocket gateway failed")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._server = None

    # -- the HTTP side: upgrades ($connect) and the @connections API ---------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        protocol = connection.protocol
        method = getattr(protocol, "http_method", "GET")
        path = unquote(urlsplit(request.path).path)
        match = _CONNECTIONS_PATH.match(path)
        if match:
            body = getattr(protocol, "http_body", b"")
            return await self._manage(method, match.group(1), body)
        if method != "GET" or "websocket" not in request.headers.get("Upgrade", "").lower():
            return _error(426, "UpgradeRequired", "this is a WebSocket API: connect with ws://")
        handshake = protocol.accept(request)  # validates the upgrade before $connect, as AWS does
        if handshake.status_code != 101:
            return handshake
        assert isinstance(connection, _GatewayConnection)
        return await self._connect(connection, request, handshake)

    async def _connect(
        self, connection: _GatewayConnection, request: Request, handshake: Response
    ) -> Response:
        now = time.time()
        source_ip = str(connection.remote_address[0]) if connection.remote_address else HOST
        client = _Client(
            connection_id=connection_id(),
            socket=connection,
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent", ""),
            connected_at=int(now * 1000),
        )
        client.touch()
        if "$connect" in self.routes:
            event = self._connect_event(client, request, now)
            try:
                result = await asyncio.wait_for(self._invoke(event), CONNECT_TIMEOUT)
            except Exception:
                logger.exception("the $connect handler failed", connection_id=client.connection_id)
                return _error(500, "InternalServerErrorException", "Internal server error")
            status = _status(result.get("statusCode", 200)) if isinstance(result, dict) else 200
            if not 200 <= status < 300:
                text = result.get("body") if isinstance(result, dict) else None
                body = (text if isinstance(text, str) else f"connection refused ({status})").encode()
                return _response(status, body, "text/plain; charset=utf-8")
        connection.client = client  # reachable through @connections once open, as in AWS
        return handshake

    async def _manage(self, method: str, connection_id: str, body: bytes) -> Response:
        client = self._clients.get(connection_id)
        if client is None or not client.open:
            return _error(410, "GoneException", f"connection {connection_id} is gone")
        if method == "POST":
            if len(body) > MESSAGE_LIMIT:
                return _error(413, "PayloadTooLargeException", "Message too long")
            try:
                text = body.decode()
            except UnicodeDecodeError:
                message: str | bytes = body
            else:
                message = text
            fault = self.faults() if self.faults is not None else ""
            if fault == "drop":  # the client's network went away
                client.open = False
                client.socket.transport.abort()
            if fault:
                return _error(410, "GoneException", f"connection {connection_id} is gone (chaos: {fault})")
            try:
                await client.socket.send(message)
            except ConnectionClosed:
                client.open = False
                return _error(410, "GoneException", f"connection {connection_id} is gone")
            return _response(200, b"")
        if method == "GET":
            description = {  # the wire names (boto3 shows them as ConnectedAt, Identity.SourceIp, ...)
                "connectedAt": _iso(client.connected_at),
                "lastActiveAt": _iso(client.last_active_at),
                "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
            }
            return _response(200, json.dumps(description).encode())
        if method == "DELETE":
            client.open = False
            # Closing waits for the client's close frame; answer at once, as AWS does.
            asyncio.get_running_loop().create_task(client.socket.close(CloseCode.NORMAL_CLOSURE, "Goodbye"))
            return _response(204)
        return _error(405, "MethodNotAllowedException", f"{method} is not allowed on @connections")

    # -- the WebSocket side: messages and $disconnect ---------------------------------------------

    async def _on_open(self, connection: ServerConnection) -> None:
        assert isinstance(connection, _GatewayConnection) and connection.client is not None
        client = connection.client
        self._clients[client.connection_id] = client
        try:
            async for message in connection:
                client.touch()
                await self._message(client, message)
        except ConnectionClosed:
            pass
        finally:
            client.open = False
            self._clients.pop(client.connection_id, None)
            if "$disconnect" in self.routes:
                event = self._disconnect_event(client, connection)
                try:
                    await self._invoke(event)
                except Exception:
                    logger.exception("the $disconnect handler failed", connection_id=client.connection_id)

    async def _message(self, client: _Client, message: str | bytes) -> None:
        binary = isinstance(message, bytes)
        route = "$default" if isinstance(message, bytes) else self._select_route(message)
        context = self._context(client, route, "MESSAGE", time.time())
        if route is None:
            await self._send_error(client, "Forbidden", context["requestId"])
            return
        context["messageId"] = base64.urlsafe_b64encode(os.urandom(11)).decode()
        event = {
            "requestContext": context,
            "body": base64.b64encode(message).decode() if isinstance(message, bytes) else message,
            "isBase64Encoded": binary,
        }
        try:
            result = await self._invoke(event)
        except Exception:
            logger.exception("the handler failed", connection_id=client.connection_id, route=route)
            await self._send_error(client, "Internal server error", context["requestId"])
            return
        if isinstance(result, dict) and not 200 <= _status(result.get("statusCode", 200)) < 300:
            logger.info("the handler answered an error", route=route, status=result.get("statusCode"))

    def _select_route(self, text: str) -> str | None:
        """`$request.body.action`: the body's value if it names a route, else `$default` (if any)."""
        try:
            value: Any = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser: `$default`
            value = None
        for name in self.selection_path:  # a missing key selects nothing (API Gateway: `$default`)
            value = value.get(name) if isinstance(value, dict) else None
        if isinstance(value, str) and not value.startswith("$") and value in self.routes:
            return value
        return "$default" if "$default" in self.routes else None

    async def _send_error(self, client: _Client, message: str, request_id: str) -> None:
        frame = {"message": message, "connectionId": client.connection_id, "requestId": request_id}
        with contextlib.suppress(ConnectionClosed):
            await client.socket.send(json.dumps(frame))

    async def _invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(function_name=self.function_name)
        return await asyncio.get_running_loop().run_in_executor(None, self.handler, event, context)

    # -- events --------------------------------------------------------------------------------

    def _context(self, client: _Client, route: str | None, event_type: str, now: float) -> dict[str, Any]:
        return {
            "routeKey": route,
            "eventType": event_type,
            "extendedRequestId": base64.urlsafe_b64encode(os.urandom(6)).decode(),
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": client.connected_at,
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
            "requestId": str(uuid.uuid4()),
            "domainName": f"{HOST}:{self.port}",
            "connectionId": client.connection_id,
            "apiId": self.api_id,
        }

    def _connect_event(self, client: _Client, request: Request, now: float) -> dict[str, Any]:
        multi: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            multi.setdefault(name, []).append(value)
        forwarded = {
            "X-Forwarded-For": [client.source_ip],
            "X-Forwarded-Port": [str(self.port)],
            "X-Forwarded-Proto": ["http"],
        }
        for name, values in forwarded.items():
            multi.setdefault(name, values)
        event: dict[str, Any] = {
            "headers": {name: values[-1] for name, values in multi.items()},
            "multiValueHeaders": multi,
            "requestContext": self._context(client, "$connect", "CONNECT", now),
            "isBase64Encoded": False,
        }
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(urlsplit(request.path).query, keep_blank_values=True):
            query.setdefault(name, []).append(value)
        if query:
            event["queryStringParameters"] = {name: values[-1] for name, values in query.items()}
            event["multiValueQueryStringParameters"] = query
        return event

    def _disconnect_event(self, client: _Client, connection: ServerConnection) -> dict[str, Any]:
        context = self._context(client, "$disconnect", "DISCONNECT", time.time())
        context["disconnectStatusCode"] = connection.close_code or CloseCode.ABNORMAL_CLOSURE
        context["disconnectReason"] = connection.close_reason or ""
        headers = {"Host": f"{HOST}:{self.port}", "X-Forwarded-For": client.source_ip}
        return {
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "requestContext": context,
            "isBase64Encoded": False,
        }
