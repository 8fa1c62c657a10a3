"""The Lambda handler of an HTTP API function (functions/api, functions/console, functions/registry):
one API of api/app.py behind Mangum (API Gateway HTTP API, payload v2), with Powertools' logging,
tracing and metrics."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from promptsvc import tracing
from promptsvc.api.app import Api, create_app
from promptsvc.settings import get_settings

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def http_handler(api: Api, *, function: str, error_metric: str) -> Handler:
    """The handler serving `api`, its settings checked for `function` (settings.NEEDS). Each
    request adds 0 or 1 to `error_metric`: its average is the function's server error rate,
    alarmable in one metric."""
    logger = Logger()
    tracer = tracing.tracer()
    metrics = Metrics()
    asgi = Mangum(create_app(get_settings().for_function(function), apis=(api,)), lifespan="off")

    @logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
    @tracer.capture_lambda_handler
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response: dict[str, Any] = asgi(event, context)
        metrics.add_metric(name=error_metric, unit=MetricUnit.Count, value=int(response["statusCode"] >= 500))
        return response

    return handler
