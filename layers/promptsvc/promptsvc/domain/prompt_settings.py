"""The `prompt` field of a stored prompt: model, messages, sampling parameters and routing settings.

Pure pydantic, no I/O. Unknown keys are kept (on the settings and on each message), so a client of
a newer API version loses nothing. Keys the published `orq-ai-sdk` knows are checked against the
shapes its response models accept: a stored value it cannot parse would break every later read of
the prompt (and every list page holding it) for SDK users, not just the write that stored it.
"""

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from promptsvc.domain.validation import describe, untagged

ROUTING_KEYS = frozenset({"fallbacks", "retry", "cache", "load_balancer", "timeout"})

# Keys that describe the prompt rather than parameterize a model call.
_NON_ENGINE_KEYS = frozenset({"model", "messages", "version", "name"}) | ROUTING_KEYS

Role = Literal["system", "user", "assistant", "tool", "developer"]


class _Strict(BaseModel):
    """Nested settings objects: a misspelt key is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class _Open(BaseModel):
    """Nested objects whose shape belongs to a provider: known keys checked, others kept."""

    model_config = ConfigDict(extra="allow", defer_build=True)


# -- messages ---------------------------------------------------------------------------------


class ToolCallFunction(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction
    index: int | None = Field(None, ge=0)


class _CacheControl(_Strict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class _TextPart(_Open):
    type: Literal["text"]
    text: str
    cache_control: _CacheControl | None = None


class _ImageUrl(_Open):
    url: str
    detail: Literal["low", "high", "auto"] | None = None


class _ImagePart(_Open):
    type: Literal["image_url"]
    image_url: _ImageUrl


class _InputAudio(_Open):
    data: str
    format: Literal["mp3", "wav"]


class _AudioPart(_Open):
    type: Literal["input_audio"]
    input_audio: _InputAudio


class _File(_Open):
    file_data: str | None = None
    uri: str | None = None
    mimeType: str | None = None
    file_id: str | None = None
    filename: str | None = None


class _FilePart(_Open):
    type: Literal["file"]
    file: _File


class _RefusalPart(_Open):
    type: Literal["refusal"]
    refusal: str | None = None


class _ReasoningPart(_Open):
    type: Literal["reasoning"]
    reasoning: str
    signature: str


class _RedactedReasoningPart(_Open):
    type: Literal["redacted_reasoning"]
    data: str


# A message's content parts, told apart by `type`.
_Part = Annotated[
    _TextPart | _ImagePart | _AudioPart | _FilePart | _RefusalPart | _ReasoningPart | _RedactedReasoningPart,
    Field(discriminator="type"),
    untagged("type"),
]
_PARTS: TypeAdapter[list[_Part]] = TypeAdapter(list[_Part], config=ConfigDict(defer_build=True))

# Which content parts each role may carry (the OpenAI chat schema, as the SDK models it).
PART_TYPES: dict[str, tuple[str, ...]] = {
    "system": ("text",),
    "developer": ("text",),
    "tool": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal", "reasoning", "redacted_reasoning"),
}


def _check_parts(role: str, parts: list[dict[str, Any]]) -> None:
    """Each part valid for its type, and of a type the role may carry; the parts stay as sent."""
    try:
        checked = _PARTS.validate_python(parts)
    except ValidationError as error:
        raise ValueError(describe(error.errors(include_url=False), where="content")) from None
    allowed = PART_TYPES[role]
    for index, part in enumerate(checked):
        if part.type not in allowed:
            raise ValueError(
                f"content.{index}.type must be one of {', '.join(allowed)} in a {role} message, "
                f"not {part.type!r}"
            )


class _AssistantAudio(_Open):
    id: str


class Message(BaseModel):
    """One chat message. A tool message answers a tool call (`tool_call_id`); an assistant message
    may carry `tool_calls` and then no content; every other message needs content."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # assistant-only keys the SDK types
    refusal: str | None = None
    reasoning_content: str | None = None
    audio: _AssistantAudio | None = None
    cache_control: _CacheControl | None = None

    @model_validator(mode="after")
    def _rules(self) -> "Message":
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.role != "tool" and self.tool_call_id is not None:
            raise ValueError(f"tool_call_id belongs on tool messages, not {self.role}")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError(f"tool_calls belong on assistant messages, not {self.role}")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            if self.role == "assistant":
                raise ValueError("an assistant message needs content or tool_calls")
            raise ValueError(f"a {self.role} message needs content")
        if isinstance(self.content, list):
            _check_parts(self.role, self.content)
        return self


# -- routing settings ---------------------------------------------------------------------------


class Fallback(_Strict):
    model: str = Field(min_length=1)


DEFAULT_RETRY_CODES = (429, 500, 502, 503, 504)


class RetryPolicy(_Strict):
    count: int = Field(3, ge=0, le=10)
    on_codes: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_CODES)
    )


class CachePolicy(_Strict):
    type: Literal["exact_match"]
    ttl: int = Field(3600, ge=1, le=259_200)  # seconds; at most three days


class WeightedModel(_Strict):
    model: str = Field(min_length=1)
    weight: float = Field(0.5, gt=0)


class LoadBalancer(_Strict):
    type: Literal["weight_based"]
    models: list[WeightedModel] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        """The spec's example nests `{type, models: [...]}` under `models`; the SDK reads a flat
        list, so the nested form is accepted and stored flat."""
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            inner = data["models"]
            if inner.get("type", data.get("type")) != data.get("type"):
                raise ValueError("models.type must match type")
            data = {**data, "models": inner.get("models")}
        return data


class TimeoutPolicy(_Strict):
    call_timeout: float = Field(gt=0)  # milliseconds per attempt


