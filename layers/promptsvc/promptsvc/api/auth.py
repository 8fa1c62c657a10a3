"""Authentication: every route depends on `principal`, which resolves the caller's API key
(`Authorization: Bearer KEY`, or a bare `KEY`). The OpenAPI document shows the scheme on each route
that depends on it (api/openapi.py)."""

from fastapi import Request

from promptsvc.api import deps
from promptsvc.domain.keys import Principal


def principal(request: Request) -> Principal:
    """The caller; the request counts in its key's minute (a 429 past the key's limit). FastAPI
    resolves a dependency once a request, so a request counts once."""
    caller = deps.keys(request).authenticate(request.headers.get("authorization"))
    deps.limits(request).admit_request(caller)
    return caller
