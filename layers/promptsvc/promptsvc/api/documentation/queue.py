"""What the `/prompt-svc/*` routes answer, and the list query they read as a plain JSON object, as
the published contract (OpenAPI) describes them. The routes build their bodies themselves
(`api.schemas.add_prompt_response`, `public_view`, `parse_query`); tests/e2e/test_fuzz_openapi.py
checks every answer against these."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptsvc.domain.prompt import PUBLIC_FIELDS
from promptsvc.domain.query import (
    COUNT_CEILING,
    MAX_FILTER_NODES,
    MAX_FILTERS,
    MAX_LIMIT,
    MAX_OR_DEPTH,
    MAX_ORDER_BYS,
    MAX_VALUE_CHARS,
    MAX_VALUES,
    SORTING_TYPES,
    Op,
)
from promptsvc.domain.status import Status
from promptsvc.domain.thread_events import REMOVED, EventType

PromptField = Literal[PUBLIC_FIELDS]  # type: ignore[valid-type]
QueryValue = Annotated[str, Field(max_length=MAX_VALUE_CHARS)] | int | float | bool | None


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class QueueError(BaseModel):
    """Every error of the /prompt-svc API."""

    error: str = Field(description="what went wrong, naming the field or the rule")


class PromptView(BaseModel):
    """A prompt as the API shows it: the spec's schema fields, plus where it came from and who answered."""

    id: str
    prompt: str
    modelId: str
    template: str
    threadId: str
    userId: str
    status: Status
    runCount: int
    maxRetries: int
    lastRun: str = Field(description="RFC 3339 UTC time of the last run's start; empty before the first")
    error: str
    sync: bool
    createdAt: str
    updatedAt: str
    promptConfigId: str = Field(description="the stored prompt (/v2/prompts) run; empty for a plain prompt")
    promptConfigVersion: str
    answeredBy: str = Field(description="the model whose answer it is (routing may fall back)")
    promptTokens: int = Field(description="tokens of the answering run's input (0 until completed)")
    completionTokens: int = Field(description="tokens of the answer (0 until completed)")
    finishReason: str = Field(
        description="why the answer ended: `stop`, `length`, ... as the engine said; `cached`: from the "
        "response cache; empty until completed"
    )
    usageEstimated: bool = Field(
        description="a token count the engine did not report was estimated: ceil(UTF-8 bytes / 4)"
    )


class ResponseMessage(BaseModel):
    """The answer as a chat message (`ChatSvcMessage` of the JS client)."""

    id: str
    threadId: str
    userId: str
    text: str
    createdAt: str
    updatedAt: str


class PromptResponse(BaseModel):
    """The add and get answer."""

    answer: str
    prompt: PromptView
    responseMessage: ResponseMessage | None = Field(None, description="there once the prompt is completed")


class CanceledPrompt(BaseModel):
    prompt: PromptView


class Empty(BaseModel):
    """An empty JSON object."""

    model_config = ConfigDict(extra="forbid")


class QueryFilter(_Doc):
    """Several `fields` OR together; values as `jsonValues`/`valuesJson` (a JSON-encoded array) or
    `values`; `or` takes `subFilters` instead."""

    op: Op
    fields: list[PromptField] | None = None
    jsonValues: str | None = Field(None, description=f"a JSON-encoded array of at most {MAX_VALUES} values")
    valuesJson: str | None = None
    values: list[QueryValue] | None = Field(None, max_length=MAX_VALUES)
    subFilters: list["QueryFilter"] | None = Field(
        None, description=f"`or` only; at most {MAX_FILTER_NODES} filters in all, `or` {MAX_OR_DEPTH} deep"
    )


class QueryOrderBy(_Doc):
    field: PromptField | None = None
    desc: bool | None = None
    randomize: bool | None = None
    sortingType: Literal[tuple(sorted(SORTING_TYPES))] | None = None  # type: ignore[valid-type]


class PromptQuery(_Doc):
    filters: list[QueryFilter] | None = Field(None, max_length=MAX_FILTERS)
    orderBys: list[QueryOrderBy] | None = Field(None, max_length=MAX_ORDER_BYS)
    limit: int | None = Field(None, ge=0, le=MAX_LIMIT, description="0 or absent: the default, 20")
    count: bool | None = None
    jsonAfter: str | None = Field(None, description="the `after` of the previous page")
    afterJson: str | None = None


class ListPromptsRequest(_Doc):
    query: PromptQuery | None = None


class PromptPage(BaseModel):
    prompts: list[PromptView]
    after: str | None = Field(
        None,
        description="a cursor for the next page; absent on the last page. A page may hold fewer than "
        "`limit` prompts, even none, and a cursor: filters no key serves read a bounded number of items",
    )
    count: int | None = Field(
        None,
        description=f"the filtered total, when the query asked for it (a 400 past {COUNT_CEILING:,} "
        "items to read)",
    )


class ThreadEvent(BaseModel):
    seq: int
    threadId: str
    promptId: str
    type: EventType
    createdAt: str
    status: Status | Literal[REMOVED] | None = None  # type: ignore[valid-type]
    error: str | None = None
    text: str | None = None


class ThreadEvents(BaseModel):
    events: list[ThreadEvent]
    after: int = Field(description="pass back as `after` for the next page")


class CatalogModel(BaseModel):
    id: str
    name: str
    template: str
    engine: str


class Models(BaseModel):
    defaultModelId: str
    models: list[CatalogModel]
