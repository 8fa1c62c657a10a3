"""What the API answers, as typed models (snake_case attributes, the API's camelCase on the wire).

Unknown fields are kept (`extra="allow"`), so a newer server does not break an older client.
"""

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# A prompt's statuses that are final; a thread's closing status event also says `removed`.
TERMINAL_STATUSES = frozenset({"completed", "abandoned", "canceled"})
CLOSING_EVENT_STATUSES = TERMINAL_STATUSES | {"removed"}


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Prompt(_Wire):
    """A prompt. `answer` is there on an add or a get (empty until it is generated), not in lists
    or the cancel answer (None)."""

    id: str
    prompt: str = ""
    model_id: str = ""
    template: str = ""
    thread_id: str = ""
    user_id: str = ""
    status: str
    run_count: int = 0
    max_retries: int = 0
    last_run: str = ""
    error: str = ""
    sync: bool = False
    created_at: str = ""
    updated_at: str = ""
    prompt_config_id: str = ""
    prompt_config_version: str = ""
    answered_by: str = ""
    # Usage of the answering run, once completed (docs/api.md): `finish_reason` "cached" for an
    # answer from the response cache; `usage_estimated` when a count was estimated.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    usage_estimated: bool = False
    answer: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> "Prompt":
        """From an add or get answer, `{answer, prompt, responseMessage?}` (or a cancel's `{prompt}`)."""
        return cls.model_validate({**body["prompt"], "answer": body.get("answer")})


class ThreadEvent(_Wire):
    """One event of a thread (docs/threads.md): `delta` (with `text`), `reset` (drop this prompt's
    text: a retry starts again), `status` (with `status`, maybe `error`) or `gap` (a seq whose
    writer died: nothing else)."""

    seq: int
    type: str
    thread_id: str = ""
    prompt_id: str = ""
    created_at: str = ""
    status: str | None = None
    error: str | None = None
    text: str | None = None

    @property
    def closes_prompt(self) -> bool:
        """The prompt's last event: it left the system (completed, abandoned, canceled, removed)."""
        return self.type == "status" and self.status in CLOSING_EVENT_STATUSES


class CatalogModel(_Wire):
    id: str
    name: str = ""
    template: str = ""
    engine: str = ""


class Models(_Wire):
    default_model_id: str
    models: list[CatalogModel]


class UsageCounts(_Wire):
    prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed_attempts: int = 0
    cache_hits: int = 0


class UsageGroup(UsageCounts):
    """One day's (`day`) or one model's (`model_id`) counters."""

    day: str | None = None
    model_id: str | None = None


class Usage(_Wire):
    """`GET /prompt-svc/usage`: the counters from `first` to `last` (UTC days), grouped, and their
    total. `user_id` None: every user's (an admin's read)."""

    usage: list[UsageGroup]
    total: UsageCounts
    first: str = Field(validation_alias=AliasChoices("from", "first"), serialization_alias="from")
    last: str = Field(validation_alias=AliasChoices("to", "last"), serialization_alias="to")
    group_by: str
    user_id: str | None = None


class KeyLimits(_Wire):
    """A key's own limits (docs/api.md, "Limits per key"); None: the deployment's default; 0:
    unlimited."""

    requests_per_minute: int | None = None
    prompts_in_flight: int | None = None
    tokens_per_day: int | None = None


class ApiKey(_Wire):
    """An API key as listings show it: never its secret. `state`: active, rotating (its previous
    secret works until `grace_ends_at`) or expired."""

    key_id: str
    prefix: str = ""
    user_id: str = ""
    role: str = ""
    state: str = ""
    created_at: str = ""
    last_used_at: str | None = None
    expires_at: str | None = None
    grace_ends_at: str | None = None
    allowed_models: list[str] | None = None
    limits: KeyLimits | None = None


class NewApiKey(_Wire):
    """A key just made or rotated: `key` is its secret, shown only this once."""

    key: str
    key_id: str
    user_id: str = ""
    role: str = ""
    prefix: str = ""
    expires_at: str | None = None
    allowed_models: list[str] | None = None
    limits: KeyLimits | None = None
    grace_ends_at: str | None = None  # a rotation's: when the previous secret stops working


class _Registry(BaseModel):
    # The /v2 API's own names are snake_case already; its ids are `_id`.
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: str = Field(validation_alias=AliasChoices("_id", "id"), serialization_alias="_id")


class RegistryPrompt(_Registry):
    """A stored prompt of the registry (docs/registry.md); `prompt` holds model, messages and
    settings, with `prompt["version"]` the current version's id."""

    type: str = "prompt"
    owner: str = ""
    display_name: str
    path: str
    description: str | None = None
    prompt: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created: str = ""
    updated: str = ""


class RegistryVersion(_Registry):
    """An immutable snapshot of a stored prompt."""

    prompt: dict[str, Any] = Field(default_factory=dict)
    timestamp: str = ""
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
