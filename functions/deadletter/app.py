"""Dead-letter sweeper (scheduled): abandons the prompts whose messages reached the DLQ."""

from dataclasses import asdict

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from promptsvc import wiring
from promptsvc.consumer.dead_letters import sweep
from promptsvc.settings import get_settings

logger = Logger()
tracer = Tracer()
settings = get_settings()
repository = wiring.prompt_repository(settings)
events = wiring.thread_event_log(settings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    report = sweep(repository, settings.prompts_dlq_url, events=events)
    logger.info("dead-letter sweep", **asdict(report))
    return asdict(report)
