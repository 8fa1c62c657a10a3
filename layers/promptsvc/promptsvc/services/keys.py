"""API key use cases: authenticate a request; create, list, rotate and revoke keys."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
from aws_lambda_powertools import Logger
from msgspec.structs import replace

from promptsvc.domain.clock import epoch_seconds, now_rfc3339
from promptsvc.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from promptsvc.domain.keys import (
    DEFAULT_GRACE_SECONDS,
    ApiKeyRecord,
    ParsedKey,
    Principal,
    Role,
    allowed_models,
    credential_from_header,
    generate_key,
    generated_prefix,
    grace_until,
    hash_secret,
    parse_expiry,
    parse_key,
    secret_tag,
)
from promptsvc.domain.limits import KeyLimits
from promptsvc.domain.names import ID_PATTERN

if TYPE_CHECKING:
    from promptsvc.domain.catalog import Catalog
    from promptsvc.domain.ports import KeyRepository

logger = Logger(child=True)

DEFAULT_PAGE = 20
MAX_PAGE = 100
REFRESH_SECONDS = 1.0  # a secret that does not match the cached record re-reads it at most this often
# A listing's position: the last key's `userId listedAt` (createdAt#keyId).
_POSITION = re.compile(ID_PATTERN.strip("^$") + r" \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#[A-Za-z0-9]{1,64}")


class KeyPage(msgspec.Struct, frozen=True):
    keys: list[ApiKeyRecord]
    after: str | None  # the cursor of the next page; None on the last


class NewKey(msgspec.Struct, frozen=True):
    """What `POST /prompt-svc/keys` asks for, validated at the edge."""

    user_id: str
    role: Role = Role.USER
    expires_at: str | None = None  # RFC 3339
    allowed_models: Sequence[str] | None = None
    limits: KeyLimits = msgspec.field(default_factory=KeyLimits)  # overrides of the deployment's defaults


class KeyChanges(msgspec.Struct, frozen=True):
    """What `PATCH /prompt-svc/keys/{keyId}` changes; a field left None keeps the key's.
    `expires_at` "" is never; `allowed_models` () is every model; `limits` maps the wire names of
    the limits it changes to a value (None: back to the deployment's default)."""

    expires_at: str | None = None
    allowed_models: Sequence[str] | None = None
    limits: dict[str, int | None] | None = None


class KeyService:
    """Keys are looked up once and then trusted for `cache_seconds` by a warm function.

    A revocation takes effect at once in the function that made it and within `cache_seconds`
    elsewhere; that bound is the price of an add costing two AWS calls instead of three. Expiry and
    a rotation's grace are checked against the clock on every request, so they end on time
    everywhere; a rotation's new secret works at once everywhere (a secret the cached record
    refuses re-reads it, at most once a second per key). `track_use`: record `lastUsedAt`, at most
    once per `cache_seconds` per key in this instance (the HTTP API does; WebSocket functions not).
    """

    def __init__(
        self,
        repository: KeyRepository,
        *,
        cache_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        catalog: Callable[[], Catalog] | None = None,
        track_use: bool = False,
    ) -> None:
        self._repo = repository
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._wall = wall
        self._catalog = catalog
        self._track_use = track_use
        self._cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}
        self._refreshed: dict[str, float] = {}
        self._used: dict[str, float] = {}

    def _now(self) -> str:
        return now_rfc3339(datetime.fromtimestamp(self._wall(), UTC))

    def authenticate(self, authorization: str | None) -> Principal:
        raw = credential_from_header(authorization)
        if raw is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer KEY'")
        parsed = parse_key(raw)
        now = self._now()
        record = self._lookup(parsed.key_id)
        if record is not None and not record.accepts(parsed, now) and self._may_refresh(parsed.key_id):
            record = self._lookup(parsed.key_id, fresh=True)  # rotated elsewhere since it was cached?
        if record is None or not record.accepts(parsed, now):
            expired = record is not None and record.expired(now) and _matches(record, parsed)
            raise Unauthorized("API key expired" if expired else "invalid API key")
        self._note_use(record, now)
        return replace(record.principal(), secret_tag=secret_tag(hash_secret(parsed.secret)))

    def still_valid(self, key_id: str, user_id: str, tag: str = "") -> bool:
        """Whether the key a caller authenticated with earlier (e.g. to open a WebSocket) still
        stands for that user: revoked keys stop working within the same cache bound, expired ones
        and a rotated-out secret (`tag`: its `secret_tag`) at the end of its grace at once."""
        record = self._lookup(key_id) if key_id else None
        return record is not None and record.user_id == user_id and record.still_accepts(tag, self._now())

    def _lookup(self, key_id: str, *, fresh: bool = False) -> ApiKeyRecord | None:
        now = self._monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        record = self._repo.get(key_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        until = now + self._cache_seconds
        ends_at = record.ends_at(self._now()) if record is not None else ""
        if ends_at:  # never trusted past its expiry or the end of a rotation's grace
            until = min(until, now + max(0.0, epoch_seconds(ends_at) - self._wall()))
        self._cache[key_id] = (until, record)
        return record

    def _may_refresh(self, key_id: str) -> bool:
        now = self._monotonic()
        last = self._refreshed.get(key_id)
        if last is not None and now - last < REFRESH_SECONDS:
            return False
        if len(self._refreshed) > 10_000:
            self._refreshed.clear()
        self._refreshed[key_id] = now
        return True

    def _note_use(self, record: ApiKeyRecord, now: str) -> None:
        if not self._track_use:
            return
        moment = self._monotonic()
        last = self._used.get(record.key_id)
        if last is not None and moment - last < max(self._cache_seconds, 1.0):
            return
        if len(self._used) > 10_000:
            self._used.clear()
        self._used[record.key_id] = moment
        try:
            self._repo.touch(record, now)
        except Exception:  # a request never fails for its key's lastUsedAt
            logger.warning("could not record the key's last use", key_id=record.key_id, exc_info=True)

    def create(self, caller: Principal, new: NewKey) -> tuple[str, ApiKeyRecord]:
        if not caller.is_admin:
            raise Forbidden("only an admin can create API keys")
        if not new.user_id or len(new.user_id) > 128:
            raise InvalidRequest("userId must be a non-empty string of at most 128 characters")
        now = self._now()
        expires_at = parse_expiry(new.expires_at, now) if new.expires_at is not None else ""
        known = self._catalog().models if self._catalog is not None else ()
        models = allowed_models(new.allowed_models, known)
        key, parsed = generate_key()
        record = self._store(
            key, parsed, new.user_id, new.role, expires_at=expires_at, models=models, limits=new.limits
        )
        return key, record

    def bootstrap(
        self,
        raw_key: str,
        user_id: str,
        role: Role,
        *,
        expires_at: str | None = None,
        models: Sequence[str] | None = None,
        limits: KeyLimits | None = None,
    ) -> ApiKeyRecord:
        """Register a key chosen by an operator (`promptsvc dev --api-key`) or made by `promptsvc
        keys create` (which may give it an expiry, an allow-list and limits)."""
        expiry = parse_expiry(expires_at, self._now()) if expires_at else ""
        chosen = tuple(dict.fromkeys(models)) if models is not None else None
        return self._store(
            raw_key, parse_key(raw_key), user_id, role, expires_at=expiry, models=chosen, limits=limits
        )

    def _store(
        self,
        raw: str,
        parsed: ParsedKey,
        user_id: str,
        role: Role,
        *,
        expires_at: str = "",
        models: tuple[str, ...] | None = None,
        limits: KeyLimits | None = None,
    ) -> ApiKeyRecord:
        record = ApiKeyRecord(
            key_id=parsed.key_id,
            secret_hash=hash_secret(parsed.secret),
            user_id=user_id,
            role=role,
            created_at=self._now(),
            expires_at=expires_at,
            allowed_models=models,
            prefix=generated_prefix(raw, parsed),
            limits=limits or KeyLimits(),
        )
        self._repo.put(record)
        self._cache.pop(record.key_id, None)
        return record

    def list_keys(
        self,
        caller: Principal,
        user_id: str | None = None,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> KeyPage:
        """An admin lists every key, or one user's (`user_id`); a user their own. Newest first."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit: between 1 and {MAX_PAGE}")
        if not caller.is_admin:
            if user_id not in (None, caller.user_id):
                raise Forbidden("only an admin can list another user's API keys")
            user_id = caller.user_id
        keys, position = self._repo.page(user_id, _position(after), limit)
        return KeyPage(keys, _cursor(position) if position is not None else None)

    def rotate(
        self, caller: Principal, key_id: str, grace_seconds: float = DEFAULT_GRACE_SECONDS
    ) -> tuple[str, ApiKeyRecord]:
        """A new secret for the key, shown once; its current secret keeps working for
        `grace_seconds` (an earlier rotation's previous secret stops at once). An admin rotates
        any key, a user their own."""
        record = self._owned(caller, key_id)
        now = datetime.fromtimestamp(self._wall(), UTC)
        if record.expired(now_rfc3339(now)):
            raise Conflict(f"API key {key_id!r} has expired: create a new one")
        until = grace_until(grace_seconds, now)
        key, parsed = generate_key(record.key_id)
        prefix = generated_prefix(key, parsed)
        if not self._repo.rotate(
            record.key_id, record.secret_hash, hash_secret(parsed.secret), until, prefix
        ):
            raise Conflict(f"API key {key_id!r} was rotated or revoked meanwhile: try again")
        self._cache.pop(record.key_id, None)
        rotated = replace(
            record,
            secret_hash=hash_secret(parsed.secret),
            previous_hash=record.secret_hash,
            previous_until=until,
            prefix=prefix,
        )
        return key, rotated

    def update(self, caller: Principal, key_id: str, changes: KeyChanges) -> ApiKeyRecord:
        """An admin changes a key's expiry, allow-list or limits; the secret stays. Takes effect at
        once in this function and within `cache_seconds` elsewhere (a revocation's bound)."""
        if not caller.is_admin:
            raise Forbidden("only an admin can change an API key's expiry, models or limits")
        record = self._owned(caller, key_id)
        now = self._now()
        expires_at = record.expires_at
        if changes.expires_at is not None:
            expires_at = parse_expiry(changes.expires_at, now) if changes.expires_at else ""
        models = record.allowed_models
        if changes.allowed_models is not None:
            known = self._catalog().models if self._catalog is not None else ()
            models = allowed_models(changes.allowed_models, known) if changes.allowed_models else None
        limits = record.limits
        if changes.limits is not None:
            limits = KeyLimits.from_dict({**limits.as_dict(), **changes.limits})
        updated = replace(record, expires_at=expires_at, allowed_models=models, limits=limits)
        if not self._repo.update(updated):
            raise NotFound(f"API key {key_id!r} not found")
        self._cache.pop(key_id, None)
        return updated

    def revoke(self, caller: Principal, key_id: str) -> None:
        """An admin revokes any key; a user only their own. Others' keys are 404, as if absent."""
        self._owned(caller, key_id)
        self._repo.delete(key_id)
        self._cache.pop(key_id, None)

    def _owned(self, caller: Principal, key_id: str) -> ApiKeyRecord:
        record = self._repo.get(key_id)
        if record is None or not (caller.is_admin or record.user_id == caller.user_id):
            raise NotFound(f"API key {key_id!r} not found")
        return record

    def now(self) -> str:
        """The service's clock, in the stored form (a listing's states are as of it)."""
        return self._now()


def _matches(record: ApiKeyRecord, parsed: ParsedKey) -> bool:
    return replace(record, expires_at="").accepts(parsed, "")


def _cursor(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).rstrip(b"=").decode()


def _position(cursor: str | None) -> str | None:
    """The listing position an `after` cursor names; a 400 for anything this service did not issue.
    (It is not signed: it only positions a read within what the caller may list anyway.)"""
    if cursor is None:
        return None
    try:
        position = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        position = ""
    if not _POSITION.fullmatch(position) or _cursor(position) != cursor:
        raise InvalidRequest("after: not a cursor of this listing")
    return position
