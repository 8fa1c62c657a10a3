"""The `/prompt-svc/*` routes. Thin: validate at the edge, call a service, shape the response."""

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from promptsvc.api.auth import principal
from promptsvc.api.body import json_body, json_object
from promptsvc.api.schemas import (
    AddPromptRequest,
    CreateKeyRequest,
    RemovePromptRequest,
    add_prompt_response,
)
from promptsvc.domain.errors import PayloadTooLarge
from promptsvc.domain.keys import Principal
from promptsvc.domain.prompt import MAX_PROMPT_BYTES, public_view
from promptsvc.domain.query import parse_query
from promptsvc.services.prompt_intake import PromptRequest

router = APIRouter(prefix="/prompt-svc", dependencies=[Depends(principal)])


@router.post("/prompt")
def add_prompt(
    request: Request,
    caller: Principal = Depends(principal),
    body: AddPromptRequest = Depends(json_body(AddPromptRequest)),
) -> Response:
    state = request.app.state
    if body.prompt is not None and len(body.prompt.encode()) > MAX_PROMPT_BYTES:
        raise PayloadTooLarge(f"prompt is larger than {MAX_PROMPT_BYTES // 1024} KB")
    new = state.intake.new_prompt(
        caller.user_id,
        PromptRequest(
            id=body.id,
            prompt=body.prompt,
            modelId=body.modelId,
            template=body.requested_template(),
            threadId=body.threadId,
            maxRetries=body.maxRetries,
            sync=bool(body.sync),
            promptConfigId=body.promptConfigId,
            promptConfigVersion=body.promptConfigVersion,
            variables=body.variables,
        ),
    )
    result = state.prompts.add(caller, new, sync_wait=state.settings.sync_wait_seconds)
    return JSONResponse(add_prompt_response(result.prompt), status_code=202 if result.timed_out else 200)


@router.get("/prompt/{prompt_id}")
def get_prompt(prompt_id: str, request: Request, caller: Principal = Depends(principal)) -> dict[str, Any]:
    return add_prompt_response(request.app.state.prompts.get(caller, prompt_id))


@router.post("/prompt/{prompt_id}/cancel")
def cancel_prompt(prompt_id: str, request: Request, caller: Principal = Depends(principal)) -> dict[str, Any]:
    return {"prompt": public_view(request.app.state.prompts.cancel(caller, prompt_id))}


@router.delete("/prompt/{prompt_id}")
def delete_prompt(prompt_id: str, request: Request, caller: Principal = Depends(principal)) -> dict[str, Any]:
    request.app.state.prompts.remove(caller, prompt_id)
    return {}


@router.post("/remove")
def remove_prompt(
    request: Request,
    caller: Principal = Depends(principal),
    body: RemovePromptRequest = Depends(json_body(RemovePromptRequest)),
) -> dict[str, Any]:
    request.app.state.prompts.remove(caller, body.promptId)
    return {}


@router.post("/prompts")
def list_prompts(
    request: Request, caller: Principal = Depends(principal), body: dict = Depends(json_object)
) -> dict[str, Any]:
    query = parse_query(body.get("query"))
    page = request.app.state.lister.page(caller, query)
    response: dict[str, Any] = {"prompts": [public_view(item) for item in page.items]}
    if page.after is not None:
        response["after"] = page.after
    if page.count is not None:
        response["count"] = page.count
    return response


@router.get("/thread/{thread_id}/events")
def thread_events(
    thread_id: str,
    request: Request,
    after: int = 0,
    limit: int = 100,
    caller: Principal = Depends(principal),
) -> dict[str, Any]:
    page = request.app.state.threads.events(caller, thread_id, after, limit)
    return {"events": page.events, "after": page.after}


@router.get("/models")
def list_models(request: Request) -> dict[str, Any]:
    catalog = request.app.state.prompts.catalog
    return {
        "defaultModelId": catalog.default_model_id,
        "models": [
            {"id": m.id, "name": m.name, "template": m.template, "engine": m.engine}
            for m in catalog.models.values()
        ],
    }


@router.post("/keys", status_code=201)
def create_key(
    request: Request,
    caller: Principal = Depends(principal),
    body: CreateKeyRequest = Depends(json_body(CreateKeyRequest)),
) -> dict[str, Any]:
    key, record = request.app.state.keys.create(caller, body.userId, body.role)
    return {"key": key, "keyId": record.key_id, "userId": record.user_id, "role": str(record.role)}


@router.delete("/keys/{key_id}")
def revoke_key(key_id: str, request: Request, caller: Principal = Depends(principal)) -> dict[str, Any]:
    request.app.state.keys.revoke(caller, key_id)
    return {}
