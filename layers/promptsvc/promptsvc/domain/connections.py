"""WebSocket connections and their thread subscriptions, as the services see them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from promptsvc.domain.keys import Role

if TYPE_CHECKING:
    from promptsvc.domain.thread_events import ThreadEvent


class Connection(msgspec.Struct, frozen=True):
    """An open WebSocket connection and who opened it (its API key's user and role)."""

    connection_id: str
    user_id: str
    role: Role
    expires_at: int  # epoch seconds: API Gateway closes a connection after 2 h
    key_id: str = ""  # the API key it was opened with: each action checks it still stands
    secret_tag: str = ""  # which of that key's secrets (domain.keys.secret_tag): a rotated-out one ends

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class Subscription(msgspec.Struct, frozen=True):
    """A connection following a thread; `last_seq` is the last seq it was given (or skipped)."""

    thread_id: str  # the thread's scoped key (owner#threadId), as the event log names it
    connection_id: str
    user_id: str
    role: Role
    last_seq: int

    def may_see(self, event: ThreadEvent) -> bool:
        return self.role is Role.ADMIN or event.userId == self.user_id


class ConnectionGone(Exception):
    """The WebSocket client went away (API Gateway's 410): forget the connection."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id!r} is gone")
        self.connection_id = connection_id
