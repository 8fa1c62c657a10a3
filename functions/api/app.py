"""HTTP API function: the FastAPI app behind Mangum (API Gateway HTTP API, payload v2)."""

from aws_lambda_powertools import Logger, Tracer
from mangum import Mangum
from promptsvc.api.app import create_app

logger = Logger()
tracer = Tracer()
asgi = Mangum(create_app(), lifespan="off")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    return asgi(event, context)
