"""The prompt registry (`/v2/prompts`): stored prompt entities and their immutable versions. Pure.

An entity holds the current state (names, path, description, metadata, prompt) and points at its
current version; every create, and every update that changes the prompt, adds a version holding a
snapshot. Ids are ULIDs, so ordering by id is ordering by creation, which is what list cursors use.
"""

import json
import uuid
from typing import Any, Generic, Literal, TypeVar

import msgspec
import ulid
from msgspec.structs import replace
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from promptsvc.domain.errors import InvalidRequest, Unprocessable
from promptsvc.domain.prompt_settings import PromptSettings, prompt_config
from promptsvc.domain.validation import describe

MAX_DISPLAY_NAME = 128
MAX_PAGE = 200
DEFAULT_PAGE = 10
# DynamoDB's item limit. The prompt, description and metadata are stored twice (entity and
# version), each copy in its own item; names, ids and timestamps take well under the margin.
MAX_ITEM_BYTES = 400 * 1024
ITEM_OVERHEAD_BYTES = 2048
# Roles the SDK's response models can read back (its message union has no `developer`).
STORED_ROLES = ("system", "user", "assistant", "tool")

_DOMAIN_NAMESPACE = uuid.UUID("6f1d2c3e-9a47-5b8e-a1c0-7d5e4f3b2a19")


UseCase = Literal[
    "Agents simulations",
    "Agents",
    "API interaction",
    "Autonomous Agents",
    "Chatbots",
    "Classification",
    "Code understanding",
    "Code writing",
    "Conversation",
    "Documents QA",
    "Evaluation",
    "Extraction",
    "Multi-modal",
    "Self-checking",
    "Sentiment analysis",
    "SQL",
    "Summarization",
    "Tagging",
    "Translation (document)",
    "Translation (sentences)",
]
Language = Literal["Chinese", "Dutch", "English", "French", "German", "Russian", "Spanish"]


class Metadata(BaseModel):
    """Free-form labels; the two the SDK types are checked against its enums, others are kept."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    use_cases: list[UseCase] | None = None
    language: Language | None = None


def canonical_ulid(value: str) -> str | None:
    """The canonical (upper-case) spelling of a ULID; None if `value` is not one."""
    try:
        return str(ulid.ULID.from_str(value))
    except (ValueError, TypeError):
        return None


def domain_id(user_id: str) -> str:
    """A stable UUID per user: the spec's `domain_id` (the user's workspace here)."""
    return str(uuid.uuid5(_DOMAIN_NAMESPACE, user_id))


def check_path(path: str) -> str:
    """`project/folder/...`: non-empty segments separated by '/'."""
    if not path or any(not segment.strip() for segment in path.split("/")):
        raise ValueError("must be segments separated by '/' (e.g. 'Default' or 'project/folder'), none empty")
    return path


def _stored_prompt(settings: PromptSettings) -> PromptSettings:
    """The prompt as stored: roles the SDK can read back, and no version (the entity knows it)."""
    for index, message in enumerate(settings.messages or ()):
        if message.role not in STORED_ROLES:
            raise ValueError(
                f"messages.{index}.role: {message.role!r} is not stored; use one of {', '.join(STORED_ROLES)}"
            )
    return settings.model_copy(update={"version": None})


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_json(settings: PromptSettings) -> str:
    """The canonical JSON of a prompt without its version: equal text means an equal prompt."""
    data = settings.model_dump(mode="json", exclude_none=True)
    data.pop("version", None)
    return canonical_json(data)


# -- requests -----------------------------------------------------------------------------------


class _Request(BaseModel):
    # The SDK sends read-only fields back on update (owner, created, ...): ignored, not rejected.
    model_config = ConfigDict(extra="ignore", defer_build=True)


class NewRegistryPrompt(_Request):
    display_name: str = Field(min_length=1, max_length=MAX_DISPLAY_NAME)
    path: str
    description: str | None = None
    metadata: Metadata | None = None
    prompt: PromptSettings | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_path(value)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: PromptSettings | None) -> PromptSettings | None:
        if value is None:
            return None
        if value.messages is None:
            raise ValueError("messages is required")
        return _stored_prompt(value)


class RegistryPromptPatch(_Request):
    """A PATCH: fields left out stay. `prompt` and `metadata` are merged key by key into the stored
    ones (a key set to null is removed), so `{"prompt": {"temperature": 0.2}}` keeps the messages."""

    display_name: str | None = Field(None, min_length=1, max_length=MAX_DISPLAY_NAME)
    path: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None

    @field_validator("display_name", "path")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        if value is None:  # only an explicit null gets here: a left-out field is not validated
            raise ValueError("must be a string, not null")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_path(value)


def _merge(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(stored)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _validate(model: type[BaseModel], data: dict[str, Any], field: str) -> Any:
    """`model` from `data`, errors named `field.<where>` as the request's own validation names them."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise Unprocessable(describe(error.errors(include_url=False), where=field)) from None


# -- records ------------------------------------------------------------------------------------


class RegistryVersion(msgspec.Struct, frozen=True):
    """An immutable snapshot of a prompt. `prompt.version` is this version's id."""

    id: str
    prompt_id: str
    prompt: PromptSettings
    description: str | None
    metadata: dict[str, Any]
    created_by_id: str
    updated_by_id: str
    timestamp: str

    def view(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "prompt": self.prompt.model_dump(mode="json", exclude_none=True),
            "prompt_config": prompt_config(self.prompt),
            "timestamp": self.timestamp,
            "created_by_id": self.created_by_id,
            "updated_by_id": self.updated_by_id,
            "description": self.description,
            "metadata": self.metadata,
        }


