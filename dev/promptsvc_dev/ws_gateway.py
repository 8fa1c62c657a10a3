"""What API Gateway's WebSocket API does, for the local stack and tests.

Two ports on 127.0.0.1 serve the two sides of the API (one host in AWS):

- clients connect with `ws://127.0.0.1:PORT/?token=KEY` (or an `Authorization` header). The gateway
  gives the connection an id, calls the handler with a `$connect` event of the real shape before it
  answers the HTTP upgrade, and refuses the upgrade with the handler's status when that is not 2xx;
  each text message becomes a `MESSAGE` event on the route the template's
  `RouteSelectionExpression` (`$request.body.action`) picks among the template's routes (else
  `$default`); a close becomes a `$disconnect` event;
- the `@connections` callback API the handlers post to (`WEBSOCKET_ENDPOINT`, `endpoint`): a
  Starlette app under uvicorn on a port of its own (`connections_api`). `POST /@connections/{id}`
  sends the body to that client as one message, `GET` describes the connection, `DELETE` closes
  it; an unknown or closed connection is a 410 `GoneException`, as boto3 expects it.

The `websockets` asyncio server and the callback API run in one thread and event loop of their own;
handlers run in worker threads, so a handler that posts back to its own connection never blocks the
loop. Plain HTTP requests to the WebSocket port (not upgrades) are answered 426 from
`process_request`.
"""

import asyncio
import base64
import concurrent.futures
import contextlib
import email.utils
import http
import json
import os
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools import Logger
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from promptsvc_dev.connections_api import MESSAGE_LIMIT, CallbackServer, Client, ConnectionsApi
from promptsvc_dev.functions import LambdaContext

logger = Logger(child=True)

Handler = Callable[[dict[str, Any], Any], Any]

HOST = "127.0.0.1"
CONNECT_TIMEOUT = 29.0  # the integration timeout: a $connect that takes longer fails
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


