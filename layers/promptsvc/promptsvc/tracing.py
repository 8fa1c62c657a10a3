"""The functions' tracer: Powertools' `Tracer` where tracing is on, and where it is off a stand-in
with the same decorators that does nothing.

Creating a `Tracer` imports the X-Ray SDK even when tracing is disabled (0.1 to 0.4 s of a cold
start here, benchmarks/cold_start.py). So the choice is made first, by Powertools' own rule
(`Tracer._is_tracer_disabled`): off with `POWERTOOLS_TRACE_DISABLED`, outside Lambda, or under
SAM or Chalice local; the X-Ray SDK is imported only when a trace can be sent.
"""

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer


# What the functions call through: AWS (botocore) and the engines' HTTP (httpx). Powertools' default
# patches every library the X-Ray SDK knows, importing sqlite3 and the SQL drivers' patches too.
TRACED_LIBRARIES = ("botocore", "httpx")


def tracing_enabled() -> bool:
    if resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false")):
        return False
    local = os.getenv(constants.SAM_LOCAL_ENV) or os.getenv(constants.CHALICE_LOCAL_ENV)
    return bool(os.getenv(constants.LAMBDA_TASK_ROOT_ENV)) and not local


class Untraced:
    """What the handlers and the consumer use of `Tracer`, doing nothing."""

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None, **_: Any) -> Any:
        return lambda_handler if lambda_handler is not None else (lambda handler: handler)

    def capture_method(self, method: Callable[..., Any] | None = None, **_: Any) -> Any:
        return method if method is not None else (lambda wrapped: wrapped)

    def put_annotation(self, key: str, value: Any) -> None:
        """Nothing to annotate: no trace is sent."""

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        """Nothing to record: no trace is sent."""


def tracer() -> "Tracer | Untraced":
    """Powertools' Tracer when a trace can be sent, else `Untraced`."""
    if not tracing_enabled():
        return Untraced()
    from aws_lambda_powertools import Tracer

    return Tracer(patch_modules=TRACED_LIBRARIES)