class RegistryPrompt(msgspec.Struct, frozen=True):
    """A stored prompt entity. `revision` counts its writes: updates are conditional on it."""

    id: str
    owner: str
    display_name: str
    path: str
    description: str | None
    metadata: dict[str, Any]
    prompt: PromptSettings  # without a version; `current_prompt` adds it
    version_id: str
    created: str
    updated: str
    created_by_id: str
    updated_by_id: str
    revision: int = 1

    @property
    def current_prompt(self) -> PromptSettings:
        return self.prompt.model_copy(update={"version": self.version_id})

    def view(self) -> dict[str, Any]:
        prompt = self.current_prompt
        return {
            "_id": self.id,
            "type": "prompt",
            "owner": self.owner,
            "domain_id": domain_id(self.owner),
            "created": self.created,
            "updated": self.updated,
            "created_by_id": self.created_by_id,
            "updated_by_id": self.updated_by_id,
            "display_name": self.display_name,
            "path": self.path,
            "description": self.description,
            "prompt": prompt.model_dump(mode="json", exclude_none=True),
            "prompt_config": prompt_config(prompt),
            "metadata": self.metadata,
        }

    def snapshot(self, version_id: str, user_id: str, timestamp: str) -> RegistryVersion:
        return RegistryVersion(
            id=version_id,
            prompt_id=self.id,
            prompt=self.prompt.model_copy(update={"version": version_id}),
            description=self.description,
            metadata=self.metadata,
            created_by_id=user_id,
            updated_by_id=user_id,
            timestamp=timestamp,
        )


def check_size(prompt: RegistryPrompt) -> None:
    """Unprocessable when the stored items would pass DynamoDB's 400 KB, naming the largest field."""
    sizes = {
        "prompt": len(prompt_json(prompt.prompt).encode()),
        "metadata": len(canonical_json(prompt.metadata).encode()),
        "description": len((prompt.description or "").encode()),
        "display_name": len(prompt.display_name.encode()),
        "path": len(prompt.path.encode()),
    }
    total = sum(sizes.values()) + ITEM_OVERHEAD_BYTES
    if total > MAX_ITEM_BYTES:
        largest = max(sizes, key=lambda name: sizes[name])
        raise Unprocessable(
            f"{largest}: too large: a stored prompt (prompt, description and metadata) must fit in "
            f"{MAX_ITEM_BYTES // 1024} KB, this one takes {total} bytes ({largest}: {sizes[largest]})"
        )


def create_entity(
    user_id: str, request: NewRegistryPrompt, *, prompt_id: str, version_id: str, now: str
) -> tuple[RegistryPrompt, RegistryVersion]:
    entity = RegistryPrompt(
        id=prompt_id,
        owner=user_id,
        display_name=request.display_name,
        path=request.path,
        description=request.description,
        metadata=request.metadata.model_dump(mode="json", exclude_none=True) if request.metadata else {},
        prompt=request.prompt or PromptSettings(messages=[]),
        version_id=version_id,
        created=now,
        updated=now,
        created_by_id=user_id,
        updated_by_id=user_id,
    )
    check_size(entity)
    return entity, entity.snapshot(version_id, user_id, now)


def apply_patch(
    current: RegistryPrompt, patch: RegistryPromptPatch, user_id: str, *, version_id: str, now: str
) -> tuple[RegistryPrompt, RegistryVersion | None] | None:
    """The entity after `patch`, and a new version if the prompt changed; None if nothing changes."""
    given = patch.model_fields_set
    changes: dict[str, Any] = {}
    if "display_name" in given and patch.display_name != current.display_name:
        changes["display_name"] = patch.display_name
    if "path" in given and patch.path != current.path:
        changes["path"] = patch.path
    if "description" in given and patch.description != current.description:
        changes["description"] = patch.description
    if "metadata" in given and patch.metadata is not None:
        merged = _validate(Metadata, _merge(current.metadata, patch.metadata), "metadata")
        metadata = merged.model_dump(mode="json", exclude_none=True)
        if canonical_json(metadata) != canonical_json(current.metadata):
            changes["metadata"] = metadata
    if "prompt" in given and patch.prompt is not None:
        stored = current.prompt.model_dump(mode="json", exclude_none=True)
        data = _merge(stored, {k: v for k, v in patch.prompt.items() if k != "version"})
        settings = _validate(PromptSettings, data, "prompt")
        try:
            settings = _stored_prompt(settings)
        except ValueError as error:
            raise Unprocessable(f"prompt.{error}") from None
        if prompt_json(settings) != prompt_json(current.prompt):
            changes["prompt"] = settings
    if not changes:
        return None
    updated = replace(
        current,
        **changes,
        updated=now,
        updated_by_id=user_id,
        version_id=version_id if "prompt" in changes else current.version_id,
        revision=current.revision + 1,
    )
    check_size(updated)
    version = updated.snapshot(version_id, user_id, now) if "prompt" in changes else None
    return updated, version


# -- paging -------------------------------------------------------------------------------------

T = TypeVar("T")


class PageRequest(msgspec.Struct, frozen=True):
    """A page of a newest-first list: after `starting_after` (older items) or before
    `ending_before` (newer items), both ids of listed items."""

    limit: int = DEFAULT_PAGE
    starting_after: str | None = None
    ending_before: str | None = None

    @classmethod
    def parse(cls, limit: int, starting_after: str | None, ending_before: str | None) -> "PageRequest":
        if starting_after is not None and ending_before is not None:
            raise InvalidRequest("starting_after and ending_before cannot be used together")
        return cls(limit, _cursor("starting_after", starting_after), _cursor("ending_before", ending_before))


def _cursor(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    canonical = canonical_ulid(value)
    if canonical is None:
        raise InvalidRequest(f"{name}: {value!r} is not an id from this list")
    return canonical


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    has_more: bool
