"""The `/v2/prompts` routes: the prompt registry, wire-compatible with the `orq-ai-sdk` client.

Malformed JSON and bad cursors are 400, body and query validation 422 (naming the field), another
user's prompt 404 like a missing one; errors are `{"message": ...}` (see api/errors.py).
"""

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from promptsvc.api import deps
from promptsvc.api.auth import principal
from promptsvc.api.body import json_body
from promptsvc.api.openapi import contract
from promptsvc.domain.errors import Unprocessable
from promptsvc.domain.keys import Principal
from promptsvc.domain.registry import (
    DEFAULT_PAGE,
    MAX_PAGE,
    NewRegistryPrompt,
    Page,
    PageRequest,
    RegistryPromptPatch,
)
from promptsvc.services.registry import RegistryService

router = APIRouter(prefix="/v2/prompts", dependencies=[Depends(principal)])


def page_request(
    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> PageRequest:
    return PageRequest.parse(limit, starting_after, ending_before)


def envelope(page: Page[Any]) -> dict[str, Any]:
    return {"object": "list", "data": [item.view() for item in page.items], "has_more": page.has_more}


@router.post("", **contract("RegistryPromptView", 400, 409, 413, 422, registry=True, body=NewRegistryPrompt))
def create_prompt(
    caller: Principal = Depends(principal),
    new: NewRegistryPrompt = Depends(json_body(NewRegistryPrompt, Unprocessable)),
    service: RegistryService = Depends(deps.registry),
) -> dict[str, Any]:
    return service.create(caller.user_id, new).view()


@router.get("", **contract("RegistryPromptList", 400, 422, registry=True))
def list_prompts(
    caller: Principal = Depends(principal),
    page: PageRequest = Depends(page_request),
    service: RegistryService = Depends(deps.registry),
) -> dict[str, Any]:
    return envelope(service.list_prompts(caller.user_id, page))


@router.get("/{prompt_id}", **contract("RegistryPromptView", 404, registry=True))
def get_prompt(
    prompt_id: str, caller: Principal = Depends(principal), service: RegistryService = Depends(deps.registry)
) -> dict[str, Any]:
    return service.get(caller.user_id, prompt_id).view()


@router.patch(
    "/{prompt_id}",
    **contract("RegistryPromptView", 400, 404, 409, 413, 422, registry=True, body=RegistryPromptPatch),
)
def update_prompt(
    prompt_id: str,
    caller: Principal = Depends(principal),
    patch: RegistryPromptPatch = Depends(json_body(RegistryPromptPatch, Unprocessable)),
    service: RegistryService = Depends(deps.registry),
) -> dict[str, Any]:
    return service.update(caller.user_id, prompt_id, patch).view()


@router.delete("/{prompt_id}", response_class=Response, **contract(None, 404, registry=True))
def delete_prompt(
    prompt_id: str, caller: Principal = Depends(principal), service: RegistryService = Depends(deps.registry)
) -> Response:
    service.delete(caller.user_id, prompt_id)
    return Response(status_code=200)  # the SDK accepts only a 200 here (no 204)


@router.get("/{prompt_id}/versions", **contract("RegistryVersionList", 400, 404, 422, registry=True))
def list_versions(
    prompt_id: str,
    caller: Principal = Depends(principal),
    page: PageRequest = Depends(page_request),
    service: RegistryService = Depends(deps.registry),
) -> dict[str, Any]:
    return envelope(service.list_versions(caller.user_id, prompt_id, page))


@router.get("/{prompt_id}/versions/{version_id}", **contract("RegistryVersionView", 404, registry=True))
def get_version(
    prompt_id: str,
    version_id: str,
    caller: Principal = Depends(principal),
    service: RegistryService = Depends(deps.registry),
) -> dict[str, Any]:
    return service.get_version(caller.user_id, prompt_id, version_id).view()
