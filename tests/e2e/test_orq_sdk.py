"""The prompt registry through the official orq SDK (`orq-ai-sdk`, unmodified), over real HTTP
against `promptsvc dev`: every route, and every error the SDK surfaces. The SDK parses each answer
with its own pydantic models, so a response of the wrong shape fails here as a validation error."""

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from orq_ai_sdk import Orq, models

from tests.e2e.conftest import ADMIN_KEY, DevServer, call

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PROMPT: dict[str, Any] = {
    "model": "openai/gpt-4o",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "What is the weather in {{city}}?"},
    ],
    "temperature": 0.7,
    "max_tokens": 1000,
    "retry": {"count": 2, "on_codes": [429, 503]},
    "fallbacks": [{"model": "openai/gpt-4o-mini"}],
    "cache": {"type": "exact_match", "ttl": 600},
    "load_balancer": {"type": "weight_based", "models": [{"model": "openai/gpt-4o", "weight": 0.7}]},
    "timeout": {"call_timeout": 30000},
}
MISSING = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.fixture(scope="module")
def alice(server: DevServer, users: dict[str, str]) -> Iterator[Orq]:
    with Orq(api_key=users["alice"], server_url=server.base_url) as orq:
        yield orq


@pytest.fixture(scope="module")
def bob(server: DevServer, users: dict[str, str]) -> Iterator[Orq]:
    with Orq(api_key=users["bob"], server_url=server.base_url) as orq:
        yield orq


def create(orq: Orq, name: str = "Weather", **fields: Any) -> models.CreatePromptPrompt:
    return orq.prompts.create(request={"display_name": name, "path": "Default", "prompt": PROMPT, **fields})


