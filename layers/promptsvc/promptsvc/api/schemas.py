"""The request models of the `/prompt-svc/*` routes and the bodies they answer (wire names follow the
spec and `@1backend/client`). What the answers look like, for the OpenAPI document, is in
`api/documentation/queue.py`."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptsvc.domain.names import ID_PATTERN
from promptsvc.domain.prompt import MAX_MAX_RETRIES, Prompt, public_view


class _Request(BaseModel):
    # strict: "5" is not an integer and 1 is not a boolean; unknown fields are ignored because the
    # published client sends more than this service reads. Built on first use (the first request
    # with a body), not at import: cold start.
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
