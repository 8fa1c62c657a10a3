"""Request and response models of the `/prompt-svc/keys` routes."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptsvc.domain.keys import (
    DEFAULT_GRACE_SECONDS,
    MAX_ALLOWED_MODELS,
    MAX_GRACE_SECONDS,
    KeyState,
    Role,
)
from promptsvc.domain.limits import MAX_LIMIT
from promptsvc.domain.names import ID_PATTERN

ModelId = Annotated[str, Field(min_length=1, max_length=256)]


class _Model(BaseModel):
    model_config = ConfigDict(defer_build=True)


class _Request(_Model):
    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)


Limit = Annotated[int, Field(ge=0, le=MAX_LIMIT)]


class KeyLimitsBody(_Request):
    """A key's own limits; an absent one is the deployment's default (the template's
    KeyRequestsPerMinute, KeyPromptsInFlight, KeyTokensPerDay); 0 is unlimited."""

    requestsPerMinute: Limit | None = Field(None, description="authenticated HTTP requests a minute")
    promptsInFlight: Limit | None = Field(None, description="prompts not yet finished at once")
    tokensPerDay: Limit | None = Field(None, description="prompt + completion tokens a UTC day")


class KeyLimitsView(_Model):
    """A key's own limits; null: the deployment's default."""

    requestsPerMinute: int | None = None
    promptsInFlight: int | None = None
    tokensPerDay: int | None = None


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


class CreatedKey(_Model):
    key: str = Field(description="the API key, shown only here")
    keyId: str
    userId: str
    role: Role
    prefix: str = Field(description="the start of the key that is not secret: psk_<keyId>_")
    expiresAt: str | None = None
    allowedModels: list[str] | None = None
    limits: KeyLimitsView | None = None


class RotatedKey(CreatedKey):
    graceEndsAt: str = Field(description="when the previous secret stops working")


class KeyView(_Model):
    """A key as listings show it: never its secret or a hash of it."""

    keyId: str
    prefix: str = Field(
        description="the start of the key that is not secret; empty for an operator's own key"
    )
    userId: str
    role: Role
    state: KeyState
    createdAt: str
    lastUsedAt: str | None = Field(
        None,
        description="within KEY_CACHE_SECONDS: recorded at most that often per key and function instance",
    )
    expiresAt: str | None = None
    graceEndsAt: str | None = Field(
        None, description="while rotating: when the previous secret stops working"
    )
    allowedModels: list[str] | None = None
    limits: KeyLimitsView | None = Field(
        None, description="the key's own limits (each null: the deployment's default)"
    )


class KeyPage(_Model):
    keys: list[KeyView]
    after: str | None = Field(None, description="pass back as `after` for the next page; absent on the last")
