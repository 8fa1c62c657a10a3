"""Use cases of the prompt registry (`/v2/prompts`). Each user sees only their own prompts: another
user's prompt is NotFound exactly like a missing one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.errors import Conflict, NotFound
from promptsvc.domain.ids import new_id
from promptsvc.domain.registry import (
    NewRegistryPrompt,
    Page,
    PageRequest,
    RegistryPrompt,
    RegistryPromptPatch,
    RegistryVersion,
    apply_patch,
    canonical_ulid,
    create_entity,
)

if TYPE_CHECKING:
    from promptsvc.domain.ports import RegistryRepository

UPDATE_ATTEMPTS = 3


class RegistryService:
    def __init__(
        self,
        repository: RegistryRepository,
        *,
        clock: Callable[[], str] = now_rfc3339,
        ids: Callable[[], str] = new_id,
        update_attempts: int = UPDATE_ATTEMPTS,
    ) -> None:
        self._repo = repository
        self._clock = clock
        self._ids = ids
        self._attempts = update_attempts

    def create(self, user_id: str, request: NewRegistryPrompt) -> RegistryPrompt:
        prompt_id = self._ids()
        entity, version = create_entity(
            user_id, request, prompt_id=prompt_id, version_id=self._ids(), now=self._clock()
        )
        if not self._repo.create(entity, version):
            raise Conflict(f"prompt {prompt_id!r} already exists")  # a ULID collision: retry
        return entity

    def list_prompts(self, user_id: str, page: PageRequest) -> Page[RegistryPrompt]:
        return self._repo.page_by_owner(user_id, page)

    def get(self, user_id: str, prompt_id: str) -> RegistryPrompt:
        # Ids are canonical ULIDs: anything else names nothing (and never reaches the table).
        prompt = self._repo.get(prompt_id) if canonical_ulid(prompt_id) == prompt_id else None
        if prompt is None or prompt.owner != user_id:
            raise NotFound(f"prompt {prompt_id!r} not found")
        return prompt

    def update(self, user_id: str, prompt_id: str, patch: RegistryPromptPatch) -> RegistryPrompt:
        """Apply `patch` to the prompt as stored. The write is conditional on the revision read, so
        of two concurrent updates neither is lost: the one that lost the race reapplies its patch
        to the winner's result, and after a few lost races the caller gets a 409."""
        for _ in range(self._attempts):
            current = self.get(user_id, prompt_id)
            changed = apply_patch(current, patch, user_id, version_id=self._ids(), now=self._clock())
            if changed is None:
                return current
            updated, version = changed
            if self._repo.replace(updated, current.revision, version):
                return updated
        raise Conflict(f"prompt {prompt_id!r} is being changed by other requests; retry")

    def delete(self, user_id: str, prompt_id: str) -> None:
        self.get(user_id, prompt_id)
        if not self._repo.delete(prompt_id, user_id):
            raise NotFound(f"prompt {prompt_id!r} not found")

    def list_versions(self, user_id: str, prompt_id: str, page: PageRequest) -> Page[RegistryVersion]:
        self.get(user_id, prompt_id)
        return self._repo.page_versions(prompt_id, page)

    def get_version(self, user_id: str, prompt_id: str, version_id: str) -> RegistryVersion:
        self.get(user_id, prompt_id)
        return self._version(prompt_id, version_id)

    def version_for_run(self, user_id: str, prompt_id: str, version_id: str | None) -> RegistryVersion:
        """The version a run of the stored prompt uses: `version_id`, or the current one."""
        current = self.get(user_id, prompt_id)
        return self._version(prompt_id, version_id or current.version_id)

    def _version(self, prompt_id: str, version_id: str) -> RegistryVersion:
        version = None
        if canonical_ulid(version_id) == version_id:
            version = self._repo.get_version(prompt_id, version_id)
        if version is None:
            raise NotFound(f"version {version_id!r} of prompt {prompt_id!r} not found")
        return version
