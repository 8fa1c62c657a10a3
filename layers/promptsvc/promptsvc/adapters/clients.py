"""boto3 clients, created lazily (moto only mocks clients made after it starts) and reused.

Endpoints come from the standard `AWS_ENDPOINT_URL*` variables, which is how `promptsvc dev`
points the very same code at moto.
"""

import threading
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_hooks: list[tuple[str, Callable[..., Any]]] = []

# What AWS answers when a table or API is over its rate: retried by the SDK; past its attempts the
# caller is asked to come back (HTTP 503 with Retry-After), never told the request broke.
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "Throttling"}
)


def is_throttled(error: BaseException) -> bool:
    response = getattr(error, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") in THROTTLING_CODES


def register_hook(event_name: str, handler: Callable[..., Any]) -> None:
    """Register a botocore event handler on every client made from now on (benchmarks, tests)."""
    _hooks.append((event_name, handler))
    reset()


def clear_hooks() -> None:
    _hooks.clear()
    reset()


def _session() -> boto3.session.Session:
    session = boto3.session.Session()
    for event_name, handler in _hooks:
        session.events.register(event_name, handler)
    return session


_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)


# Model invocations: SageMaker's real-time limit is 60 s per invocation, and the consumer's own
# retries (with backoff, counted on the prompt) replace the SDK's, which would silently re-run a
# generation on the GPU.
_SERVICE_CONFIG = {
    # Posting frames: short, and retried by the stream's own batch retries.
    "apigatewaymanagementapi": Config(
        retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10
    ),
    "sagemaker-runtime": Config(
        retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=70
    ),
}


@cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    """A client of `service`; `endpoint_url` for APIs addressed per resource (the API Gateway
    Management API of one WebSocket stage)."""
    session: Any = _session()  # any service name: boto3's typed overloads name each
    return session.client(service, endpoint_url=endpoint_url, config=_SERVICE_CONFIG.get(service, _CONFIG))


_local = threading.local()
_generation = 0
_resources_session: list[tuple[int, boto3.session.Session]] = []  # (generation, session)
_resources_lock = threading.Lock()


def _resource() -> Any:
    """A DynamoDB resource for the calling thread, made from one session shared by the threads (one
    at a time: sessions are not thread-safe): from a session that has made one already it costs
    about 5 ms of CPU, from a new session 60 ms, for every thread of every pool of a consumer."""
    with _resources_lock:
        if not _resources_session or _resources_session[0][0] != _generation:
            _resources_session[:] = [(_generation, _session())]
        return _resources_session[0][1].resource("dynamodb", config=_CONFIG)


def dynamodb_table(name: str) -> Any:
    """A Table resource for this thread: boto3 resources, unlike clients, are not thread-safe."""
    if getattr(_local, "generation", None) != _generation:
        _local.generation = _generation
        _local.resource = _resource()
        _local.tables = {}
    if name not in _local.tables:
        _local.tables[name] = _local.resource.Table(name)
    return _local.tables[name]


@cache
def secrets_provider() -> Any:
    """Powertools' Secrets provider (it caches values with a max age) on our lazily made client."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=client("secretsmanager"))


def secret_bytes(secret_id: str, max_age: int = 3600) -> bytes:
    return str(secrets_provider().get(secret_id, max_age=max_age)).encode()


@cache
def ssm_provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return SSMProvider(boto3_client=client("ssm"))


def parameter_value(name: str, max_age: int = 300) -> str:
    return str(ssm_provider().get(name, max_age=max_age))


def reset() -> None:
    """Forget every client (tests start a fresh moto per test)."""
    global _generation
    _generation += 1
    client.cache_clear()
    secrets_provider.cache_clear()
    ssm_provider.cache_clear()
