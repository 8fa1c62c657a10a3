"""The `/prompt-svc/*` routes. Thin: validate at the edge, call a service, shape the response."""

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse

from promptsvc.api import deps
from promptsvc.api.auth import principal
from promptsvc.api.body import json_body, json_object
from promptsvc.api.openapi import contract
from promptsvc.api.schemas import AddPromptRequest, RemovePromptRequest, add_prompt_response
from promptsvc.domain.errors import PayloadTooLarge
from promptsvc.domain.keys import Principal
from promptsvc.domain.names import ID_PATTERN
from promptsvc.domain.prompt import MAX_PROMPT_BYTES, public_view
from promptsvc.domain.thread_events import MAX_SEQ
from promptsvc.services.prompt_intake import PromptIntake, PromptRequest
from promptsvc.services.prompts import PromptService
from promptsvc.services.threads import MAX_LIMIT as MAX_EVENTS_PAGE
from promptsvc.services.threads import ThreadService
from promptsvc.settings import Settings

if TYPE_CHECKING:  # the list query language is imported by the first list request (list_prompts)
    from promptsvc.services.listing import PromptLister

# Prompt and thread ids are per user; an admin names whose with `?userId=` (default: their own).
# Path ids have the id syntax: a key DynamoDB would refuse (e.g. over 2 KB) is a 400, not a 500.
IdPath = Annotated[str, Path(pattern=ID_PATTERN)]

OwnerParam = Annotated[
    str | None, Query(pattern=ID_PATTERN, description="admin only: the user whose prompt or thread")
]

Prompts = Annotated[PromptService, Depends(deps.prompts)]

router = APIRouter(prefix="/prompt-svc", dependencies=[Depends(principal)])


@router.post(
    "/prompt",
    **contract("PromptResponse", 400, 404, 409, 413, also={202: "PromptResponse"}, body=AddPromptRequest),
)
def add_prompt(
    prompts: Prompts,
    caller: Principal = Depends(principal),
    body: AddPromptRequest = Depends(json_body(AddPromptRequest)),
    intake: PromptIntake = Depends(deps.intake),
    settings: Settings = Depends(deps.settings),
) -> Response:
    if body.prompt is not None and len(body.prompt.encode()) > MAX_PROMPT_BYTES:
        raise PayloadTooLarge(f"prompt is larger than {MAX_PROMPT_BYTES // 1024} KB")
    new = intake.new_prompt(
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
    result = prompts.add(caller, new, sync_wait=settings.sync_wait_seconds)
    return JSONResponse(add_prompt_response(result.prompt), status_code=202 if result.timed_out else 200)


@router.get("/prompt/{prompt_id}", **contract("PromptResponse", 404))
def get_prompt(
    prompts: Prompts, prompt_id: IdPath, userId: OwnerParam = None, caller: Principal = Depends(principal)
) -> dict[str, Any]:
    return add_prompt_response(prompts.get(caller, prompt_id, userId))


@router.post("/prompt/{prompt_id}/cancel", **contract("CanceledPrompt", 404, 409))
def cancel_prompt(
    prompts: Prompts, prompt_id: IdPath, userId: OwnerParam = None, caller: Principal = Depends(principal)
) -> dict[str, Any]:
    return {"prompt": public_view(prompts.cancel(caller, prompt_id, userId))}


@router.delete("/prompt/{prompt_id}", **contract("Empty", 404))
def delete_prompt(
    prompts: Prompts, prompt_id: IdPath, userId: OwnerParam = None, caller: Principal = Depends(principal)
) -> dict[str, Any]:
    prompts.remove(caller, prompt_id, userId)
    return {}


@router.post("/remove", **contract("Empty", 400, 404, 413, body=RemovePromptRequest))
def remove_prompt(
    prompts: Prompts,
    caller: Principal = Depends(principal),
    body: RemovePromptRequest = Depends(json_body(RemovePromptRequest)),
) -> dict[str, Any]:
    prompts.remove(caller, body.promptId, body.userId)
    return {}


@router.post("/prompts", **contract("PromptPage", 400, 413, body="ListPromptsRequest", body_required=False))
def list_prompts(
    caller: Principal = Depends(principal),
    body: dict = Depends(json_object),
    lister: "PromptLister" = Depends(deps.lister),
) -> dict[str, Any]:
    from promptsvc.domain.query import parse_query  # no other request reads a query: not at cold start

    query = parse_query(body.get("query"))
    page = lister.page(caller, query)
    response: dict[str, Any] = {"prompts": [public_view(item) for item in page.items]}
    if page.after is not None:
        response["after"] = page.after
    if page.count is not None:
        response["count"] = page.count
    return response


@router.get("/thread/{thread_id}/events", **contract("ThreadEvents", 400))
def thread_events(
    thread_id: IdPath,
    after: int = Query(0, ge=0, le=MAX_SEQ),
    limit: int = Query(100, ge=1, le=MAX_EVENTS_PAGE),
    userId: OwnerParam = None,
    caller: Principal = Depends(principal),
    threads: ThreadService = Depends(deps.threads),
) -> dict[str, Any]:
    page = threads.events(caller, thread_id, after, limit, userId)
    return {"events": page.events, "after": page.after}


@router.get("/models", **contract("Models"))
def list_models(
    prompts: Prompts,
) -> dict[str, Any]:
    catalog = prompts.catalog
    return {
        "defaultModelId": catalog.default_model_id,
        "models": [
            {"id": m.id, "name": m.name, "template": m.template, "engine": m.engine}
            for m in catalog.models.values()
        ],
    }
