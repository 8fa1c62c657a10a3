"""The model catalog: which models exist, their prompt template and which engine serves them."""

import json
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from promptsvc.domain.errors import InvalidRequest

DEFAULT_CALL_TIMEOUT = 120.0
DEFAULT_STALL_TIMEOUT = 30.0
# The seed client's name (`PromptSvcPromptType`) for what every engine here does: a text prompt in
# (rendered with the template, or sent as chat messages), a text answer out.
TEXT_TO_TEXT = "Text-to-Text"


class Model(msgspec.Struct, frozen=True):
    """A servable model.

    `engine` names the backend (`sagemaker`, `openai`, `mock`); `target` says where it is
    (`endpointName` for SageMaker; `servedModelName` and optionally `baseUrl` for an
    OpenAI-compatible server); `api` is the request schema: `chat` sends the raw prompt as chat
    messages (the server applies its own chat template), `completions` sends the prompt rendered
    with `template`. `parameters` are default sampling parameters (max_tokens, temperature, ...).
    `routing` holds routing settings in the registry's shape (`fallbacks`, `retry`, `cache`,
    `load_balancer`, `timeout`), applied to every prompt for this model.
    """

    id: str
    name: str
    template: str
    engine: str
    target: dict[str, Any] = msgspec.field(default_factory=dict)
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    api: str = "chat"
    call_timeout: float = DEFAULT_CALL_TIMEOUT  # seconds one engine call may take in all
    stall_timeout: float = DEFAULT_STALL_TIMEOUT  # seconds without a chunk before giving up
    routing: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def prompt_type(self) -> str:
        """What the model generates from what, in the seed client's words: both request schemas
        (`chat`, `completions`) of every engine take text and answer text."""
        return TEXT_TO_TEXT


class Catalog(msgspec.Struct, frozen=True):
    models: dict[str, Model]
    default_model_id: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Catalog":
        models = {
            m["id"]: Model(
                id=m["id"],
                name=m.get("name", m["id"]),
                template=m.get("template", ""),
                engine=m.get("engine", "mock"),
                target=m.get("target", {}),
                parameters=m.get("parameters", {}),
                api=m.get("api", "chat"),
                call_timeout=float(m.get("timeouts", {}).get("callSeconds", DEFAULT_CALL_TIMEOUT)),
                stall_timeout=float(m.get("timeouts", {}).get("stallSeconds", DEFAULT_STALL_TIMEOUT)),
                routing=m.get("routing", {}),
            )
            for m in data["models"]
        }
        default = data.get("defaultModelId") or next(iter(models))
        if default not in models:
            raise ValueError(f"catalog default model {default!r} is not in the catalog")
        return cls(models=models, default_model_id=default)

    @classmethod
    def from_json(cls, text: str) -> "Catalog":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | None = None) -> "Catalog":
        """The catalog from `path`, or the one shipped in the package."""
        if path:
            return cls.from_json(Path(path).read_text())
        return cls.from_json(resources.files("promptsvc.data").joinpath("models.json").read_text())

    def prompt_types(self) -> list[str]:
        """The prompt types the catalog's models serve (`POST /prompt-svc/types`), sorted."""
        return sorted({model.prompt_type for model in self.models.values()})

    def resolve(self, model_id: str | None) -> Model:
        """The model for `model_id` (the default when empty); a 400 listing the known ones if unknown."""
        if not model_id:
            return self.models[self.default_model_id]
        try:
            return self.models[model_id]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise InvalidRequest(f"unknown modelId {model_id!r}; known models: {known}") from None
