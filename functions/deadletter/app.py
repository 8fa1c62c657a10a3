"""Sweeper (scheduled, every minute): abandons the prompts whose messages reached the DLQ, and
re-queues stranded ones (stored `scheduled`, their message never sent: consumer/stranded.py)."""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

# The big packages this init imports, imported first, at the top of the stack (never named here):
# docs/architecture.md, "Cold start".
import boto3  # noqa: F401
import pydantic_settings  # noqa: F401
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from msgspec.structs import asdict
from promptsvc import tracing

tracer = tracing.tracer()  # where tracing is on, the X-Ray SDK is one of those big packages

from promptsvc import wiring
from promptsvc.consumer.dead_letters import sweep
from promptsvc.consumer.stranded import requeue_stranded
from promptsvc.settings import get_settings

logger = Logger()
metrics = Metrics()
settings = get_settings().for_function("deadletter")
repository = wiring.prompt_store(settings)
events = wiring.thread_event_log(settings)
queue = wiring.prompt_queue(settings)  # a stranded prompt goes back to its own lane


@logger.inject_lambda_context(correlation_id_path="id")  # the schedule's event id
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    report = sweep(repository, settings.prompts_dlq_url, events=events)
    logger.info("dead-letter sweep", **asdict(report))
    metrics.add_metric(name="DeadLettersAbandoned", unit=MetricUnit.Count, value=report.abandoned)
    metrics.add_metric(name="DeadLettersUnreadable", unit=MetricUnit.Count, value=report.unreadable)
    stranded = requeue_stranded(repository, queue, grace_seconds=settings.stranded_after_seconds)
    metrics.add_metric(name="StrandedPromptsRequeued", unit=MetricUnit.Count, value=stranded.requeued)
    if stranded.found:
        logger.info("stranded prompts", **asdict(stranded))
    return {**asdict(report), "requeued": stranded.requeued}


collector.resume()  # the init is done: promptsvc/collector.py
