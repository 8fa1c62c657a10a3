"""Every error is JSON with a status that names the kind of problem; no stack traces.

The shape follows the API a path belongs to: `{"error": "..."}` on /prompt-svc/* (the 1backend
client's), `{"message": "..."}` on /v2/* (the orq SDK's), where body and query validation is a 422.
"""

from aws_lambda_powertools import Logger
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptsvc.adapters.clients import is_throttled
from promptsvc.api.auth import principal
from promptsvc.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
)
from promptsvc.domain.limits import LimitExceeded
from promptsvc.domain.validation import describe

logger = Logger(child=True)

STATUS: dict[type[DomainError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,  # ItemTooLarge too: e.g. a 256 KB prompt whose template passes 400 KB
    LimitExceeded: 429,
}


def status_of(error: DomainError) -> int:
    """The status of the error's nearest class in STATUS (a subclass is its base's kind)."""
    return next((STATUS[kind] for kind in type(error).__mro__ if kind in STATUS), 400)


RETRY_AFTER_SECONDS = 1  # after a 503 for throttling
V2_PREFIX = "/v2/"


def is_v2(path: str) -> bool:
    return path.startswith(V2_PREFIX) or path == V2_PREFIX.rstrip("/")


def error_response(status: int, message: str, path: str = "") -> JSONResponse:
    key = "message" if is_v2(path) else "error"
    return JSONResponse({key: message}, status_code=status)


def _answer(error: DomainError, status: int, path: str) -> JSONResponse:
    response = error_response(status, str(error), path)
    if isinstance(error, LimitExceeded):  # how long until the key's limit lets it through
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, error: DomainError) -> JSONResponse:
        path = request.url.path
        status = 422 if isinstance(error, Unprocessable) and is_v2(path) else status_of(error)
        return _answer(error, status, path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        path = request.url.path
        if is_v2(path):
            return error_response(422, describe(error.errors(), skip=("body", "query", "path")), path)
        return error_response(400, describe(error.errors(), skip=("body",)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code in (404, 405):  # routing's answers: only to a caller with a key
            try:
                await run_in_threadpool(principal, request)
            except (Unauthorized, LimitExceeded) as refused:  # the key's minute counts it too
                return _answer(refused, status_of(refused), request.url.path)
        message = error.detail if isinstance(error.detail, str) else "request failed"
        if error.status_code == 404 and message == "Not Found":
            message = "no such route"
        return error_response(error.status_code, message, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        if is_throttled(error):  # the SDK's retries were not enough: a moment's overload
            logger.warning("throttled past the SDK's retries", error=str(error))
            response = error_response(503, "the service is busy: try again in a moment", request.url.path)
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        logger.exception("unhandled error")
        return error_response(500, "internal error", request.url.path)
