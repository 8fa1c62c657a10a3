"""The request body's bounds, enforced in the app (so Lambda behind Mangum gets them as uvicorn does).

The body is read whole before any route runs, counting bytes as they arrive: a declared
Content-Length over the limit, a chunked body, or a body that is longer than it said, all stop at the
limit with a 413; a client that stops sending before its body is complete gets a 408 after
`read_seconds` instead of holding a request open. Both answers close the connection.
"""

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptsvc.api import errors

MAX_BODY_BYTES = 1024 * 1024
BODY_READ_SECONDS = 10.0


class BodyLimit:
    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, read_seconds: float = BODY_READ_SECONDS
    ) -> None:
        self.app = app
        self.limit = limit
        self.read_seconds = read_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send, 413, f"request body is larger than {self.limit} bytes")
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.read_seconds)
        except TimeoutError:
            message = f"the request body was not received within {self.read_seconds:g} s"
            await self._refuse(scope, receive, send, 408, message)
            return
        if body is None:  # the client went away
            return
        if len(body) > self.limit:
            await self._refuse(scope, receive, send, 413, f"request body is larger than {self.limit} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or as much as passes the limit (None: disconnected)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > self.limit or not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        response = errors.error_response(status, message, scope.get("path", ""))
        response.headers["connection"] = "close"  # the rest of the body is never read
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` giving the body read in one message, then whatever the server sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
