"""Opaque, signed list cursors.

A cursor holds a *position* in the query's order (the last returned item's sort values and id),
not a DynamoDB LastEvaluatedKey, so it survives merging several index partitions and in-memory
ordering, and a page never repeats or skips an item. It is bound to the caller and the query and
signed with HMAC-SHA256, so a cursor the service did not issue, or one from another query, is a 400.
A random order's cursor also holds its `window`: the block of the selection being shuffled
(services/listing.py).
"""

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

import msgspec

from promptsvc.domain.errors import InvalidRequest

VERSION = 1


class Cursor(msgspec.Struct, frozen=True):
    fingerprint: str
    position: list[Any]
    seed: str | None = None
    window: list[Any] | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Decode, accepting only the canonical spelling (so a token has exactly one valid form)."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("non-canonical base64")
    return data


def encode(cursor: Cursor, secret: bytes) -> str:
    fields = {"v": VERSION, "q": cursor.fingerprint, "p": cursor.position, "s": cursor.seed}
    if cursor.window is not None:
        fields["w"] = cursor.window
    body = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
    signature = hmac.new(secret, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(signature)}"


def decode(token: str, secret: bytes, fingerprint: str) -> Cursor:
    """The cursor in `token`; InvalidRequest unless this service issued it for this query."""
    token = _unwrap(token)
    invalid = InvalidRequest("query.jsonAfter is not a cursor this service issued for this query")
    body_b64, _, sig_b64 = token.partition(".")
    try:
        body, signature = _unb64(body_b64), _unb64(sig_b64)
    except (binascii.Error, ValueError):
        raise invalid from None
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    if not sig_b64 or not hmac.compare_digest(signature, expected):
        raise invalid
    data = json.loads(body)
    if data.get("v") != VERSION or data.get("q") != fingerprint or not isinstance(data.get("p"), list):
        raise invalid
    window = data.get("w")
    if window is not None and not isinstance(window, list):
        raise invalid
    return Cursor(fingerprint=data["q"], position=data["p"], seed=data.get("s"), window=window)


def _unwrap(token: str) -> str:
    """Accept the token itself or the token JSON-encoded (`JSON.stringify(rsp.after)` in JS)."""
    token = token.strip()
    if token.startswith('"'):
        try:
            inner = json.loads(token)
        except json.JSONDecodeError:
            return token
        if isinstance(inner, str):
            return inner
    return token
