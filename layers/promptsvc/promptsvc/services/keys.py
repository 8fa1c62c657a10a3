"""API key use cases: authenticate a request, create and revoke keys."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from promptsvc.domain.keys import (
    ApiKeyRecord,
    ParsedKey,
    Principal,
    Role,
    credential_from_header,
    generate_key,
    hash_secret,
    parse_key,
    verify,
)

if TYPE_CHECKING:
    from promptsvc.domain.ports import KeyRepository


class KeyService:
    """Keys are looked up once and then trusted for `cache_seconds` by a warm function.

    A revocation takes effect at once in the function that made it and within `cache_seconds`
    elsewhere; that bound is the price of an add costing two AWS calls instead of three.
    """

    def __init__(
        self,
        repository: KeyRepository,
        *,
        cache_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repository
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}

    def authenticate(self, authorization: str | None) -> Principal:
        raw = credential_from_header(authorization)
        if raw is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer KEY'")
        parsed = parse_key(raw)
        record = self._lookup(parsed.key_id)
        if record is None or not verify(record, parsed):
            raise Unauthorized("invalid API key")
        return Principal(user_id=record.user_id, role=record.role, key_id=record.key_id)

    def still_valid(self, key_id: str, user_id: str) -> bool:
        """Whether the key a caller authenticated with earlier (e.g. to open a WebSocket) still
        stands for that user: revoked keys stop working within the same cache bound."""
        record = self._lookup(key_id) if key_id else None
        return record is not None and record.user_id == user_id

    def _lookup(self, key_id: str) -> ApiKeyRecord | None:
        now = self._monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = self._repo.get(key_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_id] = (now + self._cache_seconds, record)
        return record

    def create(self, caller: Principal, user_id: str, role: Role) -> tuple[str, ApiKeyRecord]:
        if not caller.is_admin:
            raise Forbidden("only an admin can create API keys")
        if not user_id or len(user_id) > 128:
            raise InvalidRequest("userId must be a non-empty string of at most 128 characters")
        key, parsed = generate_key()
        return key, self._store(parsed, user_id, role)

    def bootstrap(self, raw_key: str, user_id: str, role: Role) -> ApiKeyRecord:
        """Register a key chosen by an operator (e.g. `promptsvc dev --api-key`)."""
        return self._store(parse_key(raw_key), user_id, role)

    def _store(self, parsed: ParsedKey, user_id: str, role: Role) -> ApiKeyRecord:
        record = ApiKeyRecord(
            key_id=parsed.key_id,
            secret_hash=hash_secret(parsed.secret),
            user_id=user_id,
            role=role,
            created_at=now_rfc3339(),
        )
        self._repo.put(record)
        self._cache.pop(record.key_id, None)
        return record

    def revoke(self, caller: Principal, key_id: str) -> None:
        """An admin revokes any key; a user only their own. Others' keys are 404, as if absent."""
        record = self._repo.get(key_id)
        if record is None or not (caller.is_admin or record.user_id == caller.user_id):
            raise NotFound(f"API key {key_id!r} not found")
        self._repo.delete(key_id)
        self._cache.pop(key_id, None)
