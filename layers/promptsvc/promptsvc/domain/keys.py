"""API keys: generation, parsing and hashing, and their lifecycle rules (expiry, a rotation's
grace, the models a key may use). Only the hash of a key's secret is ever stored.

A key reads `psk_<keyId>_<secret>`. The key id is public (it names the key for revocation and is
the table's partition key); the secret is 256 random bits, so a plain SHA-256 is the right hash
(slow password hashes exist for low-entropy secrets, which these are not).

Times here are `domain.clock`'s fixed-width RFC 3339 strings, so comparing them compares moments.
"""

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec

from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.errors import Forbidden, InvalidRequest
from promptsvc.domain.limits import KeyLimits

PREFIX = "psk"
MAX_ALLOWED_MODELS = 32  # models on one key's allow-list
MAX_GRACE_SECONDS = 7 * 24 * 3600  # how long a rotated key's old secret may keep working
DEFAULT_GRACE_SECONDS = 3600


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the user the key belongs to and the key's role."""

    user_id: str
    role: Role
    key_id: str
    allowed_models: frozenset[str] | None = None  # None: every model
    limits: KeyLimits = msgspec.field(default_factory=KeyLimits)  # the key's own (None: the default)
    # Which of the key's secrets the caller used (`secret_tag`), so that a WebSocket opened with a
    # rotated-out secret closes when its grace ends; "" when unknown.
    secret_tag: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require_models(self, models: Iterable[str]) -> None:
        """Forbidden, naming the first model of `models` (every model a prompt may run) that the
        key's allow-list does not hold."""
        if self.allowed_models is None:
            return
        for model in models:
            if model not in self.allowed_models:
                allowed = ", ".join(sorted(self.allowed_models))
                raise Forbidden(f"model {model!r} is not allowed for this API key (it may use: {allowed})")

    def namespace(self, user_id: str | None = None) -> str | None:
        """Whose names (prompt ids, thread ids) a request means: the caller's own, or, for an admin
        naming one, that user's. None when a user names someone else: to them it does not exist."""
        if not user_id or user_id == self.user_id:
            return self.user_id
        return user_id if self.is_admin else None


class KeyState(StrEnum):
    ACTIVE = "active"
    ROTATING = "rotating"  # rotated: its previous secret works until `graceEndsAt`
    EXPIRED = "expired"  # past `expiresAt`: refused like an unknown key (kept until revoked)


class ApiKeyRecord(msgspec.Struct, frozen=True):
    """A stored key. Listings read an index that holds no hashes: theirs are empty."""

    key_id: str
    secret_hash: str
    user_id: str
    role: Role
    created_at: str
    expires_at: str = ""  # never, when empty
    allowed_models: tuple[str, ...] | None = None  # None: every model
    previous_hash: str = ""  # a rotated key's previous secret, valid until `previous_until`
    previous_until: str = ""
    last_used_at: str = ""
    prefix: str = ""  # the start of the key as shown, nothing of its secret: `psk_<keyId>_`
    limits: KeyLimits = msgspec.field(default_factory=KeyLimits)  # overrides of the deployment's defaults

    def state(self, now: str) -> KeyState:
        if self.expires_at and now >= self.expires_at:
            return KeyState.EXPIRED
        if self.previous_until and now < self.previous_until:
            return KeyState.ROTATING
        return KeyState.ACTIVE

    def expired(self, now: str) -> bool:
        return self.state(now) is KeyState.EXPIRED

    def accepts(self, parsed: "ParsedKey", now: str) -> bool:
        """Whether the secret is the key's, or its previous one within the rotation's grace. An
        expired key accepts nothing (`expired` tells the two refusals apart)."""
        if self.expired(now):
            return False
        digest = hash_secret(parsed.secret)
        if hmac.compare_digest(self.secret_hash, digest):
            return True
        return bool(self.previous_hash and now < self.previous_until) and hmac.compare_digest(
            self.previous_hash, digest
        )

    def still_accepts(self, tag: str, now: str) -> bool:
        """Whether the secret of `secret_tag` `tag` still works (a connection opened with it
        stays open): the current secret, or the previous one within the rotation's grace. An empty
        tag (a connection stored before tags) is judged by the key alone."""
        if self.expired(now):
            return False
        if not tag or secret_tag(self.secret_hash) == tag:
            return True
        return bool(
            self.previous_hash and now < self.previous_until and secret_tag(self.previous_hash) == tag
        )

    def ends_at(self, now: str) -> str:
        """The next moment after `now` at which what the key accepts changes by itself (its expiry,
        the end of a rotation's grace), or "" for never: a cache of the record must not outlive it."""
        moments = [m for m in (self.expires_at, self.previous_until) if m and m > now]
        return min(moments) if moments else ""

    def principal(self) -> "Principal":
        allowed = None if self.allowed_models is None else frozenset(self.allowed_models)
        return Principal(
            user_id=self.user_id,
            role=self.role,
            key_id=self.key_id,
            allowed_models=allowed,
            limits=self.limits,
        )

    def view(self, now: str) -> dict[str, Any]:
        """The key as listings show it: never its secret or a hash of it."""
        return {
            "keyId": self.key_id,
            "prefix": self.prefix,
            "userId": self.user_id,
            "role": str(self.role),
            "state": str(self.state(now)),
            "createdAt": self.created_at,
            "lastUsedAt": self.last_used_at or None,
            "expiresAt": self.expires_at or None,
            "graceEndsAt": self.previous_until if self.state(now) is KeyState.ROTATING else None,
            "allowedModels": None if self.allowed_models is None else list(self.allowed_models),
            "limits": self.limits.as_dict(),
        }


