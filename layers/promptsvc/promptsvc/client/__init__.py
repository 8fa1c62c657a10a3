"""The Python SDK of promptsvc: `Client` and `AsyncClient` over the HTTP and WebSocket APIs.

It needs only httpx, pydantic and websockets (`pip install "promptsvc[client]"`) and imports nothing
else of promptsvc, so it installs without the server's dependencies (an import-linter contract and
tests/e2e/test_python_client.py keep it so). docs/client.md has the how-to.
"""

from promptsvc.client.async_client import AsyncClient
from promptsvc.client.config import ClientConfig
from promptsvc.client.errors import ApiError, StreamError
from promptsvc.client.models import (
    ApiKey,
    CatalogModel,
    KeyLimits,
    Models,
    NewApiKey,
    Prompt,
    RegistryPrompt,
    RegistryVersion,
    ThreadEvent,
    Usage,
    UsageCounts,
    UsageGroup,
)
from promptsvc.client.retry import RetryPolicy
from promptsvc.client.sync_client import Client

__all__ = [
    "ApiError",
    "ApiKey",
    "AsyncClient",
    "CatalogModel",
    "Client",
    "ClientConfig",
    "KeyLimits",
    "Models",
    "NewApiKey",
    "Prompt",
    "RegistryPrompt",
    "RegistryVersion",
    "RetryPolicy",
    "StreamError",
    "ThreadEvent",
    "Usage",
    "UsageCounts",
    "UsageGroup",
]
