"""What an EventBridge schedule does, for the local stack: invoke a handler every period with a
real-shaped `Scheduled Event`. Periods come from the template's `rate(...)` expressions."""

import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from promptsvc_dev.functions import LambdaContext
from promptsvc_dev.sqs_source import Handler

logger = Logger(child=True)

_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def rate_seconds(expression: str) -> float:
    match = re.fullmatch(r"rate\((\d+) (minutes?|hours?|days?)\)", expression.strip())
    if match is None:
        raise ValueError(f"unsupported schedule expression {expression!r} (only rate(...) locally)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def scheduled_event(rule: str, region: str = "us-east-1") -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:scheduler:{region}:123456789012:schedule/default/{rule}"],
        "detail": {},
    }


class ScheduleSource:
    def __init__(self, handler: Handler, period: float, *, function_name: str) -> None:
        self._handler = handler
        self._period = period
        self._function_name = function_name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"schedule-{self._function_name}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self._handler(scheduled_event(self._function_name), LambdaContext(self._function_name))
            except Exception:
                logger.exception("scheduled invocation failed", function=self._function_name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
