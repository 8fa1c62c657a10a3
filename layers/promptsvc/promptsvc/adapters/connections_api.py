"""Posting frames to WebSocket clients through API Gateway's Management API (`@connections`).

A message is at most 128 KB. A bigger delta is cut into several messages that carry the same
`seq` plus `part` (1-based) and `parts`; their `text`s concatenate to the delta's. Other messages
are small by construction; one that is not has its `error` shortened so it can still go out.
"""

import contextlib
import json
from typing import Any

from promptsvc.adapters import clients
from promptsvc.domain.connections import ConnectionGone

__all__ = ["MAX_MESSAGE_BYTES", "ConnectionGone", "ConnectionsApi", "encode", "management_client", "split"]

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway WebSocket message payload limit


def management_client(endpoint: str) -> Any:
    """The Management API client of one WebSocket API stage, made lazily and reused."""
    return clients.client("apigatewaymanagementapi", endpoint)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def split(payload: dict[str, Any], limit: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """The payload as messages of at most `limit` bytes each."""
    data = encode(payload)
    if len(data) <= limit:
        return [data]
    text = payload.get("text")
    if isinstance(text, str) and text:
        return [encode(part) for part in _parts(payload, text, limit)]
    error = payload.get("error")
    if isinstance(error, str) and error:
        over = len(data) - limit
        return [encode({**payload, "error": _cut(error, len(error.encode()) - over - 3) + "..."})]
    raise ValueError(f"a {len(data)}-byte message cannot be split under {limit} bytes")


def _parts(payload: dict[str, Any], text: str, limit: int) -> list[dict[str, Any]]:
    # `parts` can be no more than len(text): sizing the envelope with that many digits is safe.
    envelope = len(encode({**payload, "text": "", "part": len(text), "parts": len(text)}))
    budget = limit - envelope
    if budget < 8:  # room for at least one character, escaped
        raise ValueError("the message envelope alone fills the limit")
    pieces: list[str] = []
    start = 0
    while start < len(text):
        size = min(len(text) - start, budget)  # a character costs at least one byte
        while (cost := _json_bytes(text[start : start + size])) > budget:
            size = max(1, min(size - 1, size * budget // cost))
        pieces.append(text[start : start + size])
        start += size
    return [{**payload, "text": piece, "part": n, "parts": len(pieces)} for n, piece in enumerate(pieces, 1)]


def _json_bytes(text: str) -> int:
    """Bytes the string adds inside a JSON document (escapes and UTF-8 counted)."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def _cut(text: str, max_bytes: int) -> str:
    return text.encode()[: max(0, max_bytes)].decode(errors="ignore")


class ConnectionsApi:
    """Posts frames to the connections of one WebSocket API stage."""

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint

    def post(self, connection_id: str, payload: dict[str, Any]) -> None:
        """Send the payload (split if too big); ConnectionGone if the client went away."""
        api = management_client(self._endpoint)
        for data in split(payload):
            try:
                api.post_to_connection(ConnectionId=connection_id, Data=data)
            except api.exceptions.GoneException as error:  # a ClientError subclass: others propagate
                raise ConnectionGone(connection_id) from error

    def close(self, connection_id: str) -> None:
        """Close the client's connection (`DELETE @connections/{id}`); one already gone is no error."""
        api = management_client(self._endpoint)
        with contextlib.suppress(api.exceptions.GoneException):
            api.delete_connection(ConnectionId=connection_id)
