"""Revoked keys on open WebSocket connections.

A connection is authenticated once, at `$connect`, but may stay open for API Gateway's 2 h. So
every action on it, and every frame the fan-out would post to it, first checks that the key it
was opened with still stands, through the `KeyService` cache: a revocation reaches open
connections within the same `KEY_CACHE_SECONDS` bound as new requests. A connection whose key
was revoked is forgotten (with its subscriptions) and closed; so is one opened with a rotated key's
previous secret, once the rotation's grace ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from promptsvc.services.fanout import forget_connection
from promptsvc.services.keys import KeyService

if TYPE_CHECKING:
    from promptsvc.domain.ports import ConnectionStore

logger = Logger(child=True)

MAX_CACHED = 10_000  # connections whose key id is remembered (a connection's key never changes)


class ConnectionKeys:
    def __init__(self, keys: KeyService, store: ConnectionStore, close: Callable[[str], None]) -> None:
        self._keys = keys
        self._store = store
        self._close = close
        self._owners: dict[str, tuple[str, str, str]] = {}  # connection id -> key id, user id, tag

    def revoked(self, connection_id: str) -> bool:
        """Whether the connection was opened with a key that no longer stands. An unknown
        connection is not revoked: it is gone already, and what uses it finds that out."""
        owner = self._owners.get(connection_id)
        if owner is None:
            connection = self._store.get_connection(connection_id)
            if connection is None:
                return False
            if len(self._owners) >= MAX_CACHED:
                self._owners.clear()
            owner = (connection.key_id, connection.user_id, connection.secret_tag)
            self._owners[connection_id] = owner
        return not self._keys.still_valid(*owner)

    def close(self, connection_id: str) -> None:
        """Forget the connection and its subscriptions, then close it."""
        logger.info("API key revoked: closing the connection", connection_id=connection_id)
        forget_connection(self._store, connection_id)
        self._owners.pop(connection_id, None)
        try:
            self._close(connection_id)
        except Exception:  # forgotten already: nothing more is posted to it either way
            logger.exception("closing the connection failed", connection_id=connection_id)
