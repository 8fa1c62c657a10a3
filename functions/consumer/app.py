"""Consumer function: SQS batches of prompt ids, run concurrently, partial batch failures reported.

A record whose message must come back (a retry after backoff, a prompt another consumer still
holds) is reported as a batch item failure after its visibility was set; all others succeed and
Lambda deletes them.
"""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

# The big packages this init imports, imported first, at the top of the stack (never named here):
# docs/architecture.md, "Cold start".
import boto3  # noqa: F401
import pydantic_settings  # noqa: F401
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from promptsvc import tracing

tracer = tracing.tracer()  # where tracing is on, the X-Ray SDK is one of those big packages

from promptsvc import wiring
from promptsvc.consumer.settle import ReceivedMessage, Settlement, settle
from promptsvc.settings import get_settings

logger = Logger()
metrics = Metrics()
# A batch whose every message is kept (all busy, or all waiting out a backoff) is a normal
# answer, not a failed invocation: report them all, raise nothing (no Lambda error, no alarm).
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
settings = get_settings().for_function("consumer")
runner = wiring.prompt_runner(settings)
messages = wiring.queue_messages(settings)

LEASE_MARGIN_SECONDS = 30


class MessageKept(Exception):
    """Reported as a batch item failure: the message stays on the queue, as its visibility says."""


async def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    message = ReceivedMessage(
        message_id=record.message_id,
        receipt_handle=record.receipt_handle,
        body=record.body,
        receive_count=int(record.attributes.approximate_receive_count or 1),
    )
    # The lease outlives this invocation: if the function dies, the prompt is reclaimed when the
    # message comes back after the queue's visibility timeout, which is longer than both.
    lease = lambda_context.get_remaining_time_in_millis() / 1000 + LEASE_MARGIN_SECONDS
    # Settled on the queue the record came from: the fast lane's or the bulk lane's.
    source = messages.of_queue(record.event_source_arn)
    settlement = await settle(runner, source, message, lease_seconds=lease)
    if settlement is Settlement.KEPT:
        raise MessageKept(record.message_id)
    return str(settlement)


# Records run concurrently, so the correlation id of a log line is its `prompt_id` key (every
# runner line has it), not the logger-wide correlation id, which one record would set for all.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    response = async_process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # Per-prompt outcomes and timings are emitted by the runner (consumer/telemetry.py).
    metrics.add_metric(name="MessagesKept", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
    return response


collector.resume()  # the init is done: promptsvc/collector.py
