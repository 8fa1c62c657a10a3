"""The WebSocket API's use cases: connect with an API key, subscribe to a thread (with replay),
unsubscribe, ping, disconnect.

Frames to the client (all JSON):
- `{"type": "subscribed", "threadId", "after"}`: events with seq > `after` follow, in order;
- `{"type": "unsubscribed", "threadId"}`, `{"type": "pong"}`;
- `{"type": "error", "action", "error"}`: the request was refused, nothing else happened;
- thread events, as `ThreadEvent.wire()`.
"""

import re
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from promptsvc.domain import bounded_json
from promptsvc.domain.bounded_json import JsonRejected
from promptsvc.domain.names import scoped
from promptsvc.domain.ports import (
    Connection,
    ConnectionGone,
    ConnectionStore,
    FramePoster,
    ThreadEventLog,
)
from promptsvc.domain.prompt import ID_PATTERN
from promptsvc.domain.thread_events import MAX_SEQ
from promptsvc.services.connection_keys import ConnectionKeys
from promptsvc.services.fanout import Fanout, Outcome, forget_connection
from promptsvc.services.keys import KeyService

logger = Logger(child=True)

ACTIONS = ("subscribe", "unsubscribe", "ping")
REVOKED = "the API key of this connection was revoked: the connection is closed"
_THREAD_ID = re.compile(ID_PATTERN)


class BadRequest(Exception):
    """A message the client must fix; `str()` is shown to it in an error frame."""


class SubscriptionService:
    def __init__(
        self,
        keys: KeyService,
        store: ConnectionStore,
        poster: FramePoster,
        log: ThreadEventLog,
        fanout: Fanout,
        last_seq: Callable[[str], int],
        *,
        connection_keys: ConnectionKeys,
        ttl_seconds: int = 7200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._store = store
        self._poster = poster
        self._log = log
        self._fanout = fanout
        self._last_seq = last_seq
        self._connection_keys = connection_keys
        self._ttl = ttl_seconds
        self._clock = clock

    def connect(self, connection_id: str, api_key: str | None) -> Connection:
        """Accept the handshake of a valid API key (Unauthorized otherwise) and remember who it is."""
        principal = self._keys.authenticate(api_key)
        connection = Connection(
            connection_id=connection_id,
            user_id=principal.user_id,
            role=principal.role,
            expires_at=int(self._clock()) + self._ttl,
            key_id=principal.key_id,
        )
        self._store.put_connection(connection)
        return connection

    def disconnect(self, connection_id: str) -> None:
        forget_connection(self._store, connection_id)

    def message(self, connection_id: str, body: str | None) -> None:
        """Handle one client message (any route but $connect/$disconnect): frames go back by post.
        A connection whose key was revoked gets an error frame, whatever it sent, and is closed."""
        if self._connection_keys.revoked(connection_id):
            self._send(connection_id, {"type": "error", "action": _action_of(body), "error": REVOKED})
            self._connection_keys.close(connection_id)
            return
        action: Any = None
        try:
            request = _parse(body)
            action = request.get("action")
            if action not in ACTIONS:
                problem = "no action" if action is None else f"unknown action {action!r}"
                raise BadRequest(f"{problem}: use one of {', '.join(ACTIONS)}")
            if action == "ping":
                self._send(connection_id, {"type": "pong"})
            elif action == "unsubscribe":
                self.unsubscribe(connection_id, _thread_id(request), _owner(request))
            else:
                self.subscribe(connection_id, _thread_id(request), _after(request), _owner(request))
        except BadRequest as error:
            named = action if isinstance(action, str) else None
            self._send(connection_id, {"type": "error", "action": named, "error": str(error)})

    def subscribe(
        self, connection_id: str, thread_id: str, after: int | None, owner: str | None = None
    ) -> None:
        """Follow one of the caller's threads (an admin may name another `owner`): `subscribed`,
        then the stored events after `after` (if given), then live ones, each once and in order."""
        connection = self._store.get_connection(connection_id)
        if connection is None:
            raise BadRequest("this connection is not known (it expired): connect again")
        key = _thread_key(connection, thread_id, owner)
        cursor = self._last_seq(key) if after is None else after
        # `subscribed` goes out before the subscription exists, so no event can overtake it.
        if not self._send(connection_id, {"type": "subscribed", "threadId": thread_id, "after": cursor}):
            return
        subscription = self._store.subscribe(connection, key, cursor)
        # Also when live only: events stored between reading the cursor and subscribing.
        delivery = self._fanout.replay(subscription)
        if delivery.outcome is Outcome.FAILED:
            logger.warning("replay stopped; the next live event catches up", thread_id=thread_id)

    def unsubscribe(self, connection_id: str, thread_id: str, owner: str | None = None) -> None:
        connection = self._store.get_connection(connection_id)
        if connection is not None:
            self._store.unsubscribe(_thread_key(connection, thread_id, owner), connection_id)
        self._send(connection_id, {"type": "unsubscribed", "threadId": thread_id})

    def _send(self, connection_id: str, frame: dict[str, Any]) -> bool:
        """Post a frame; False (and the connection forgotten) if the client went away."""
        try:
            self._poster.post(connection_id, frame)
        except ConnectionGone:
            forget_connection(self._store, connection_id)
            return False
        return True


def _parse(body: str | None) -> dict[str, Any]:
    try:
        request = bounded_json.loads(body or "")  # depth, number and text bounds: an error frame
    except JsonRejected as error:
        raise BadRequest(str(error)) from None
    if not isinstance(request, dict):
        raise BadRequest('a message must be a JSON object such as {"action": "ping"}')
    return request


def _action_of(body: str | None) -> str | None:
    """The action a message names, if it is readable (for an error frame that refuses it anyway)."""
    try:
        action = bounded_json.loads(body or "").get("action")
    except (JsonRejected, AttributeError):
        return None
    return action if isinstance(action, str) else None


def _thread_key(connection: Connection, thread_id: str, owner: str | None) -> str:
    """The thread's key in its owner's namespace: the caller's own, or the user an admin names."""
    if owner and owner != connection.user_id and not connection.is_admin:
        raise BadRequest("userId: only an admin may name another user's thread")
    return scoped(owner or connection.user_id, thread_id)


def _owner(request: dict[str, Any]) -> str | None:
    value = request.get("userId")
    if value is None:
        return None
    if not isinstance(value, str) or not _THREAD_ID.match(value):
        raise BadRequest("userId must be a user id (letters, digits and ._:@-, up to 128)")
    return value


def _thread_id(request: dict[str, Any]) -> str:
    value = request.get("threadId")
    if not isinstance(value, str) or not _THREAD_ID.match(value):
        raise BadRequest("threadId must be a thread id (letters, digits and ._:@-, up to 128)")
    return value


def _after(request: dict[str, Any]) -> int | None:
    value = request.get("after")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest("after must be a seq, 0 or more")
    if value > MAX_SEQ:
        raise BadRequest(f"after must be at most {MAX_SEQ}")
    return value


def credential(query: dict[str, str] | None, authorization: str | None) -> str | None:
    """The API key of a connect: `?token=KEY` (browsers cannot set headers), else the header."""
    token = (query or {}).get("token")
    return token or authorization
