"""The request models of the `/prompt-svc/keys` routes (their answers, for the OpenAPI document, are in
`api/documentation/keys.py`)."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptsvc.domain.keys import (
    DEFAULT_GRACE_SECONDS,
    MAX_ALLOWED_MODELS,
    MAX_GRACE_SECONDS,
    Role,
)
from promptsvc.domain.limits import MAX_LIMIT
from promptsvc.domain.names import ID_PATTERN

ModelId = Annotated[str, Field(min_length=1, max_length=256)]


class _Request(BaseModel):
    # built on first use (the first request with a body), not at import: cold start
    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)


Limit = Annotated[int, Field(ge=0, le=MAX_LIMIT)]


class KeyLimitsBody(_Request):
    """A key's own limits; an absent one is the deployment's default (the template's
    KeyRequestsPerMinute, KeyPromptsInFlight, KeyTokensPerDay); 0 is unlimited."""

    requestsPerMinute: Limit | None = Field(None, description="authenticated HTTP requests a minute")
    promptsInFlight: Limit | None = Field(None, description="prompts not yet finished at once")
    tokensPerDay: Limit | None = Field(None, description="prompt + completion tokens a UTC day")


class CreateKeyRequest(_Request):
    userId: str = Field(pattern=ID_PATTERN)
    role: Role = Role.USER
    expiresAt: str | None = Field(
        None,
        max_length=64,
        description="RFC 3339 with an offset (e.g. 2030-01-31T00:00:00Z), in the future; absent: never",
    )
    allowedModels: list[ModelId] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ALLOWED_MODELS,
        description="catalog model ids this key may run prompts on; absent: every model",
    )
    limits: KeyLimitsBody | None = Field(
        None, description="this key's own limits; absent (or a limit absent): the deployment's default"
    )

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: Any) -> Any:
        return Role(value) if isinstance(value, str) and value in Role.__members__.values() else value


class UpdateKeyRequest(_Request):
    """Each field given replaces the key's; one left out is kept. The secret never changes here."""

    expiresAt: str | None = Field(
        None, max_length=64, description="RFC 3339 with an offset, in the future; null: never expires"
    )
    allowedModels: list[ModelId] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ALLOWED_MODELS,
        description="catalog model ids this key may run prompts on; null: every model",
    )
    limits: KeyLimitsBody | None = Field(
        None,
        description="the limits to change (each null: back to the deployment's default); the others are kept",
    )


class RotateKeyRequest(_Request):
    graceSeconds: int = Field(
        DEFAULT_GRACE_SECONDS,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="how long the current secret keeps working (default an hour, at most 7 days)",
    )