def test_create_and_retrieve(alice: Orq) -> None:
    created = create(
        alice, description="Asks about weather", metadata={"language": "English", "use_cases": ["SQL"]}
    )

    assert created.type == "prompt" and created.owner == "alice"
    assert created.display_name == "Weather" and created.description == "Asks about weather"
    assert created.metadata is not None and created.metadata.language == "English"
    assert created.prompt.model == "openai/gpt-4o" and created.prompt.temperature == 0.7
    assert created.prompt.retry is not None and created.prompt.retry.on_codes == [429, 503]
    assert created.prompt.load_balancer is not None and created.prompt.load_balancer.models[0].weight == 0.7
    assert created.prompt.timeout is not None and created.prompt.timeout.call_timeout == 30000
    assert (
        created.prompt.messages is not None
        and created.prompt.messages[1].content == PROMPT["messages"][1]["content"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = created.prompt_config
    assert config is not None and config.version == created.prompt.version
    assert config.model_parameters is not None and config.model_parameters.max_tokens == 1000

    fetched = alice.prompts.retrieve(id=created.id)

    assert fetched.model_dump() == created.model_dump()


def test_list_and_page_both_ways(server: DevServer) -> None:
    key = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": "pager"}).json()["key"]
    with Orq(api_key=key, server_url=server.base_url) as orq:
        made = [create(orq, f"page {i}").id for i in range(5)]
        newest_first = made[::-1]

        first = orq.prompts.list(limit=2)
        second = orq.prompts.list(limit=2, starting_after=first.data[-1].id)
        third = orq.prompts.list(limit=2, starting_after=second.data[-1].id)
        back = orq.prompts.list(limit=2, ending_before=third.data[0].id)
        front = orq.prompts.list(limit=2, ending_before=back.data[0].id)
        everything = orq.prompts.list()

    assert first.object == "list"
    assert [p.id for p in first.data] == newest_first[0:2] and first.has_more
    assert [p.id for p in second.data] == newest_first[2:4] and second.has_more
    assert [p.id for p in third.data] == newest_first[4:5] and not third.has_more
    assert [p.id for p in back.data] == newest_first[2:4] and back.has_more
    assert [p.id for p in front.data] == newest_first[0:2] and not front.has_more
    assert [p.id for p in everything.data] == newest_first and not everything.has_more


def test_update_makes_a_version_only_when_the_prompt_changes(alice: Orq) -> None:
    created = create(alice)
    first = created.prompt.version

    renamed = alice.prompts.update(id=created.id, display_name="Renamed", description="same prompt")
    changed = alice.prompts.update(id=created.id, prompt={"temperature": 0.2})
    moved = alice.prompts.update(id=created.id, path="Project/folder")

    assert renamed.display_name == "Renamed" and renamed.prompt.version == first
    second = changed.prompt.version
    assert second != first
    assert changed.prompt.temperature == 0.2 and changed.prompt.model == "openai/gpt-4o"  # merged
    assert changed.description == "same prompt"
    assert moved.prompt.version == second
    versions = alice.prompts.list_versions(prompt_id=created.id)
    assert [v.id for v in versions.data] == [second, first] and not versions.has_more
    assert versions.data[1].prompt.temperature == 0.7


def test_update_ignores_the_read_only_fields(alice: Orq) -> None:
    created = create(alice)

    updated = alice.prompts.update(
        id=created.id,
        owner="mallory",
        created="2000-01-01T00:00:00Z",
        created_by_id="mallory",
        display_name="Mine",
    )

    assert (
        updated.owner == "alice" and updated.created == created.created and updated.created_by_id == "alice"
    )
    assert updated.display_name == "Mine"


def test_versions_list_pages_and_get(alice: Orq) -> None:
    created = create(alice)
    ids = [created.prompt.version]
    for temperature in (0.1, 0.2, 0.3):
        ids.append(alice.prompts.update(id=created.id, prompt={"temperature": temperature}).prompt.version)
    newest_first = ids[::-1]

    page = alice.prompts.list_versions(prompt_id=created.id, limit=3)
    rest = alice.prompts.list_versions(prompt_id=created.id, limit=3, starting_after=page.data[-1].id)
    back = alice.prompts.list_versions(prompt_id=created.id, limit=3, ending_before=rest.data[0].id)
    version = alice.prompts.get_version(prompt_id=created.id, version_id=ids[1])

    assert [v.id for v in page.data] == newest_first[:3] and page.has_more
    assert [v.id for v in rest.data] == newest_first[3:] and not rest.has_more
    assert [v.id for v in back.data] == newest_first[:3] and not back.has_more
    assert version.id == ids[1] and version.prompt.version == ids[1] and version.prompt.temperature == 0.1
    assert version.created_by_id == "alice" and version.timestamp


def test_delete(alice: Orq) -> None:
    created = create(alice)
    alice.prompts.update(id=created.id, prompt={"temperature": 0.1})

    assert alice.prompts.delete(id=created.id) is None

    with pytest.raises(models.ErrorResponse) as missing:
        alice.prompts.retrieve(id=created.id)
    assert missing.value.status_code == 404
    with pytest.raises(models.ErrorResponse):
        alice.prompts.list_versions(prompt_id=created.id)
    with pytest.raises(models.GetPromptVersionPromptsResponseBody):
        alice.prompts.get_version(prompt_id=created.id, version_id=created.prompt.version or "")
    assert created.id not in {p.id for p in alice.prompts.list(limit=200).data}


# -- errors -----------------------------------------------------------------------------------


def test_a_bad_key_is_the_sdks_error_response(server: DevServer) -> None:
    with Orq(api_key="not-a-key", server_url=server.base_url) as orq:
        with pytest.raises(models.ErrorResponse) as listed:
            orq.prompts.list()
        with pytest.raises(models.ErrorResponse) as created:
            create(orq)
        with pytest.raises(models.ErrorResponse) as fetched:
            orq.prompts.retrieve(id=MISSING)
        with pytest.raises(models.APIDefaultError) as updated:  # the SDK types no 401 for update
            orq.prompts.update(id=MISSING, display_name="x")

    for error in (listed, created, fetched, updated):
        assert error.value.status_code == 401
    assert "API key" in listed.value.data.message


def test_not_found_is_each_operations_error_class(alice: Orq, bob: Orq) -> None:
    theirs = create(alice)

    for prompt_id in (MISSING, theirs.id):  # another user's prompt is exactly like a missing one
        with pytest.raises(models.ErrorResponse) as fetched:
            bob.prompts.retrieve(id=prompt_id)
        with pytest.raises(models.UpdatePromptResponseBody) as updated:
            bob.prompts.update(id=prompt_id, display_name="mine now")
        with pytest.raises(models.DeletePromptResponseBody) as deleted:
            bob.prompts.delete(id=prompt_id)
        with pytest.raises(models.ErrorResponse) as listed:
            bob.prompts.list_versions(prompt_id=prompt_id)
        with pytest.raises(models.GetPromptVersionPromptsResponseBody) as version:
            bob.prompts.get_version(prompt_id=prompt_id, version_id=theirs.prompt.version or "")

        for error in (fetched, updated, deleted, listed, version):
            assert error.value.status_code == 404
            assert prompt_id in error.value.data.message
    assert alice.prompts.retrieve(id=theirs.id).display_name == "Weather"
    with pytest.raises(models.GetPromptVersionPromptsResponseBody) as no_version:
        alice.prompts.get_version(prompt_id=theirs.id, version_id=MISSING)
    assert "version" in no_version.value.data.message


def test_validation_errors_are_422_naming_the_field(alice: Orq) -> None:
    with pytest.raises(models.APIDefaultError) as long_name:
        create(alice, "x" * 129)
    with pytest.raises(models.APIDefaultError) as hot:
        create(alice, prompt={**PROMPT, "temperature": 3})
    with pytest.raises(models.APIDefaultError) as bad_path:
        create(alice, path="a//b")
    theirs = create(alice)
    with pytest.raises(models.APIDefaultError) as bad_retry:
        alice.prompts.update(id=theirs.id, prompt={"retry": {"count": 50}})
    with pytest.raises(models.APIDefaultError) as bad_limit:
        alice.prompts.list(limit=500)

    assert long_name.value.status_code == 422
    assert "display_name: String should have at most 128 characters" in long_name.value.body
    assert hot.value.status_code == 422 and "prompt.temperature" in hot.value.body
    assert bad_path.value.status_code == 422 and "path" in bad_path.value.body
    assert bad_retry.value.status_code == 422 and "prompt.retry.count" in bad_retry.value.body
    assert bad_limit.value.status_code == 422 and "limit" in bad_limit.value.body


def test_a_bad_cursor_is_400(alice: Orq) -> None:
    created = create(alice)

    with pytest.raises(models.APIDefaultError) as listed:
        alice.prompts.list(starting_after="not-an-id")
    with pytest.raises(models.APIDefaultError) as versions:
        alice.prompts.list_versions(prompt_id=created.id, ending_before="nope")

    assert listed.value.status_code == versions.value.status_code == 400
    assert "starting_after" in listed.value.body and "ending_before" in versions.value.body
