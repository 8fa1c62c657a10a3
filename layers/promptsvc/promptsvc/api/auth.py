"""Authentication: every route depends on `principal`, which resolves the caller's API key."""

from fastapi import Request

from promptsvc.domain.keys import Principal


def principal(request: Request) -> Principal:
    keys = request.app.state.keys
    return keys.authenticate(request.headers.get("authorization"))
