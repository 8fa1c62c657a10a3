"""What the `/v2/prompts` routes answer, as the published contract (OpenAPI) describes it.

The routes build their bodies with the domain's `view()`s; these models are the document's schemas,
and tests/e2e/test_fuzz_openapi.py checks every answer against them. The request models are the
domain's own (`NewRegistryPrompt`, `RegistryPromptPatch`).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promptsvc.domain.prompt_settings import PromptSettings, Role


class RegistryError(BaseModel):
    """Every error of the /v2 API (the orq SDK's shape)."""

    message: str = Field(description="what went wrong, naming the field or the rule")


class MirroredMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class PromptConfig(BaseModel):
    """The spec's deprecated mirror of `prompt` (camelCase `model_parameters`), kept in step."""

    messages: list[MirroredMessage]
    stream: bool
    model: str | None
    model_type: Literal["chat"]
    model_parameters: dict[str, Any]
    version: str | None = None


class StoredPrompt(PromptSettings):
    """The stored `prompt`: `version` is the id of the version it is."""


class RegistryPromptView(BaseModel):
    """A stored prompt entity."""

    id: str = Field(alias="_id", description="a ULID")
    type: Literal["prompt"]
    owner: str
    domain_id: str
    created: str
    updated: str
    created_by_id: str
    updated_by_id: str
    display_name: str
    path: str
    description: str | None
    prompt: StoredPrompt
    prompt_config: PromptConfig
    metadata: dict[str, Any]


class RegistryVersionView(BaseModel):
    """An immutable snapshot of a stored prompt."""

    id: str = Field(alias="_id", description="a ULID: the version id")
    prompt: StoredPrompt
    prompt_config: PromptConfig
    timestamp: str
    created_by_id: str
    updated_by_id: str
    description: str | None
    metadata: dict[str, Any]


class RegistryPromptList(BaseModel):
    object: Literal["list"]
    data: list[RegistryPromptView]
    has_more: bool


class RegistryVersionList(BaseModel):
    object: Literal["list"]
    data: list[RegistryVersionView]
    has_more: bool
