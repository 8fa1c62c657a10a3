"""Request and response models at the HTTP edge (wire names follow the spec and `@1backend/client`)."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptsvc.domain.names import ID_PATTERN
from promptsvc.domain.prompt import MAX_MAX_RETRIES, PUBLIC_FIELDS, Prompt, public_view
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


class _Model(BaseModel):
    """Built on first use, not at import: most are read only to write the OpenAPI document."""

    model_config = ConfigDict(defer_build=True)


class _Request(_Model):
    # strict: "5" is not an integer and 1 is not a boolean; unknown fields are ignored because the
    # published client sends more than this service reads.
    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)


class TextToTextParameters(_Request):
    template: str | None = None


class Parameters(_Request):
    textToText: TextToTextParameters | None = None


class LlamaCppParameters(_Request):
    template: str | None = None


class EngineParameters(_Request):
    llamaCppParameters: LlamaCppParameters | None = None


class AddPromptRequest(_Request):
    # The published schema also says what the validators below check: `prompt` (not blank) or
    # `promptConfigId`, and `promptConfigVersion`/`variables` only with `promptConfigId`.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
                {"required": ["promptConfigId"], "properties": {"promptConfigId": {"type": "string"}}},
            ],
            "dependentRequired": {"promptConfigVersion": ["promptConfigId"], "variables": ["promptConfigId"]},
        }
    )

    id: str | None = Field(None, pattern=ID_PATTERN)
    # required, unless a stored prompt (promptConfigId) is run
    prompt: str | None = Field(None, json_schema_extra={"pattern": r"\S"})
    modelId: str | None = None
    template: str | None = None
    threadId: str | None = Field(None, pattern=ID_PATTERN)
    maxRetries: int | None = Field(None, ge=0, le=MAX_MAX_RETRIES)
    sync: bool | None = None
    parameters: Parameters | None = None
    engineParameters: EngineParameters | None = None
    # Run a stored prompt (/v2/prompts): its messages, with `{{name}}` filled from `variables`.
    promptConfigId: str | None = Field(None, min_length=1, max_length=128)
    promptConfigVersion: str | None = Field(None, min_length=1, max_length=128)
    variables: dict[str, str | int | float | bool | None] | None = None

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("prompt must not be empty")
        return value

    @model_validator(mode="after")
    def _prompt_or_stored(self) -> "AddPromptRequest":
        if self.prompt is None and not self.promptConfigId:
            raise ValueError("prompt: field required (or name a stored prompt with promptConfigId)")
        if self.promptConfigId is None and (self.promptConfigVersion or self.variables):
            raise ValueError("promptConfigVersion and variables need promptConfigId")
        return self

    def requested_template(self) -> str | None:
        """The template from any of the places clients put it, the top-level field first."""
        if self.template:
            return self.template
        if self.parameters and self.parameters.textToText and self.parameters.textToText.template:
            return self.parameters.textToText.template
        llama = self.engineParameters.llamaCppParameters if self.engineParameters else None
        return llama.template if llama and llama.template else None


class RemovePromptRequest(_Request):
    promptId: str = Field(pattern=ID_PATTERN)  # an empty or over-long id is a 400, not a 500
    userId: str | None = Field(None, pattern=ID_PATTERN, description="admin only: whose prompt")


def response_message(prompt: Prompt) -> dict[str, Any] | None:
    """The answer as a chat message (`ChatSvcMessage` in the JS client), once there is one."""
    if prompt.status != "completed":
        return None
    return {
        "id": f"msg_{prompt.id}",
        "threadId": prompt.threadId,
        "userId": prompt.userId,
        "text": prompt.answer,
        "createdAt": prompt.updatedAt,
        "updatedAt": prompt.updatedAt,
    }


def add_prompt_response(prompt: Prompt) -> dict[str, Any]:
    body: dict[str, Any] = {"answer": prompt.answer, "prompt": public_view(prompt)}
    message = response_message(prompt)
    if message is not None:
        body["responseMessage"] = message
    return body


# -- the published contract (OpenAPI) ----------------------------------------------------------
# The models below describe what the routes answer and what /prompt-svc/prompts reads; they are the
# OpenAPI document's schemas. The routes keep building their bodies as before (add_prompt_response,
# public_view, parse_query): tests/e2e/test_fuzz_openapi.py checks every answer against these.

PromptField = Literal[PUBLIC_FIELDS]  # type: ignore[valid-type]
QueryValue = Annotated[str, Field(max_length=MAX_VALUE_CHARS)] | int | float | bool | None


class _Doc(_Model):
    model_config = ConfigDict(extra="allow", defer_build=True)


class QueueError(_Model):
    """Every error of the /prompt-svc API."""

    error: str = Field(description="what went wrong, naming the field or the rule")


class PromptView(_Model):
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


class ResponseMessage(_Model):
    """The answer as a chat message (`ChatSvcMessage` of the JS client)."""

    id: str
    threadId: str
    userId: str
    text: str
    createdAt: str
    updatedAt: str


class PromptResponse(_Model):
    """The add and get answer."""

    answer: str
    prompt: PromptView
    responseMessage: ResponseMessage | None = Field(None, description="there once the prompt is completed")


class CanceledPrompt(_Model):
    prompt: PromptView


class Empty(_Model):
    """An empty JSON object."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


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


class PromptPage(_Model):
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


class ThreadEvent(_Model):
    seq: int
    threadId: str
    promptId: str
    type: EventType
    createdAt: str
    status: Status | Literal[REMOVED] | None = None  # type: ignore[valid-type]
    error: str | None = None
    text: str | None = None


class ThreadEvents(_Model):
    events: list[ThreadEvent]
    after: int = Field(description="pass back as `after` for the next page")


class CatalogModel(_Model):
    id: str
    name: str
    template: str
    engine: str


class Models(_Model):
    defaultModelId: str
    models: list[CatalogModel]