# -- SDK-typed parameters -------------------------------------------------------------------


class _JsonSchema(_Open):
    name: str
    description: str | None = None
    strict: bool | None = None


class _ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None

    @model_validator(mode="after")
    def _schema(self) -> "_ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is json_schema")
        return self


class _ToolChoiceFunction(_Open):
    name: str


class _ToolChoice(_Open):
    type: Literal["function"] | None = None
    function: _ToolChoiceFunction


class _StreamOptions(_Open):
    include_usage: bool | None = None


class _ThinkingDisabled(_Open):
    type: Literal["disabled"]


class _ThinkingAdaptive(_Open):
    type: Literal["adaptive"]


class _ThinkingEnabled(_Open):
    type: Literal["enabled"]
    budget_tokens: float = Field(ge=0)
    thinking_level: Literal["minimal", "low", "medium", "high"] | None = None


class _Audio(_Open):
    voice: Literal["alloy", "echo", "fable", "onyx", "nova", "shimmer"]
    format: Literal["wav", "mp3", "flac", "opus", "pcm16"]


class _Guardrail(_Open):
    id: str
    execute_on: Literal["input", "output"]


class _PiiRedaction(_Open):
    id: Literal["pii_redaction"]
    language: str | None = None
    regions: list[str] | None = None
    entities: list[str] | None = None
    entity_thresholds: dict[str, float] | None = None
    threshold: float | None = None
    on_failure: Literal["block", "passthrough"] | None = None


class _ResponseHealing(_Open):
    id: Literal["response_healing"]


class _TraceScrubbing(_Open):
    id: Literal["trace_scrubbing"]
    mask: list[Literal["all", "system", "input", "output", "metadata", "variables"]]


ReasoningEffort = Literal["none", "instant", "minimal", "low", "medium", "high", "xhigh", "max"]


class PromptSettings(BaseModel):
    """Everything a stored prompt says about how to run it. Unknown keys are kept."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    model: str | None = Field(None, min_length=1)
    messages: list[Message] | None = None
    name: str | None = None

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int | None = Field(None, ge=1)
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tool_choice: Literal["none", "auto", "required"] | _ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: ReasoningEffort | None = None
    verbosity: str | None = None
    stream_options: _StreamOptions | None = None
    thinking: (
        Annotated[_ThinkingDisabled | _ThinkingEnabled | _ThinkingAdaptive, Field(discriminator="type")]
        | None
    ) = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: _Audio | None = None
    guardrails: list[_Guardrail] | None = None
    plugins: (
        list[Annotated[_PiiRedaction | _ResponseHealing | _TraceScrubbing, Field(discriminator="id")]] | None
    ) = None
    fallback_on_codes: list[Annotated[int, Field(ge=400, le=599)]] | None = None
    cache_control: _CacheControl | None = None
    prompt_cache_key: str | None = None

    fallbacks: list[Fallback] | None = None
    retry: RetryPolicy | None = None
    cache: CachePolicy | None = None
    load_balancer: LoadBalancer | None = None
    timeout: TimeoutPolicy | None = None

    version: str | None = None

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _ResponseFormat.model_validate(value)
        return value

    def engine_parameters(self) -> dict[str, Any]:
        """What parameterizes the model call: every set key but the prompt's identity, its messages
        and its routing settings (unknown kept keys included), JSON-ready."""
        data = self.model_dump(mode="json", exclude_none=True)
        return {k: v for k, v in data.items() if k not in _NON_ENGINE_KEYS}


# -- the deprecated `prompt_config` mirror ------------------------------------------------------

_MODEL_PARAMETERS = {
    "temperature": "temperature",
    "max_tokens": "maxTokens",
    "top_k": "topK",
    "top_p": "topP",
    "frequency_penalty": "frequencyPenalty",
    "presence_penalty": "presencePenalty",
    "seed": "seed",
}
# The mirror's messages hold only these content parts; the others have no place in it.
_MIRROR_PARTS = frozenset({"text", "image_url", "file"})


def _mirror_message(message: Message) -> dict[str, Any]:
    content: Any = message.content
    if isinstance(content, list):
        content = [part for part in content if part.get("type") in _MIRROR_PARTS]
    mirrored: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        mirrored["tool_calls"] = [
            call.model_dump(mode="json", exclude_none=True) for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        mirrored["tool_call_id"] = message.tool_call_id
    return mirrored


def _mirror_response_format(value: dict[str, Any]) -> dict[str, Any]:
    if value["type"] != "json_schema":
        return {"type": value["type"]}
    schema = dict(value["json_schema"])
    if not isinstance(schema.get("schema"), dict):
        schema["schema"] = {}  # the mirror's json_schema requires an object here
    return {"type": "json_schema", "json_schema": schema}


def prompt_config(settings: PromptSettings) -> dict[str, Any]:
    """The deprecated `prompt_config` view of `settings` (camelCase model parameters), so clients
    still reading it see the same prompt as `prompt`."""
    parameters: dict[str, Any] = {}
    for name, wire in _MODEL_PARAMETERS.items():
        value = getattr(settings, name)
        if value is not None:
            parameters[wire] = value
    if "maxTokens" not in parameters and settings.max_completion_tokens is not None:
        parameters["maxTokens"] = settings.max_completion_tokens
    if settings.response_format is not None:
        parameters["responseFormat"] = _mirror_response_format(settings.response_format)
    config: dict[str, Any] = {
        "messages": [_mirror_message(m) for m in settings.messages or []],
        "stream": bool((settings.model_extra or {}).get("stream", False)),
        "model": settings.model,
        "model_type": "chat",
        "model_parameters": parameters,
    }
    if settings.version is not None:
        config["version"] = settings.version
    return config