def _status(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 500


class _GatewayConnection(ServerConnection):
    """A connection that carries its `Client` from the handshake ($connect) to the open socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client: Client | None = None


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


@dataclass
class _Events:
    """The API as its events describe it: the routes, the stage, the id, where clients connect."""

    routes: list[str]
    selection_path: list[str]  # `$request.body.action`: ["action"]
    stage: str
    api_id: str
    port: int = 0

    @classmethod
    def create(cls, routes: list[str], route_selection_expression: str, stage: str) -> "_Events":
        prefix = "$request.body."
        if not route_selection_expression.startswith(prefix):
            raise ValueError(f"unsupported RouteSelectionExpression {route_selection_expression!r}")
        api_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
        return cls(list(routes), route_selection_expression[len(prefix) :].split("."), stage, api_id)

    def select_route(self, text: str) -> str | None:
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

    def context(self, client: Client, route: str | None, event_type: str, now: float) -> dict[str, Any]:
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

    def connect_event(self, client: Client, request: Request, now: float) -> dict[str, Any]:
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
            "requestContext": self.context(client, "$connect", "CONNECT", now),
            "isBase64Encoded": False,
        }
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(urlsplit(request.path).query, keep_blank_values=True):
            query.setdefault(name, []).append(value)
        if query:
            event["queryStringParameters"] = {name: values[-1] for name, values in query.items()}
            event["multiValueQueryStringParameters"] = query
        return event

    def disconnect_event(self, client: Client, connection: ServerConnection) -> dict[str, Any]:
        context = self.context(client, "$disconnect", "DISCONNECT", time.time())
        context["disconnectStatusCode"] = connection.close_code or CloseCode.ABNORMAL_CLOSURE
        context["disconnectReason"] = connection.close_reason or ""
        headers = {"Host": f"{HOST}:{self.port}", "X-Forwarded-For": client.source_ip}
        return {
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "requestContext": context,
            "isBase64Encoded": False,
        }


class WebSocketGateway:
    """A local API Gateway WebSocket API in front of one handler, with its `@connections` API."""

    def __init__(
        self,
        handler: Handler,
        *,
        routes: list[str],
        route_selection_expression: str = "$request.body.action",
        port: int = 0,
        callback_port: int = 0,
        stage: str = "local",
        function_name: str = "WsFunction",
        faults: Callable[[], str] | None = None,
    ) -> None:
        self.handler = handler
        self.events = _Events.create(routes, route_selection_expression, stage)
        self.events.port = port
        self.callback_port = callback_port
        self.function_name = function_name
        self._clients: dict[str, Client] = {}
        self._api = ConnectionsApi(self._clients, faults)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._callback: CallbackServer | None = None
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

    @property
    def port(self) -> int:
        """Where clients connect (once started: the port taken, when asked for 0)."""
        return self.events.port

    @property
    def url(self) -> str:
        """Where clients connect (add `?token=KEY`)."""
        return f"ws://{HOST}:{self.port}/"

    @property
    def endpoint(self) -> str:
        """The `@connections` API endpoint: what WEBSOCKET_ENDPOINT is locally."""
        return f"http://{HOST}:{self.callback_port}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="ws-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the WebSocket gateway did not start")
        if self._error is not None:
            raise RuntimeError(
                f"the WebSocket gateway could not listen on {HOST}:{self.port} and {self.callback_port}"
            ) from self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_default_executor(self._executor)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:
            self._error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        """Listen on both ports (the WebSocket side first: its port, if free, is the one to take)."""
        self._server = await serve(
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
        self.events.port = self._server.sockets[0].getsockname()[1]
        try:
            self._callback = CallbackServer(self._api.app(), HOST, self.callback_port)
            await self._callback.start()
        except BaseException:
            self._server.close()
            await self._server.wait_closed()
            raise
        self.callback_port = self._callback.port

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection (each gets its `$disconnect`), then stop listening."""
        loop, server, callback = self._loop, self._server, self._callback
        if loop is None or server is None or callback is None or loop.is_closed():
            return

        async def shutdown() -> None:
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), timeout)
            except TimeoutError:
                logger.warning("WebSocket connections did not close in time")
            await callback.stop()  # after: the $disconnect handlers may still post

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout + 1)
        except Exception:
            logger.exception("stopping the WebSocket gateway failed")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._server = self._callback = None

    # -- the HTTP side: upgrades ($connect) ----------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return _error(426, "UpgradeRequired", "this is a WebSocket API: connect with ws://")
        handshake = connection.protocol.accept(request)  # validates the upgrade before $connect, as AWS does
        if handshake.status_code != 101:
            return handshake
        assert isinstance(connection, _GatewayConnection)
        return await self._connect(connection, request, handshake)

    async def _connect(
        self, connection: _GatewayConnection, request: Request, handshake: Response
    ) -> Response:
        now = time.time()
        source_ip = str(connection.remote_address[0]) if connection.remote_address else HOST
        client = Client(
            connection_id=connection_id(),
            socket=connection,
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent", ""),
            connected_at=int(now * 1000),
        )
        client.touch()
        if "$connect" in self.events.routes:
            event = self.events.connect_event(client, request, now)
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
            if "$disconnect" in self.events.routes:
                event = self.events.disconnect_event(client, connection)
                try:
                    await self._invoke(event)
                except Exception:
                    logger.exception("the $disconnect handler failed", connection_id=client.connection_id)

    async def _message(self, client: Client, message: str | bytes) -> None:
        binary = isinstance(message, bytes)
        route = "$default" if isinstance(message, bytes) else self.events.select_route(message)
        context = self.events.context(client, route, "MESSAGE", time.time())
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

    async def _send_error(self, client: Client, message: str, request_id: str) -> None:
        frame = {"message": message, "connectionId": client.connection_id, "requestId": request_id}
        with contextlib.suppress(ConnectionClosed):
            await client.socket.send(json.dumps(frame))

    async def _invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(function_name=self.function_name)
        return await asyncio.get_running_loop().run_in_executor(None, self.handler, event, context)
