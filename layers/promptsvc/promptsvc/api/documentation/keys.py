"""What the `/prompt-svc/keys` routes answer, as the published contract (OpenAPI) describes it (the
routes build their bodies with the key service's views)."""

from pydantic import BaseModel, Field

from promptsvc.domain.keys import KeyState, Role


class KeyLimitsView(BaseModel):
    """A key's own limits; null: the deployment's default."""

    requestsPerMinute: int | None = None
    promptsInFlight: int | None = None
    tokensPerDay: int | None = None


class CreatedKey(BaseModel):
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


class KeyView(BaseModel):
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


class KeyPage(BaseModel):
    keys: list[KeyView]
    after: str | None = Field(None, description="pass back as `after` for the next page; absent on the last")
