"""DynamoDB applies each request atomically: of two concurrent conditional writes to one item, one
fails its condition. moto's handler takes no lock, so in a threaded moto server (or moto in-process
with several threads) both can pass, and the loser's write silently replaces the winner's. The
local stack and the tests enforce AWS's rule by serializing DynamoDB requests in moto."""

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_INSTALLED = False


def install() -> None:
    """Serialize moto's DynamoDB request handling (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    _INSTALLED = True
