"""The seed client's last two calls: `promptTypes` (`POST /prompt-svc/types`) and
`subscribeToPromptResponses` (`GET /prompt-svc/prompts/{threadId}/responses/subscribe`, Server-Sent
Events). Thin: validate at the edge, open the subscription (its errors are JSON answers: nothing is
sent before it is open), then stream what services/response_stream.py follows.

The published client awaits the whole body, so a subscription ends: with its first `done` chunk, or
after `SUBSCRIBE_WAIT_SECONDS` (25 s, under API Gateway's 30 s). Under uvicorn (`promptsvc dev`)
each event goes out as it is stored; in Lambda, Mangum buffers the body, so the answer is the
events up to the `done` chunk or the bound, at once (docs/api.md, "Subscribe to a thread's responses").
"""

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from promptsvc import wiring
from promptsvc.api import deps
from promptsvc.api.auth import principal
from promptsvc.api.body import json_object
from promptsvc.api.openapi import REF_TEMPLATE, contract
from promptsvc.api.routes import IdPath, OwnerParam, Prompts
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.keys import Principal
from promptsvc.domain.response_stream import CHUNK_TYPES
from promptsvc.domain.thread_events import MAX_SEQ
from promptsvc.services.response_stream import Chunk, ResponseStream
from promptsvc.settings import Settings

logger = Logger(child=True)

router = APIRouter(prefix="/prompt-svc", dependencies=[Depends(principal)])

_SEQ_DIGITS = len(str(MAX_SEQ))


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


# One event of the stream (OpenAPI 3.1: a text/event-stream's schema describes each event).
SSE_EVENT = {
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "string", "description": "the thread event's seq: send it back as Last-Event-ID"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": REF_TEMPLATE.format(model="StreamChunk")},
        },
        "event": {"type": "string", "description": "none sent (`message`)"},
    },
}


def install(app: FastAPI) -> None:
    """Serve these routes on the app (api/app.py), with the service they use."""
    app.state.responses = ResponseStream(wiring.thread_event_log(app.state.settings))
    app.include_router(router)


def _responses(request: Request) -> ResponseStream:
    return request.app.state.responses


@router.post("/types", **contract("PromptTypes", 400, 413, body="PromptTypesRequest", body_required=False))
def prompt_types(prompts: Prompts, _: dict[str, Any] = Depends(json_object)) -> dict[str, Any]:
    return {"promptTypes": prompts.catalog.prompt_types(), "chunkTypes": list(CHUNK_TYPES)}


LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        pattern=rf"^[0-9]{{1,{_SEQ_DIGITS}}}$",
        description="the `id` of the last event received (a browser's EventSource sends it when it "
        "reconnects): go on after it; wins over `after`",
    ),
]


@router.get(
    "/prompts/{thread_id}/responses/subscribe",
    response_class=EventStream,
    **contract(None, 400, stream={EventStream.media_type: {"schema": SSE_EVENT}}),
)
async def subscribe_to_prompt_responses(
    request: Request,
    thread_id: IdPath,
    after: int | None = Query(
        None,
        ge=0,
        le=MAX_SEQ,
        description="go on after this event id; absent: from the prompt being answered, or the next",
    ),
    last_event_id: LastEventId = None,
    userId: OwnerParam = None,
    caller: Principal = Depends(principal),
    responses: ResponseStream = Depends(_responses),
    settings: Settings = Depends(deps.settings),
) -> EventStream:
    if last_event_id is not None:
        after = int(last_event_id)
        if after > MAX_SEQ:
            raise InvalidRequest(f"Last-Event-ID must be an event id from 0 to {MAX_SEQ}")
    cursor = await run_in_threadpool(responses.open, caller, thread_id, after, userId)
    chunks = responses.follow(cursor, settings.subscribe_wait_seconds, gone=request.is_disconnected)
    return EventStream(_events(chunks), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(chunks: AsyncIterator[Chunk]) -> AsyncIterator[str]:
    """Each chunk as an SSE event, its id the event's seq. A failure once the answer has started
    ends it (logged): the client goes on after the last id it got."""
    try:
        async for seq, chunk in chunks:
            yield f"id: {seq}\ndata: {json.dumps(chunk, separators=(',', ':'))}\n\n"
    except Exception:
        logger.exception("a responses subscription failed while streaming; it ends here")
