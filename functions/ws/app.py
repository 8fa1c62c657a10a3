"""WebSocket function: $connect (API key), subscribe (with replay), unsubscribe, ping, $disconnect.

Answers go to the client as frames through the Management API; the return value only tells API
Gateway whether to accept a handshake ($connect: 200, or 401 to refuse it).
"""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

# The big packages this init imports, imported first, at the top of the stack (never named here):
# docs/architecture.md, "Cold start".
import boto3  # noqa: F401
import pydantic_settings  # noqa: F401
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from promptsvc import tracing

tracer = tracing.tracer()  # where tracing is on, the X-Ray SDK is one of those big packages

from promptsvc import wiring
from promptsvc.domain.errors import Unauthorized
from promptsvc.services.subscriptions import credential
from promptsvc.settings import get_settings

logger = Logger()
metrics = Metrics()
settings = get_settings().for_function("ws")
service = wiring.subscription_service(settings)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=APIGatewayWebSocketEvent)
def lambda_handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict:
    request = event.request_context
    connection_id = request.connection_id
    logger.append_keys(connection_id=connection_id, route=request.route_key)
    if request.event_type == "CONNECT":
        api_key = credential(event.query_string_parameters, event.headers.get("authorization"))
        try:
            connection = service.connect(connection_id, api_key)
        except Unauthorized as error:
            logger.info("connect refused", reason=str(error))
            metrics.add_metric(name="ConnectsRefused", unit=MetricUnit.Count, value=1)
            return {"statusCode": 401, "body": str(error)}
        logger.info("connected", user_id=connection.user_id)
        metrics.add_metric(name="Connects", unit=MetricUnit.Count, value=1)
    elif request.event_type == "DISCONNECT":
        service.disconnect(connection_id)
    else:
        service.message(connection_id, event.decoded_body)
    metrics.add_metric(name="WebSocketMessages", unit=MetricUnit.Count, value=1)
    return {"statusCode": 200}


collector.resume()  # the init is done: promptsvc/collector.py
