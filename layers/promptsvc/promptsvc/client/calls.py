"""The API's calls as data, shared by `Client` and `AsyncClient`: which request each one sends,
how safe it is to repeat, and how an error answer reads."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx

from promptsvc.client.errors import ApiError
from promptsvc.client.ids import new_prompt_id
from promptsvc.client.models import KeyLimits
from promptsvc.client.retry import Repeat

PAGE_SIZE = 100  # the API's largest list page
REGISTRY_PAGE_SIZE = 200
EVENTS_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    repeat: Repeat = Repeat.SAFE
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None


def add_prompt(
    prompt: str,
    *,
    model_id: str | None,
    thread_id: str | None,
    sync: bool,
    prompt_id: str | None,
    max_retries: int | None,
    template: str | None,
) -> Call:
    body: dict[str, Any] = {"prompt": prompt, "id": prompt_id or new_prompt_id(), "sync": sync}
    optional = {"modelId": model_id, "threadId": thread_id, "maxRetries": max_retries, "template": template}
    body.update({name: value for name, value in optional.items() if value is not None})
    return Call("POST", "/prompt-svc/prompt", Repeat.SAFE, body=body)


def _owner(user_id: str | None) -> dict[str, Any]:
    return {"userId": user_id} if user_id else {}


def get_prompt(prompt_id: str, user_id: str | None = None) -> Call:
    return Call("GET", f"/prompt-svc/prompt/{prompt_id}", params=_owner(user_id))


def cancel_prompt(prompt_id: str, user_id: str | None = None) -> Call:
    # A repeated cancel of a prompt the first one canceled would be a 409: not repeated on a 5xx.
    return Call(
        "POST", f"/prompt-svc/prompt/{prompt_id}/cancel", Repeat.NOT_DONE_ONLY, params=_owner(user_id)
    )


def remove_prompt(prompt_id: str, user_id: str | None = None) -> Call:
    # Likewise a 404 once the first one removed it.
    return Call("DELETE", f"/prompt-svc/prompt/{prompt_id}", Repeat.NOT_DONE_ONLY, params=_owner(user_id))


def list_prompts(*, status: str | None, thread_id: str | None, page_size: int, after: str | None) -> Call:
    filters = [
        {"op": "equals", "fields": [name], "jsonValues": json.dumps([value])}
        for name, value in (("status", status), ("threadId", thread_id))
        if value is not None
    ]
    query: dict[str, Any] = {"filters": filters, "limit": page_size}
    if after is not None:
        query["jsonAfter"] = after
    return Call("POST", "/prompt-svc/prompts", body={"query": query})  # a read: safe to repeat


def thread_events(
    thread_id: str, after: int, limit: int = EVENTS_PAGE_SIZE, user_id: str | None = None
) -> Call:
    return Call(
        "GET",
        f"/prompt-svc/thread/{thread_id}/events",
        params={"after": after, "limit": limit, **_owner(user_id)},
    )


def models() -> Call:
    return Call("GET", "/prompt-svc/models")


def usage(first: str | None, last: str | None, group_by: str, user_id: str | None) -> Call:
    params = {"from": first, "to": last, "groupBy": group_by, "userId": user_id}
    return Call("GET", "/prompt-svc/usage", params={k: v for k, v in params.items() if v is not None})


def registry_create(entity: dict[str, Any]) -> Call:
    # Each create makes a new stored prompt: repeated only when the first was not carried out.
    return Call("POST", "/v2/prompts", Repeat.NOT_DONE_ONLY, body=entity)


def registry_list(limit: int, starting_after: str | None) -> Call:
    params: dict[str, Any] = {"limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    return Call("GET", "/v2/prompts", params=params)


def registry_get(prompt_id: str) -> Call:
    return Call("GET", f"/v2/prompts/{prompt_id}")


def registry_versions(prompt_id: str, limit: int, starting_after: str | None) -> Call:
    params: dict[str, Any] = {"limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    return Call("GET", f"/v2/prompts/{prompt_id}/versions", params=params)


KEYS_PAGE_SIZE = 100


def key_limits(limits: KeyLimits | None) -> dict[str, int] | None:
    """A KeyLimits model as the API's `limits` (camelCase, only the limits set)."""
    if limits is None:
        return None
    return {k: v for k, v in limits.model_dump(by_alias=True).items() if v is not None}


def create_key(
    user_id: str,
    role: str,
    expires_at: str | None,
    allowed_models: list[str] | None,
    limits: dict[str, int] | None = None,
) -> Call:
    # Each create makes another key: repeated only when the first was not carried out.
    body: dict[str, Any] = {"userId": user_id, "role": role}
    if limits is not None:
        body["limits"] = dict(limits)
    if expires_at is not None:
        body["expiresAt"] = expires_at
    if allowed_models is not None:
        body["allowedModels"] = list(allowed_models)
    return Call("POST", "/prompt-svc/keys", Repeat.NOT_DONE_ONLY, body=body)


def list_keys(user_id: str | None, page_size: int, after: str | None) -> Call:
    params: dict[str, Any] = {"limit": page_size, **_owner(user_id)}
    if after is not None:
        params["after"] = after
    return Call("GET", "/prompt-svc/keys", params=params)


def rotate_key(key_id: str, grace_seconds: int | None) -> Call:
    # A second rotation would end the first one's new secret: repeated only when not carried out.
    body = {} if grace_seconds is None else {"graceSeconds": grace_seconds}
    return Call("POST", f"/prompt-svc/keys/{key_id}/rotate", Repeat.NOT_DONE_ONLY, body=body)


class Keep(Enum):
    """What `update_key` leaves as it is: the default of each of its fields."""

    KEEP = "keep"


KEEP = Keep.KEEP


def update_key(
    key_id: str,
    expires_at: str | Keep | None,
    allowed_models: list[str] | Keep | None,
    limits: KeyLimits | Keep | None,
) -> Call:
    # The same change twice is the same key: safe to repeat.
    body: dict[str, Any] = {}
    if expires_at is not KEEP:
        body["expiresAt"] = expires_at
    if allowed_models is not KEEP:
        body["allowedModels"] = None if allowed_models is None else list(allowed_models)
    if limits is not KEEP:
        body["limits"] = None if limits is None else limits.model_dump(by_alias=True, exclude_unset=True)
    return Call("PATCH", f"/prompt-svc/keys/{key_id}", Repeat.SAFE, body=body)


def revoke_key(key_id: str) -> Call:
    return Call("DELETE", f"/prompt-svc/keys/{key_id}", Repeat.NOT_DONE_ONLY)


def error_of(response: httpx.Response) -> ApiError:
    """The server's message: `error` (/prompt-svc) or `message` (/v2), else the body's text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("error") or body.get("message")
        if isinstance(message, str):
            return ApiError(response.status_code, message)
    return ApiError(response.status_code, response.text.strip() or response.reason_phrase)


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON (None for an empty body); ApiError for an error answer."""
    if response.status_code >= 400:
        raise error_of(response)
    return response.json() if response.content else None


PageCall = Callable[[int, str | None], Call]  # (page size, the last id seen) -> the page's call
