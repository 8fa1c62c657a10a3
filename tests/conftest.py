"""Shared fixtures: moto with the template's own resources, the app, keys, and the consumer."""

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from promptsvc import wiring
from promptsvc.adapters import clients
from promptsvc.api.app import create_app
from promptsvc.domain.keys import Role
from promptsvc.engines.base import Engine
from promptsvc.settings import Settings, get_settings
from promptsvc.wiring import key_service
from promptsvc_dev import moto_atomic
from promptsvc_dev.functions import load_handler_module
from promptsvc_dev.sqs_source import SqsEventSource, consumer_queues
from promptsvc_dev.template import LocalStack, create_resources

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"

ADMIN_KEY = "admin-test-key"
ALICE_KEY = "alice-test-key"
BOB_KEY = "bob-test-key"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that are not real, and no endpoint override: moto intercepts in-process."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    moto_atomic.install()  # conditional writes atomic across threads, as in DynamoDB
    with mock_aws():
        clients.reset()
        yield
    clients.reset()


@pytest.fixture
def local_stack(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """Every table, queue and secret of template.yaml, and every function's environment set."""
    stack = create_resources(TEMPLATE)
    for function in stack.functions():
        for name, value in stack.function_environment(function).items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENGINE", "mock")
    get_settings.cache_clear()
    yield stack
    get_settings.cache_clear()


@pytest.fixture
def settings(local_stack: LocalStack) -> Settings:
    return get_settings()


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    """API keys by user: an admin and two users."""
    service = key_service(settings)
    service.bootstrap(ADMIN_KEY, "admin", Role.ADMIN)
    service.bootstrap(ALICE_KEY, "alice", Role.USER)
    service.bootstrap(BOB_KEY, "bob", Role.USER)
    return {"admin": ADMIN_KEY, "alice": ALICE_KEY, "bob": BOB_KEY}


@pytest.fixture
def client(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


LoadConsumer = Callable[[Mapping[str, Engine] | None], SqsEventSource]


@pytest.fixture
def load_consumer(local_stack: LocalStack) -> Iterator[LoadConsumer]:
    """Loads the consumer handler from functions/consumer/app.py behind an SQS event source
    emulator; given engines by name (a test's engine as "mock"), its runner uses them instead of
    the settings' (wiring.use_engines, reset when the test ends)."""

    def load(engines: Mapping[str, Engine] | None) -> SqsEventSource:
        wiring.use_engines(engines)
        module = load_handler_module(ROOT, "consumer")
        # Both lanes' queues (fair queueing), as the template's SQS events feed the function.
        return SqsEventSource(consumer_queues(local_stack), module.lambda_handler, wait_seconds=0)

    yield load
    wiring.use_engines(None)


@pytest.fixture
def consumer(load_consumer: LoadConsumer) -> SqsEventSource:
    """The consumer handler, with the settings' engines."""
    return load_consumer(None)
