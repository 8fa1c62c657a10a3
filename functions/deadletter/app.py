"""Dead-letter sweeper (scheduled): abandons the prompts whose messages reached the DLQ."""

from dataclasses import asdict

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from promptsvc import wiring
from promptsvc.consumer.dead_letters import sweep
from promptsvc.settings import get_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
settings = get_settings()
repository = wiring.prompt_repository(settings)
events = wiring.thread_event_log(settings)


@logger.inject_lambda_context(correlation_id_path="id")  # the schedule's event id
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    report = sweep(repository, settings.prompts_dlq_url, events=events)
    logger.info("dead-letter sweep", **asdict(report))
    metrics.add_metric(name="DeadLettersAbandoned", unit=MetricUnit.Count, value=report.abandoned)
    metrics.add_metric(name="DeadLettersUnreadable", unit=MetricUnit.Count, value=report.unreadable)
    return asdict(report)
