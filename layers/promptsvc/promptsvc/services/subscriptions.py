"""The WebSocket API's use cases: connect with an API key, subscribe to a thread (with replay),
unsubscribe, ping, disconnect.

Frames to the client (all JSON):
- `{"type": "subscribed", "threadId", "after"}`: events with seq > `after` follow, in order;
- `{"type": "unsubscribed", "threadId"}`, `{"type": "pong"}`;
- `{"type": "error", "action", "error"}`: the request was refused, nothing else happened;
- thread events, as `ThreadEvent.wire()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from promptsvc.domain import bounded_json
from promptsvc.domain.bounded_json import JsonRejected
from promptsvc.domain.connections import Connection, ConnectionGone
from promptsvc.domain.names import ID_PATTERN, scoped
from promptsvc.domain.thread_events import MAX_SEQ
from promptsvc.domain.validation import TAG_ERRORS, describe, quote, untagged, worded
from promptsvc.services.connection_keys import ConnectionKeys
from promptsvc.services.fanout import Fanout, Outcome, forget_connection
from promptsvc.services.keys import KeyService

logger = Logger(child=True)

ACTIONS = ("subscribe", "unsubscribe", "ping")
REVOKED = "the API key of this connection was revoked: the connection is closed"
_ID_RULE = "(letters, digits and ._:@-, up to 128)"


class BadRequest(Exception):
    """A message the client must fix; `str()` is shown to it in an error frame."""


# -- the client's frames: a discriminated union on `action` -------------------------------------

ThreadId = Annotated[str, Field(pattern=ID_PATTERN), worded(f"threadId must be a thread id {_ID_RULE}")]
Owner = Annotated[str | None, Field(pattern=ID_PATTERN), worded(f"userId must be a user id {_ID_RULE}")]
Seq = Annotated[
    int | None,
    Field(ge=0, le=MAX_SEQ),
    worded("after must be a seq, 0 or more", less_than_equal=f"after must be at most {MAX_SEQ}"),
]


class _Frame(BaseModel):
    """Types as sent (`"5"` is no seq); keys this service does not read are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)


class _Ping(_Frame):
    action: Literal["ping"]


class _OnThread(_Frame):
    # Validated when absent too, so a missing threadId reads as what it is not: a thread id.
    threadId: ThreadId = Field(None, validate_default=True)
    userId: Owner = None  # an admin's: whose thread


class _Unsubscribe(_OnThread):
    action: Literal["unsubscribe"]


class _Subscribe(_OnThread):
    action: Literal["subscribe"]
    after: Seq = None  # replay the stored events after this seq; absent: live events only


_FRAMES: TypeAdapter[_Ping | _Unsubscribe | _Subscribe] = TypeAdapter(
    Annotated[_Ping | _Unsubscribe | _Subscribe, Field(discriminator="action"), untagged("action")]
)

if TYPE_CHECKING:
    from promptsvc.domain.ports import ConnectionStore, FramePoster, ThreadEventLog


def _frame(request: dict[str, Any]) -> _Ping | _Unsubscribe | _Subscribe:
    """The client's request; BadRequest naming every problem when it is not one."""
    try:
        return _FRAMES.validate_python(request)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        if any(problem["type"] in TAG_ERRORS for problem in problems):
            action = request.get("action")
            problem = "no action" if action is None else f"unknown action {quote(action)}"
            raise BadRequest(f"{problem}: use one of {', '.join(ACTIONS)}") from None
        raise BadRequest(describe(problems)) from None


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
            secret_tag=principal.secret_tag,
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
            match _frame(request):
                case _Ping():
                    self._send(connection_id, {"type": "pong"})
                case _Unsubscribe(threadId=thread_id, userId=owner):
                    self.unsubscribe(connection_id, thread_id, owner)
                case _Subscribe(threadId=thread_id, after=after, userId=owner):
                    self.subscribe(connection_id, thread_id, after, owner)
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


def credential(query: dict[str, str] | None, authorization: str | None) -> str | None:
    """The API key of a connect: `?token=KEY` (browsers cannot set headers), else the header."""
    token = (query or {}).get("token")
    return token or authorization
