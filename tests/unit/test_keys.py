"""API keys (promptsvc.domain.keys)."""

import hashlib

import pytest
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


def record_for(parsed: ParsedKey) -> ApiKeyRecord:
    return ApiKeyRecord(parsed.key_id, hash_secret(parsed.secret), "alice", Role.USER, "2024-01-01")


def test_generated_key_parses_back() -> None:
    key, parsed = generate_key()
    assert key.startswith(f"psk_{parsed.key_id}_")
    assert parse_key(key) == parsed
    assert len(parsed.secret) >= 43  # 256 random bits


def test_generated_keys_are_distinct() -> None:
    keys = [generate_key() for _ in range(20)]
    assert len({key for key, _ in keys}) == 20
    assert len({parsed.key_id for _, parsed in keys}) == 20


def test_secret_may_contain_underscores() -> None:
    assert parse_key("psk_abc123_se_cr_et") == ParsedKey("abc123", "se_cr_et")


@pytest.mark.parametrize("raw", ["devkey", "psk__secret", "psk_id_", "psk_only", "other_id_secret"])
def test_foreign_keys_are_identified_by_a_digest(raw: str) -> None:
    parsed = parse_key(raw)
    assert parsed.secret == raw
    assert parsed.key_id.startswith("x")
    assert len(parsed.key_id) == 17
    assert parse_key(raw) == parsed


def test_foreign_key_ids_differ() -> None:
    assert parse_key("devkey").key_id != parse_key("devkey2").key_id


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer KEY", "KEY"),
        ("bearer KEY", "KEY"),
        ("BEARER   KEY  ", "KEY"),
        ("KEY", "KEY"),
        ("  KEY ", "KEY"),
        ("psk_a_b", "psk_a_b"),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_credential_from_header(header: str | None, expected: str | None) -> None:
    assert credential_from_header(header) == expected


def test_hash_is_sha256_hex_and_deterministic() -> None:
    digest = hash_secret("s3cret")
    assert digest == hash_secret("s3cret") == hashlib.sha256(b"s3cret").hexdigest()
    assert digest != hash_secret("s3cret ")
    assert "s3cret" not in digest


def test_verify() -> None:
    key, parsed = generate_key()
    record = record_for(parsed)
    assert verify(record, parse_key(key))
    assert not verify(record, ParsedKey(parsed.key_id, parsed.secret + "x"))
    assert not verify(record, ParsedKey(parsed.key_id, ""))


def test_principal_role() -> None:
    assert Principal("root", Role.ADMIN, "k1").is_admin
    assert not Principal("alice", Role.USER, "k2").is_admin
