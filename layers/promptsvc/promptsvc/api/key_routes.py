"""The `/prompt-svc/keys` routes: create and change (admin), list, rotate and revoke API keys.

A key's secret is in the answer of create and rotate only; listings show its id and `prefix`.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from promptsvc.api import deps
from promptsvc.api.auth import principal
from promptsvc.api.body import json_body
from promptsvc.api.key_schemas import (
    CreateKeyRequest,
    RotateKeyRequest,
    UpdateKeyRequest,
)
from promptsvc.api.openapi import contract
from promptsvc.domain.keys import ApiKeyRecord, Principal
from promptsvc.domain.limits import KeyLimits
from promptsvc.domain.names import ID_PATTERN
from promptsvc.services.keys import DEFAULT_PAGE, MAX_PAGE, KeyChanges, KeyService, NewKey

router = APIRouter(prefix="/prompt-svc", dependencies=[Depends(principal)])

KeyIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
Keys = Annotated[KeyService, Depends(deps.keys)]


def _shown(key: str, record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "key": key,
        "keyId": record.key_id,
        "userId": record.user_id,
        "role": str(record.role),
        "prefix": record.prefix,
        "expiresAt": record.expires_at or None,
        "allowedModels": None if record.allowed_models is None else list(record.allowed_models),
        "limits": record.limits.as_dict(),
    }


@router.post("/keys", **contract("CreatedKey", 400, 403, 413, status=201, body=CreateKeyRequest))
def create_key(
    keys: Keys,
    caller: Principal = Depends(principal),
    body: CreateKeyRequest = Depends(json_body(CreateKeyRequest)),
) -> dict[str, Any]:
    limits = KeyLimits.from_dict(body.limits.model_dump() if body.limits else None)
    new = NewKey(
        body.userId, body.role, expires_at=body.expiresAt, allowed_models=body.allowedModels, limits=limits
    )
    key, record = keys.create(caller, new)
    return _shown(key, record)


@router.get("/keys", **contract("KeyPage", 400, 403))
def list_keys(
    keys: Keys,
    caller: Principal = Depends(principal),
    userId: Annotated[
        str | None, Query(pattern=ID_PATTERN, description="admin: only this user's keys (default: all)")
    ] = None,
    after: Annotated[
        str | None, Query(max_length=512, description="the `after` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> dict[str, Any]:
    page = keys.list_keys(caller, userId, after, limit)
    now = keys.now()
    body: dict[str, Any] = {"keys": [record.view(now) for record in page.keys]}
    if page.after is not None:
        body["after"] = page.after
    return body


@router.post(
    "/keys/{key_id}/rotate",
    **contract("RotatedKey", 400, 404, 409, 413, body=RotateKeyRequest, body_required=False),
)
def rotate_key(
    keys: Keys,
    key_id: KeyIdPath,
    caller: Principal = Depends(principal),
    body: RotateKeyRequest = Depends(json_body(RotateKeyRequest)),
) -> dict[str, Any]:
    key, record = keys.rotate(caller, key_id, body.graceSeconds)
    return {**_shown(key, record), "graceEndsAt": record.previous_until}


@router.patch("/keys/{key_id}", **contract("KeyView", 400, 403, 404, 413, body=UpdateKeyRequest))
def update_key(
    keys: Keys,
    key_id: KeyIdPath,
    caller: Principal = Depends(principal),
    body: UpdateKeyRequest = Depends(json_body(UpdateKeyRequest)),
) -> dict[str, Any]:
    """An admin changes a key's expiry, allowed models or limits (a field left out is kept)."""
    given = body.model_fields_set
    changes = KeyChanges(
        expires_at=(body.expiresAt or "") if "expiresAt" in given else None,
        allowed_models=(body.allowedModels or ()) if "allowedModels" in given else None,
        limits=_given_limits(body),
    )
    return keys.update(caller, key_id, changes).view(keys.now())


def _given_limits(body: UpdateKeyRequest) -> dict[str, int | None] | None:
    if "limits" not in body.model_fields_set:
        return None
    if body.limits is None:  # `"limits": null`: every limit back to the default
        return dict.fromkeys(("requestsPerMinute", "promptsInFlight", "tokensPerDay"))
    return {name: getattr(body.limits, name) for name in body.limits.model_fields_set}


@router.delete("/keys/{key_id}", **contract("Empty", 404))
def revoke_key(keys: Keys, key_id: KeyIdPath, caller: Principal = Depends(principal)) -> dict[str, Any]:
    keys.revoke(caller, key_id)
    return {}
