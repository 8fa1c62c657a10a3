"""JSON request bodies, read whatever the Content-Type says (curl and API Gateway callers often
send none), validated by a pydantic model, with errors that name the field."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from promptsvc.domain import bounded_json
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.validation import describe

M = TypeVar("M", bound=BaseModel)


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (within bounded_json's bounds); an empty body is an empty object."""
    raw = await request.body()  # bounded in size and read time by api/body_limit.py
    if not raw.strip():
        return {}
    body = bounded_json.loads(raw, "JSON body")
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def json_body(
    model: type[M], invalid: type[InvalidRequest] = InvalidRequest
) -> Callable[[Request], Awaitable[M]]:
    """A FastAPI dependency giving the body validated as `model`; a body that is not valid raises
    `invalid` (the registry's routes answer 422 for it, the queue's 400)."""

    async def dependency(request: Request) -> M:
        data = await json_object(request)
        try:
            return model.model_validate(data)
        except ValidationError as error:
            raise invalid(describe(error.errors(include_url=False), skip=("body",))) from None

    return dependency
