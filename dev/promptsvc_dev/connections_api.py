"""The local WebSocket gateway's `@connections` callback API (`WEBSOCKET_ENDPOINT`), on Starlette.

What API Gateway's management API answers, for the connections `ws_gateway` holds:
`POST /@connections/{id}` sends the body to that client as one message (in the order posted; a
body over 128 KB is a 413), `GET` describes the connection, `DELETE` closes it; an unknown or
closed connection is a 410 `GoneException`. Errors have the REST-JSON shape (`x-amzn-ErrorType`,
`{"message": ...}`), so a boto3 `apigatewaymanagementapi` client raises exactly what it raises
against AWS. A stage prefix (`/local/@connections/...`, what an endpoint URL ending in the stage
sends) is accepted too. No signature is checked.

`CallbackServer` serves the app with uvicorn on its own socket, in the gateway's event loop, so a
post reaches the client's socket without crossing threads.
"""

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

MESSAGE_LIMIT = 128 * 1024  # API Gateway: a WebSocket message is at most 128 KB


@dataclass
class Client:
    """One open WebSocket connection, as the `@connections` API sees it."""

    connection_id: str
    socket: ServerConnection
    source_ip: str
    user_agent: str
    connected_at: int  # epoch ms
    last_active_at: int = field(default=0)
    open: bool = True

    def touch(self) -> None:
        self.last_active_at = int(time.time() * 1000)


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def api_response(status: int, body: bytes = b"", **headers: str) -> Response:
    headers = {"x-amzn-RequestId": str(uuid.uuid4()), **headers}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def api_error(status: int, error_type: str, message: str) -> Response:
    body = json.dumps({"message": message}).encode()
    return api_response(status, body, **{"x-amzn-ErrorType": error_type})


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None past `limit` bytes (read to the end, but not kept)."""
    body = bytearray()
    async for chunk in request.stream():
        if len(body) <= limit:
            body += chunk
    return None if len(body) > limit else bytes(body)


class ConnectionsApi:
    """The `@connections` API over `clients` (the gateway's open connections, by id)."""

    def __init__(self, clients: dict[str, Client], faults: Callable[[], str] | None = None) -> None:
        self.clients = clients
        self.faults = faults  # chaos: per post, "gone" (a 410), "drop" (the client too), or ""

    def app(self) -> Starlette:
        methods = ["GET", "POST", "DELETE"]
        routes = [
            Route("/@connections/{connection_id}", self._connection, methods=methods),
            Route("/{stage}/@connections/{connection_id}", self._connection, methods=methods),
        ]
        handlers = {404: self._not_found, 405: self._not_allowed}
        return Starlette(routes=routes, exception_handlers=handlers)

    @staticmethod
    async def _not_found(request: Request, exc: Exception) -> Response:
        return api_error(426, "UpgradeRequired", "this is a WebSocket API: connect with ws://")

    @staticmethod
    async def _not_allowed(request: Request, exc: Exception) -> Response:
        return api_error(405, "MethodNotAllowedException", f"{request.method} is not allowed on @connections")

    async def _connection(self, request: Request) -> Response:
        connection_id = request.path_params["connection_id"]
        client = self.clients.get(connection_id)
        if client is None or not client.open:
            return api_error(410, "GoneException", f"connection {connection_id} is gone")
        if request.method == "POST":
            return await self._post(client, request)
        if request.method == "DELETE":
            client.open = False
            # Closing waits for the client's close frame; answer at once, as AWS does.
            asyncio.get_running_loop().create_task(client.socket.close(CloseCode.NORMAL_CLOSURE, "Goodbye"))
            return api_response(204)
        description = {  # the wire names (boto3 shows them as ConnectedAt, Identity.SourceIp, ...)
            "connectedAt": _iso(client.connected_at),
            "lastActiveAt": _iso(client.last_active_at),
            "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
        }
        return api_response(200, json.dumps(description).encode())

    async def _post(self, client: Client, request: Request) -> Response:
        body = await _read_body(request, MESSAGE_LIMIT)
        if body is None:
            return api_error(413, "PayloadTooLargeException", "Message too long")
        try:
            message: str | bytes = body.decode()
        except UnicodeDecodeError:
            message = body
        gone = f"connection {client.connection_id} is gone"
        fault = self.faults() if self.faults is not None else ""
        if fault == "drop":  # the client's network went away
            client.open = False
            client.socket.transport.abort()
        if fault:
            return api_error(410, "GoneException", f"{gone} (chaos: {fault})")
        try:
            await client.socket.send(message)
        except ConnectionClosed:
            client.open = False
            return api_error(410, "GoneException", gone)
        return api_response(200)


class CallbackServer:
    """uvicorn serving an ASGI app on `host`:`port` (0: a free one) in the running event loop."""

    def __init__(self, app: Starlette, host: str, port: int = 0) -> None:
        self.socket = socket.create_server((host, port))  # bound now: a busy port fails here
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,  # the process's logging as it is
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.socket]))
        while not self.server.started:
            if self._task.done():
                self.socket.close()
                self._task.result()  # raises why it did not start
                raise RuntimeError("the @connections API did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            self.socket.close()
            return
        self.server.should_exit = True
        await self._task
        self._task = None