class ParsedKey(msgspec.Struct, frozen=True):
    key_id: str
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_tag(secret_hash: str) -> str:
    """A short name for one of a key's secrets: the start of its hash (it tells a key's current
    and previous secret apart, and reveals nothing a stored hash does not)."""
    return secret_hash[:16]


def generate_key(key_id: str | None = None) -> tuple[str, ParsedKey]:
    """A new key: a new key id, or (a rotation) a new secret for `key_id`."""
    key_id = key_id or secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{key_prefix(key_id)}{secret}", ParsedKey(key_id, secret)


def key_prefix(key_id: str) -> str:
    """What a key generated for `key_id` starts with: the part of it that is not secret. (A key an
    operator chose, `promptsvc dev --api-key`, is all secret: its record's prefix is empty.)"""
    return f"{PREFIX}_{key_id}_"


def legacy_prefix(key_id: str) -> str:
    """The prefix of a key stored without one: generated ids are 16 hex digits (an operator's own
    key's id starts with `x`, and all of that key is secret)."""
    generated = len(key_id) == 16 and all(c in "0123456789abcdef" for c in key_id)
    return key_prefix(key_id) if generated else ""


def generated_prefix(raw: str, parsed: ParsedKey) -> str:
    """The prefix to show of `raw`: `psk_<keyId>_` for a key of that form, else nothing."""
    prefix = key_prefix(parsed.key_id)
    return prefix if raw.startswith(prefix) else ""


def parse_expiry(value: str, now: str) -> str:
    """`expiresAt` (RFC 3339 with an offset) in the stored form; it must be in the future."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"expiresAt: {value!r} is not an RFC 3339 time (e.g. 2030-01-31T00:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise InvalidRequest("expiresAt: give a time zone offset (Z for UTC)")
    try:
        stored = now_rfc3339(moment.astimezone(UTC))
    except OverflowError:  # past year 9999 in UTC
        raise InvalidRequest(f"expiresAt: {value!r} is out of range") from None
    if stored <= now:
        raise InvalidRequest(f"expiresAt: {value!r} is not in the future")
    return stored


def allowed_models(models: Iterable[str] | None, known: Iterable[str]) -> tuple[str, ...] | None:
    """A key's allow-list, checked against the catalog's model ids; None allows every model."""
    if models is None:
        return None
    chosen = tuple(dict.fromkeys(models))
    if not chosen:
        raise InvalidRequest("allowedModels: name at least one model (omit it to allow every model)")
    if len(chosen) > MAX_ALLOWED_MODELS:
        raise InvalidRequest(f"allowedModels: at most {MAX_ALLOWED_MODELS} models")
    catalog = set(known)
    unknown = [m for m in chosen if m not in catalog]
    if unknown:
        raise InvalidRequest(
            f"allowedModels: unknown model {unknown[0]!r}; known models: {', '.join(sorted(catalog))}"
        )
    return chosen


def grace_until(grace_seconds: float, now: datetime) -> str:
    """When a rotated key's previous secret stops working."""
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise InvalidRequest(f"graceSeconds: between 0 and {MAX_GRACE_SECONDS} (7 days)")
    return now_rfc3339(datetime.fromtimestamp(now.timestamp() + grace_seconds, UTC))


def parse_key(raw: str) -> ParsedKey:
    """The key id and secret of a key.

    Keys this service generates carry their id. Any other string (an operator's own bootstrap key,
    `promptsvc dev --api-key devkey`) is identified by a digest of itself, so it works the same way.
    """
    parts = raw.split("_", 2)
    if len(parts) == 3 and parts[0] == PREFIX and parts[1] and parts[2]:
        return ParsedKey(parts[1], parts[2])
    return ParsedKey("x" + hashlib.sha256(raw.encode()).hexdigest()[:16], raw)


def credential_from_header(value: str | None) -> str | None:
    """The key from an Authorization header: `Bearer KEY` or a bare `KEY`."""
    if not value:
        return None
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if rest and scheme.lower() == "bearer":
        value = rest.strip()
    return value or None


def verify(record: ApiKeyRecord, parsed: ParsedKey) -> bool:
    """Whether the secret is the key's current one (expiry and grace aside: `accepts`)."""
    return hmac.compare_digest(record.secret_hash, hash_secret(parsed.secret))
