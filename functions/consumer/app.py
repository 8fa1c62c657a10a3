"""Consumer function: SQS batches of prompt ids, run concurrently, partial batch failures reported."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from promptsvc import wiring
from promptsvc.adapters.prompt_queue import prompt_id_from_body
from promptsvc.consumer.runner import Outcome
from promptsvc.settings import get_settings

logger = Logger()
tracer = Tracer()
processor = AsyncBatchProcessor(event_type=EventType.SQS)
runner = wiring.prompt_runner(get_settings())


async def record_handler(record: SQSRecord) -> Outcome:
    prompt_id = prompt_id_from_body(record.body)
    outcome = await runner.run(prompt_id)
    logger.info("prompt processed", prompt_id=prompt_id, outcome=str(outcome))
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: object) -> dict:
    return async_process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
