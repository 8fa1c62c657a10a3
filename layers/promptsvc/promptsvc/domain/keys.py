"""API keys: generation, parsing and hashing. Only the hash of a key's secret is ever stored.

A key reads `psk_<keyId>_<secret>`. The key id is public (it names the key for revocation and is
the table's partition key); the secret is 256 random bits, so a plain SHA-256 is the right hash
(slow password hashes exist for low-entropy secrets, which these are not).
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "psk"


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user the key belongs to and the key's role."""

    user_id: str
    role: Role
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def namespace(self, user_id: str | None = None) -> str | None:
        """Whose names (prompt ids, thread ids) a request means: the caller's own, or, for an admin
        naming one, that user's. None when a user names someone else: to them it does not exist."""
        if not user_id or user_id == self.user_id:
            return self.user_id
        return user_id if self.is_admin else None


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    secret_hash: str
    user_id: str
    role: Role
    created_at: str


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> tuple[str, ParsedKey]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}_{key_id}_{secret}", ParsedKey(key_id, secret)


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
    return hmac.compare_digest(record.secret_hash, hash_secret(parsed.secret))
