"""Where the CLI's client commands connect (promptsvc_dev.client_connection)."""

import argparse
import json
from pathlib import Path

import pytest
from promptsvc_dev import client_connection
from promptsvc_dev.client_connection import NoConnection, resolve


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client_connection.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PROMPTSVC_URL", "PROMPTSVC_API_KEY", "PROMPTSVC_WS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMPTSVC_DEV_STATE", str(tmp_path / "no-dev.json"))


def test_flags_come_before_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTSVC_URL", "http://env:1")
    monkeypatch.setenv("PROMPTSVC_API_KEY", "env-key")
    monkeypatch.setenv("PROMPTSVC_WS_URL", "ws://env:2/")
    assert resolve(parse()).url == "http://env:1"
    config = resolve(parse("--url", "http://flag:1/", "--key", "flag-key", "--ws-url", "ws://flag:2/"))
    assert (config.url, config.api_key, config.ws_url) == ("http://flag:1", "flag-key", "ws://flag:2/")


def test_a_running_promptsvc_dev_is_found_by_its_state_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = tmp_path / "dev.json"
    state.write_text(json.dumps({"api": "http://127.0.0.1:9999", "websocket": "ws://127.0.0.1:9998/"}))
    monkeypatch.setenv("PROMPTSVC_DEV_STATE", str(state))
    config = resolve(parse("--key", "k"))
    assert (config.url, config.ws_url) == ("http://127.0.0.1:9999", "ws://127.0.0.1:9998/")


def test_a_stack_gives_both_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {"HttpApiUrl": "https://a.execute-api", "WebSocketUrl": "wss://w.execute-api/Prod"}
    monkeypatch.setattr(client_connection, "stack_outputs", lambda name: outputs if name == "prod" else {})
    config = resolve(parse("--stack", "prod", "--key", "k"))
    assert (config.url, config.ws_url) == ("https://a.execute-api", "wss://w.execute-api/Prod")


def test_nothing_to_connect_to_says_what_to_do() -> None:
    with pytest.raises(NoConnection, match="--url"):
        resolve(parse("--key", "k"))
    with pytest.raises(NoConnection, match="PROMPTSVC_API_KEY"):
        resolve(parse("--url", "http://x"))
