"""Authentication: every route depends on `principal`, which resolves the caller's API key."""

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from promptsvc.api import deps
from promptsvc.domain.keys import Principal

# Documents the scheme in the OpenAPI document; never refuses by itself (`auto_error=False`): the
# key service reads the header, and also takes a bare KEY.
bearer = HTTPBearer(
    scheme_name="apiKey",
    bearerFormat="psk_<keyId>_<secret>",
    description="An API key: `Authorization: Bearer KEY` (a bare `KEY` is accepted too).",
    auto_error=False,
)


def principal(request: Request, _: HTTPAuthorizationCredentials | None = Security(bearer)) -> Principal:
    """The caller; the request counts in its key's minute (a 429 past the key's limit). FastAPI
    resolves a dependency once a request, so a request counts once."""
    caller = deps.keys(request).authenticate(request.headers.get("authorization"))
    deps.limits(request).admit_request(caller)
    return caller
