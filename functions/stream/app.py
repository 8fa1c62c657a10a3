"""Stream function: the thread events table's stream, fanned out to subscribed WebSocket connections.

Only INSERTs are events (a REMOVE is the TTL at work). A record that some connection could not be
given (other than because it is gone) is reported as a batch item failure: the stream retries it,
and the connections that got it already skip it.
"""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

# The big packages this init imports, imported first, at the top of the stack (never named here):
# docs/architecture.md, "Cold start".
import boto3  # noqa: F401
import pydantic_settings  # noqa: F401
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from promptsvc import tracing

tracer = tracing.tracer()  # where tracing is on, the X-Ray SDK is one of those big packages

from promptsvc import wiring
from promptsvc.adapters.thread_event_table import is_event_item, item_to_event
from promptsvc.settings import get_settings

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
settings = get_settings().for_function("stream")
fanout = wiring.fanout(settings)


class DeliveryFailed(Exception):
    """Reported as a batch item failure: the stream delivers the record again."""


def record_handler(record: DynamoDBRecord) -> str:
    if record.event_name is not DynamoDBRecordEventName.INSERT or record.dynamodb is None:
        return "ignored"
    if not is_event_item(record.dynamodb.new_image):  # a thread's seq counter
        return "ignored"
    event = item_to_event(record.dynamodb.new_image)
    logger.set_correlation_id(event.promptId)  # records are handled one at a time
    report = fanout.publish(event)
    metrics.add_metric(name="FramesDelivered", unit=MetricUnit.Count, value=len(report.delivered))
    metrics.add_metric(name="StaleConnectionsRemoved", unit=MetricUnit.Count, value=len(report.gone))
    metrics.add_metric(name="RevokedConnectionsClosed", unit=MetricUnit.Count, value=len(report.revoked))
    if report.failed:
        logger.warning("delivery failed", thread_id=event.threadId, seq=event.seq, connections=report.failed)
        raise DeliveryFailed(f"thread {event.threadId!r} seq {event.seq}: {len(report.failed)} connection(s)")
    return f"{len(report.outcomes)} subscriber(s)"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


collector.resume()  # the init is done: promptsvc/collector.py
