"""Queue API function: `/prompt-svc/*` and the playground (FastAPI behind Mangum, API Gateway HTTP
API, payload v2). The prompt registry is functions/registry: each imports only its own routes."""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

import boto3  # noqa: F401  (imported first, at the top of the stack: docs/architecture.md, "Cold start")
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum
from promptsvc import tracing
from promptsvc.api.app import create_app
from promptsvc.settings import get_settings

logger = Logger()
tracer = tracing.tracer()
metrics = Metrics()
asgi = Mangum(create_app(get_settings().for_function("api"), apis=("queue",)), lifespan="off")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: object) -> dict:
    response = asgi(event, context)
    # 0 or 1 per request: its average is the API's server error rate, alarmable in one metric.
    metrics.add_metric(
        name="ApiServerErrors", unit=MetricUnit.Count, value=int(response["statusCode"] >= 500)
    )
    return response


collector.resume()  # the init is done: promptsvc/collector.py
