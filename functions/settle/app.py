"""Settle function: the success and error notifications (SNS) of the SageMaker async endpoints
settle the runs they answer, with the same conditional writes and thread events as any run
(consumer/async_runs.py); a retry or fallback is queued again, delayed by its backoff.

A notification this function cannot settle (a throttled table) raises: Lambda retries the
asynchronous invocation. One never settled leaves the prompt to its kept queue message, which
brings it back when the run's lease ends.
"""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

import asyncio

# The big packages this init imports, imported first, at the top of the stack (never named here):
# docs/architecture.md, "Cold start".
import boto3  # noqa: F401
import pydantic_settings  # noqa: F401
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from promptsvc import tracing

tracer = tracing.tracer()  # where tracing is on, the X-Ray SDK is one of those big packages

from promptsvc import wiring
from promptsvc.consumer.async_runs import settle_notification
from promptsvc.settings import get_settings

logger = Logger()
metrics = Metrics()
settings = get_settings().for_function("settle")
runs = wiring.async_runs(settings)
results = wiring.async_results(settings)
queue = wiring.prompt_queue(settings)


async def _settle_all(messages: list[str]) -> list[str]:
    settled = [
        await settle_notification(runs.settle, results, queue.send_later, message) for message in messages
    ]
    return [str(result.outcome) for result in settled]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=SNSEvent)
def lambda_handler(event: SNSEvent, context: LambdaContext) -> dict:
    outcomes = asyncio.run(_settle_all([record.sns.message for record in event.records]))
    metrics.add_metric(name="AsyncResultsSettled", unit=MetricUnit.Count, value=len(outcomes))
    return {"outcomes": outcomes}


collector.resume()  # the init is done: promptsvc/collector.py
