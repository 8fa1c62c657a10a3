"""The registry's pure rules (promptsvc.domain.registry): paths, patches, versions, sizes, cursors."""

import re
import uuid
from typing import Any

import pytest
from orq_ai_sdk.models import CreatePromptPrompt, GetPromptVersionResponseBody
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.ids import new_id
from promptsvc.domain.prompt_settings import PromptSettings
from promptsvc.domain.registry import (
    MAX_ITEM_BYTES,
    NewRegistryPrompt,
    PageRequest,
    RegistryPromptPatch,
    Unprocessable,
    apply_patch,
    canonical_ulid,
    check_path,
    create_entity,
    domain_id,
    prompt_json,
)
from pydantic import ValidationError

PROMPT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
NOW, LATER = "2024-05-01T10:00:00.000Z", "2024-05-01T11:00:00.000Z"


def entity(**fields: Any) -> Any:
    request = NewRegistryPrompt.model_validate(
        {"display_name": "P", "path": "Default", "prompt": PROMPT, **fields}
    )
    return create_entity("alice", request, prompt_id="P1", version_id="V1", now=NOW)


def patched(body: dict[str, Any]) -> Any:
    current, _ = entity(metadata={"language": "English"})
    return current, apply_patch(
        current, RegistryPromptPatch.model_validate(body), "bob", version_id="V2", now=LATER
    )


@pytest.mark.parametrize("path", ["Default", "project/folder/sub", "My Project/agents"])
def test_good_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize("path", ["", "/", "a/", "/a", "a//b", " /a"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(ValueError, match="segments"):
        check_path(path)


def test_create_makes_the_entity_and_its_first_version() -> None:
    prompt, version = entity(description="d")

    assert (prompt.id, prompt.version_id, prompt.revision) == ("P1", "V1", 1)
    assert prompt.created == prompt.updated == version.timestamp == NOW
    assert version.prompt.version == "V1" and prompt.prompt.version is None
    assert version.description == "d"
    view = prompt.view()
    assert view["prompt"]["version"] == view["prompt_config"]["version"] == "V1"
    CreatePromptPrompt.model_validate(view)
    GetPromptVersionResponseBody.model_validate(version.view())


def test_a_version_sent_in_the_prompt_is_not_stored() -> None:
    prompt, _ = entity(prompt={**PROMPT, "version": "mine"})

    assert prompt.prompt.version is None and prompt.view()["prompt"]["version"] == "V1"


def test_the_developer_role_is_refused_the_sdk_cannot_read_it_back() -> None:
    with pytest.raises(ValidationError, match=re.escape("messages.0.role")):
        entity(prompt={"messages": [{"role": "developer", "content": "x"}]})


def test_a_patch_changing_only_names_makes_no_version() -> None:
    current, (updated, version) = patched({"display_name": "Q", "path": "a/b", "description": "new"})

    assert version is None
    assert updated.version_id == current.version_id and updated.prompt == current.prompt
    assert (updated.display_name, updated.path, updated.description) == ("Q", "a/b", "new")
    assert updated.updated == LATER and updated.updated_by_id == "bob" and updated.created_by_id == "alice"
    assert updated.revision == current.revision + 1


def test_a_patch_changing_the_prompt_makes_a_version_snapshotting_the_result() -> None:
    _, (updated, version) = patched({"prompt": {"temperature": 0.9}, "description": "why"})

    assert updated.version_id == "V2" and version.id == "V2"
    assert version.prompt.temperature == 0.9 and version.prompt.model == "m"
    assert version.description == "why" and version.created_by_id == "bob" and version.timestamp == LATER


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": {"temperature": 0.5}},
        {"prompt": {"version": "x"}},
        {"metadata": {"language": "English"}},
    ],
)
def test_a_patch_that_changes_nothing_is_none(body: dict[str, Any]) -> None:
    assert patched(body)[1] is None


def test_prompt_and_metadata_patches_merge_and_null_removes() -> None:
    _, (updated, _) = patched(
        {"prompt": {"model": None, "seed": 3}, "metadata": {"language": None, "team": "x"}}
    )

    assert updated.prompt.model is None and updated.prompt.seed == 3 and updated.prompt.temperature == 0.5
    assert updated.metadata == {"team": "x"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"prompt": {"temperature": 7}}, "prompt.temperature"),
        ({"prompt": {"messages": [{"role": "developer", "content": "x"}]}}, "prompt.messages.0.role"),
        ({"metadata": {"language": "Elvish"}}, "metadata.language"),
    ],
)
def test_a_patch_producing_an_invalid_result_is_unprocessable(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(Unprocessable, match=re.escape(needle)):
        patched(body)


def test_explicit_nulls_for_required_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="display_name"):
        RegistryPromptPatch.model_validate({"display_name": None})
    assert RegistryPromptPatch.model_validate({"description": None}).description is None


def test_a_prompt_too_large_for_an_item_names_the_largest_field() -> None:
    big = {**PROMPT, "messages": [{"role": "user", "content": "x" * MAX_ITEM_BYTES}]}

    with pytest.raises(Unprocessable, match=r"^prompt: too large"):
        entity(prompt=big)
    with pytest.raises(Unprocessable, match=r"^metadata: too large"):
        entity(metadata={"blob": "y" * MAX_ITEM_BYTES})


def test_prompt_json_is_canonical() -> None:
    one = PromptSettings.model_validate({"temperature": 0.5, "model": "m"})
    other = PromptSettings.model_validate({"model": "m", "temperature": 0.5, "version": "v9"})

    assert prompt_json(one) == prompt_json(other)


def test_ids_are_ulids_increasing_even_within_a_millisecond() -> None:
    ids = [new_id() for _ in range(1000)]

    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(canonical_ulid(i) == i for i in ids)


def test_canonical_ulid() -> None:
    assert canonical_ulid("01arz3ndektsv4rrffq69g5fav") == "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    assert canonical_ulid("nope") is None
    assert canonical_ulid("") is None


def test_domain_id_is_a_stable_uuid_per_user() -> None:
    assert domain_id("alice") == domain_id("alice") != domain_id("bob")
    assert uuid.UUID(domain_id("alice")).version == 5


def test_page_requests() -> None:
    assert (
        PageRequest.parse(5, "01arz3ndektsv4rrffq69g5fav", None).starting_after
        == "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    )
    with pytest.raises(InvalidRequest, match="ending_before"):
        PageRequest.parse(5, None, "x")
    with pytest.raises(InvalidRequest, match="together"):
        PageRequest.parse(5, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
