"""The usage route's answer, for the OpenAPI contract (`GET /prompt-svc/usage`)."""

from typing import Literal

from pydantic import BaseModel, Field


class UsageCounts(BaseModel):
    prompts: int = Field(description="prompts completed (cache hits included)")
    promptTokens: int = Field(description="input tokens of the completed prompts (cache hits: none)")
    completionTokens: int = Field(description="answer tokens of the completed prompts (cache hits: none)")
    failedAttempts: int = Field(
        description="runs that failed (retried, fallen back or abandoned); tokens not known"
    )
    cacheHits: int = Field(description="prompts answered from the response cache")


class UsageGroup(UsageCounts):
    day: str | None = Field(None, description="groupBy=day: the UTC day, YYYY-MM-DD")
    modelId: str | None = Field(None, description="groupBy=model: the model that answered or failed")


class Usage(BaseModel):
    """The usage counters from `from` to `to` (UTC days, both included; at most 92 days: more is
    a 400), by day or by model, and their total (docs/api.md, "Usage")."""

    usage: list[UsageGroup] = Field(description="only the days or models with usage, in order")
    total: UsageCounts
    from_: str = Field(alias="from", description="the first day")
    to: str = Field(description="the last day")
    groupBy: Literal["day", "model"]
    userId: str | None = Field(description="whose usage; null: every user's (an admin's read)")
