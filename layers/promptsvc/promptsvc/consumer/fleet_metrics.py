"""The ECS worker's prompts running, published for the fleet's scaling (CloudWatch EMF, Powertools).

infra/ecs-gpu/stack.yaml scales the worker service on the work that can run now: the queue's
visible messages plus the prompts the workers are running (engine slots taken). Not SQS's count
of invisible messages: a prompt whose attempt failed waits out its retry backoff as an invisible
message, but nothing runs it, so an engine outage must not read as more work for more GPUs.
(Prompts a worker has claimed ahead of a free slot are invisible too, and not counted either: they
exist only while the worker is full, and then the queue's visible backlog is what asks for more.)

Each task writes one datapoint a minute, the mean of its count sampled every few seconds over that
minute, stamped with the minute's start: the stack reads the series with the statistic Sum over
60 s, which is then the prompts running across the whole fleet (one datapoint per task per
minute). A task that stops mid-minute writes nothing for it. With no task running the series has
no datapoint at all, which the stack's metric math fills with 0.
"""

import asyncio
import time
from collections.abc import Callable

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

METRIC_NAME = "PromptsRunning"
QUEUE_DIMENSION = "QueueName"  # beside Powertools' `service` dimension
MINUTE = 60


def queue_name(queue_url: str) -> str:
    """The queue's name, as the AWS/SQS metrics name it (the last part of its URL)."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


class FleetMetrics:
    """Samples a count and publishes each finished minute's mean, stamped with the minute."""

    def __init__(
        self,
        queue: str,
        *,
        sample_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.sample_seconds = sample_seconds
        self._clock = clock
        self._minute: int | None = None  # start (epoch seconds) of the minute being sampled
        self._samples: list[int] = []

    @classmethod
    def for_queue_url(cls, queue_url: str) -> "FleetMetrics":
        return cls(queue_name(queue_url))

    def sample(self, count: int) -> None:
        """Record the count now; a new minute publishes the last one's mean first."""
        minute = int(self._clock()) // MINUTE * MINUTE
        if self._minute is not None and minute != self._minute and self._samples:
            self.publish(self._minute, sum(self._samples) / len(self._samples))
            self._samples = []
        self._minute = minute
        self._samples.append(count)

    def publish(self, minute: int, value: float) -> None:
        if is_metrics_disabled():
            return
        metrics = EphemeralMetrics()  # its own document: the runs' metrics never mix in
        metrics.add_metric(name=METRIC_NAME, unit=MetricUnit.Count, value=value)
        metrics.add_dimension(name=QUEUE_DIMENSION, value=self.queue)
        metrics.set_timestamp(minute * 1000)
        metrics.flush_metrics()

    async def run(self, count: Callable[[], int]) -> None:
        """Sample until cancelled (the worker cancels it once it has drained)."""
        while True:
            self.sample(count())
            await asyncio.sleep(self.sample_seconds)
