"""The key lifecycle's pure rules (domain/keys.py): expiry, a rotation's grace, the allow-list."""

from datetime import UTC, datetime

import pytest
from msgspec.structs import replace
from promptsvc.domain.errors import Forbidden, InvalidRequest
from promptsvc.domain.keys import (
    MAX_ALLOWED_MODELS,
    ApiKeyRecord,
    KeyState,
    Role,
    allowed_models,
    generate_key,
    generated_prefix,
    grace_until,
    hash_secret,
    legacy_prefix,
    parse_expiry,
    parse_key,
)

NOW = "2030-01-01T00:00:00.000000Z"
LATER = "2030-01-01T00:01:00.000000Z"
EARLIER = "2029-12-31T23:59:00.000000Z"


def _record(raw: str, **fields: object) -> ApiKeyRecord:
    parsed = parse_key(raw)
    base = ApiKeyRecord(parsed.key_id, hash_secret(parsed.secret), "alice", Role.USER, EARLIER)
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_key_expires_at_its_moment_and_then_accepts_nothing() -> None:
    key, _ = generate_key()
    record = _record(key, expires_at=LATER)
    assert record.accepts(parse_key(key), NOW) and record.state(NOW) is KeyState.ACTIVE
    assert not record.accepts(parse_key(key), LATER) and record.state(LATER) is KeyState.EXPIRED
    assert record.ends_at(NOW) == LATER
    assert record.ends_at(LATER) == ""  # past: nothing left to end


def test_a_rotated_keys_old_secret_works_only_within_the_grace() -> None:
    old, parsed = generate_key()
    new, _ = generate_key(parsed.key_id)
    assert parse_key(new).key_id == parsed.key_id and new != old
    record = _record(new, previous_hash=hash_secret(parsed.secret), previous_until=LATER)
    assert record.state(NOW) is KeyState.ROTATING
    assert record.accepts(parse_key(old), NOW) and record.accepts(parse_key(new), NOW)
    assert not record.accepts(parse_key(old), LATER) and record.accepts(parse_key(new), LATER)
    assert record.state(LATER) is KeyState.ACTIVE
    assert not record.accepts(parse_key(old + "x"), NOW)


def test_an_expiry_inside_the_grace_ends_both_secrets() -> None:
    old, parsed = generate_key()
    new, _ = generate_key(parsed.key_id)
    record = _record(new, previous_hash=hash_secret(parsed.secret), previous_until=LATER, expires_at=NOW)
    assert record.ends_at(EARLIER) == NOW
    assert not record.accepts(parse_key(old), NOW) and not record.accepts(parse_key(new), NOW)


def test_the_view_holds_no_secret_or_hash() -> None:
    key, parsed = generate_key()
    record = _record(key, prefix=generated_prefix(key, parsed), allowed_models=("m",))
    view = record.view(NOW)
    assert view["prefix"] == f"psk_{parsed.key_id}_" and key.startswith(view["prefix"])
    assert parsed.secret not in str(view) and record.secret_hash not in str(view)
    assert view["allowedModels"] == ["m"] and view["state"] == "active" and view["graceEndsAt"] is None


def test_an_operators_own_key_has_no_prefix_to_show() -> None:
    assert generated_prefix("devkey", parse_key("devkey")) == ""
    assert legacy_prefix(parse_key("devkey").key_id) == ""
    _, parsed = generate_key()
    assert legacy_prefix(parsed.key_id) == f"psk_{parsed.key_id}_"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("2030-01-02T00:00:00Z", "2030-01-02T00:00:00.000000Z"),
        ("2030-01-02T02:00:00+02:00", "2030-01-02T00:00:00.000000Z"),
        ("2030-01-01T00:00:00.5Z", "2030-01-01T00:00:00.500000Z"),
    ],
)
def test_an_expiry_is_stored_in_utc(value: str, stored: str) -> None:
    assert parse_expiry(value, NOW) == stored


@pytest.mark.parametrize(
    "value",
    ["2030-01-01T00:00:00Z", "2029-01-01T00:00:00Z", "2031-01-01", "soon", "", "9999-12-31T23:00:00-05:00"],
)
def test_an_expiry_must_be_a_future_time_with_an_offset(value: str) -> None:
    with pytest.raises(InvalidRequest, match="expiresAt"):
        parse_expiry(value, NOW)


def test_the_grace_is_bounded() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert grace_until(60, now) == LATER
    assert grace_until(0, now) == NOW
    for bad in (-1, 7 * 86400 + 1):
        with pytest.raises(InvalidRequest, match="graceSeconds"):
            grace_until(bad, now)


def test_an_allow_list_names_catalog_models_once_each() -> None:
    known = ["a", "b", "c"]
    assert allowed_models(None, known) is None
    assert allowed_models(["b", "a", "b"], known) == ("b", "a")
    with pytest.raises(InvalidRequest, match="unknown model 'z'; known models: a, b, c"):
        allowed_models(["a", "z"], known)
    with pytest.raises(InvalidRequest, match="at least one"):
        allowed_models([], known)
    with pytest.raises(InvalidRequest, match=f"at most {MAX_ALLOWED_MODELS}"):
        allowed_models([str(i) for i in range(MAX_ALLOWED_MODELS + 1)], known)


def test_a_principal_with_an_allow_list_is_refused_the_first_model_off_it() -> None:
    key, _ = generate_key()
    principal = _record(key, allowed_models=("a", "b")).principal()
    principal.require_models(["a", "b"])
    with pytest.raises(Forbidden, match="model 'c' is not allowed for this API key"):
        principal.require_models(["a", "c", "d"])
    _record(key).principal().require_models(["anything"])  # no list: every model
