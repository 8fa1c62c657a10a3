"""No API key secret, nor its hash, ever reaches a log line (issue 9).

Every log record of every logger (the root's and Powertools' own, which do not propagate) is
captured whole (message, extra keys, exception text), with stdout and stderr, while keys are
created, used (valid, revoked, malformed, as a WebSocket `?token=`) and revoked.
"""

import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.domain.keys import hash_secret, parse_key
from promptsvc.settings import Settings

from tests.conftest import auth
from tests.integration.test_ws_and_fanout import connect, send, ws  # noqa: F401


class Everything(logging.Handler):
    """Keeps every record as text: its whole `__dict__` (extra keys included) and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.getMessage()} {record.__dict__!r}"
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(text)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, client: TestClient, ws: Any) -> Iterator[Everything]:  # noqa: F811
    """A handler on the root logger (at INFO) and on every logger that does not propagate to it
    (Powertools' service loggers), those at DEBUG: what `POWERTOOLS_LOG_LEVEL=DEBUG` logs. Set
    up after the app and the handlers, so their loggers exist."""
    caplog.set_level(logging.INFO)
    handler = Everything()
    attached: list[tuple[logging.Logger, int]] = [(logging.getLogger(), logging.getLogger().level)]
    logging.getLogger().addHandler(handler)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and not logger.propagate:
            attached.append((logger, logger.level))
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


def secrets_of(key: str) -> list[str]:
    """What must never be logged: the key, its secret and the secret's stored hash (not its id)."""
    parsed = parse_key(key)
    return [key, parsed.secret, hash_secret(parsed.secret)]


def test_no_key_secret_or_hash_is_ever_logged(
    capfd: pytest.CaptureFixture[str],
    logs: Everything,
    client: TestClient,
    keys: dict[str, str],
    settings: Settings,
    ws: Any,  # noqa: F811
) -> None:
    made = client.post("/prompt-svc/keys", json={"userId": "carol"}, headers=auth(keys["admin"])).json()
    key, key_id = made["key"], made["keyId"]
    wrong_secret = f"psk_{key_id}_{'x' * 43}"
    # used: valid, malformed, with a wrong secret
    assert client.post("/prompt-svc/prompt", json={"prompt": "hi"}, headers=auth(key)).status_code == 200
    assert client.post("/prompt-svc/prompts", json={}, headers=auth(key)).status_code == 200
    for header in (f"Token {key}", f"Bearer {key}x", f"Bearer  {key} {key}", f"Bearer {wrong_secret}"):
        assert (
            client.post("/prompt-svc/prompts", json={}, headers={"Authorization": header}).status_code == 401
        )
    # on the WebSocket API: `?token=`, the header, a wrong secret
    assert connect(ws, "conn-carol", token=key) == {"statusCode": 200}
    assert connect(ws, "conn-header", header=f"Bearer {key}") == {"statusCode": 200}
    assert connect(ws, "conn-wrong", token=wrong_secret)["statusCode"] == 401
    # revoked, then used
    assert client.delete(f"/prompt-svc/keys/{key_id}", headers=auth(key)).status_code == 200
    assert client.post("/prompt-svc/prompts", json={}, headers=auth(key)).status_code == 401
    ws.service = wiring.subscription_service(settings)  # a fresh instance: no cached key
    assert connect(ws, "conn-revoked", token=key)["statusCode"] == 401

    out, err = capfd.readouterr()
    captured = [out, err, *logs.lines]

    assert any("connect refused" in line for line in logs.lines)  # the capture sees the handlers' logs
    for secret in [*secrets_of(key), *secrets_of(wrong_secret)[1:], *secrets_of(keys["admin"])]:
        leaked = [line[:300] for line in captured if secret in line]
        assert leaked == [], f"a key secret or hash was logged: {leaked}"
