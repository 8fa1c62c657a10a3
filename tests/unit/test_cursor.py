"""Signed, query-bound list cursors (promptsvc.domain.cursor)."""

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from promptsvc.domain.cursor import Cursor, decode, encode
from promptsvc.domain.errors import InvalidRequest

SECRET = b"k" * 32
FINGERPRINT = "f" * 32
CURSOR = Cursor(FINGERPRINT, ["2024-05-01T10:00:00.000000Z", 3, None, True, "p_1"], seed="abc")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip() -> None:
    token = encode(CURSOR, SECRET)
    assert decode(token, SECRET, FINGERPRINT) == CURSOR


def test_round_trip_without_seed() -> None:
    cursor = Cursor(FINGERPRINT, ["x"])
    assert decode(encode(cursor, SECRET), SECRET, FINGERPRINT) == cursor


def test_token_is_url_safe_text() -> None:
    token = encode(CURSOR, SECRET)
    assert token.isascii()
    assert not set(token) & set('+/="\n ')


def test_json_encoded_token_is_accepted() -> None:
    """What `JSON.stringify(rsp.after)` sends back."""
    token = encode(CURSOR, SECRET)
    assert decode(json.dumps(token), SECRET, FINGERPRINT) == CURSOR
    assert decode(f"  {token}\n", SECRET, FINGERPRINT) == CURSOR


def test_other_fingerprint_is_rejected() -> None:
    token = encode(CURSOR, SECRET)
    with pytest.raises(InvalidRequest, match="jsonAfter"):
        decode(token, SECRET, "g" * 32)


def test_other_secret_is_rejected() -> None:
    token = encode(CURSOR, b"another secret")
    with pytest.raises(InvalidRequest):
        decode(token, SECRET, FINGERPRINT)


def test_tampered_body_is_rejected() -> None:
    body_b64, _, signature = encode(CURSOR, SECRET).partition(".")
    body = json.loads(unb64(body_b64))
    body["p"][1] = 4
    forged = b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    with pytest.raises(InvalidRequest):
        decode(f"{forged}.{signature}", SECRET, FINGERPRINT)


def test_tampered_signature_is_rejected() -> None:
    body, _, signature = encode(CURSOR, SECRET).partition(".")
    raw = bytearray(unb64(signature))
    raw[0] ^= 1
    with pytest.raises(InvalidRequest):
        decode(f"{body}.{b64(bytes(raw))}", SECRET, FINGERPRINT)


def test_missing_signature_is_rejected() -> None:
    body, _, _ = encode(CURSOR, SECRET).partition(".")
    for token in (body, f"{body}."):
        with pytest.raises(InvalidRequest):
            decode(token, SECRET, FINGERPRINT)


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "abc",
        "a.b",
        "!!!.???",
        "é.é",
        "a.b.c",
        '"',
        '""',
        '"abc',
        "null",
        "[1,2]",
        '{"v":1}',
        "x" * 5,
    ],
)
def test_garbage_is_rejected(token: str) -> None:
    with pytest.raises(InvalidRequest):
        decode(token, SECRET, FINGERPRINT)


@settings(max_examples=100)
@given(st.text())
def test_any_text_is_rejected_cleanly(token: str) -> None:
    """Whatever a client sends, the answer is a 400, never another exception."""
    with pytest.raises(InvalidRequest):
        decode(token, SECRET, FINGERPRINT)


def test_each_token_has_exactly_one_valid_spelling() -> None:
    """Base64 padding bits would let the last character vary; only the canonical form decodes."""
    token = encode(CURSOR, SECRET)
    body, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variants = [f"{body}.{signature[:-1]}{c}" for c in alphabet if c != signature[-1]] + [
        f"{body[:-1]}{c}.{signature}" for c in alphabet if c != body[-1]
    ]

    for variant in variants:
        with pytest.raises(InvalidRequest):
            decode(variant, SECRET, FINGERPRINT)
