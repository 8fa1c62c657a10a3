"""The routing policy: plans, what follows a failure, weighted picks; variables; the cache key."""

import math
import random
from collections import Counter

import pytest
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.prompt_settings import PromptSettings
from promptsvc.domain.prompt_variables import last_user_text, render_messages
from promptsvc.domain.response_cache import cache_key
from promptsvc.domain.routing import (
    RunPlan,
    Step,
    StepKind,
    after_failure,
    has_routing,
    plan_from,
    route_models,
    weighted_pick,
)


def plan(
    models: tuple[str, ...] = ("a", "b"), retry: int = 2, on: tuple[int, ...] | None = (429, 503)
) -> RunPlan:
    return RunPlan(models=models, retry_count=retry, retry_on=on)


# -- after_failure ---------------------------------------------------------------------------------


def test_a_listed_code_retries_the_same_model_until_its_count_is_spent() -> None:
    p = plan()
    assert after_failure(p, 0, 1, 503) == Step(StepKind.RETRY, 0)
    assert after_failure(p, 0, 2, 503) == Step(StepKind.RETRY, 0)
    assert after_failure(p, 0, 3, 503) == Step(StepKind.FALLBACK, 1)  # 1 try + 2 retries spent


def test_a_retryable_code_not_listed_falls_back_at_once() -> None:
    assert after_failure(plan(), 0, 1, 500) == Step(StepKind.FALLBACK, 1)
    assert after_failure(plan(), 0, 1, 504) == Step(StepKind.FALLBACK, 1)


def test_a_client_error_gives_up_whatever_is_left() -> None:
    assert after_failure(plan(), 0, 1, 400) == Step(StepKind.GIVE_UP, 0)
    assert after_failure(plan(), 0, 1, 404) == Step(StepKind.GIVE_UP, 0)


def test_the_last_model_gives_up_once_its_retries_are_spent() -> None:
    p = plan()
    assert after_failure(p, 1, 1, 429) == Step(StepKind.RETRY, 1)
    assert after_failure(p, 1, 3, 429) == Step(StepKind.GIVE_UP, 1)


def test_without_listed_codes_every_retryable_code_is_retried() -> None:
    p = plan(on=None)
    assert [after_failure(p, 0, 1, c).kind for c in (408, 429, 500, 502, 503, 504)] == [StepKind.RETRY] * 6
    assert after_failure(p, 0, 1, 422).kind is StepKind.GIVE_UP


def test_attempts_count_every_model_and_its_retries() -> None:
    assert plan(("a", "b", "c"), retry=2).attempts == 9
    assert plan(("a",), retry=0).attempts == 1


def test_a_plan_survives_its_json_form() -> None:
    original = RunPlan(
        models=("a", "b"),
        retry_count=3,
        retry_on=(429,),
        call_timeout_ms=1500.0,
        cache_ttl=60,
        messages=({"role": "user", "content": "hi"},),
        parameters={"temperature": 0.5},
    )
    assert RunPlan.from_json(original.to_json()) == original


# -- building plans --------------------------------------------------------------------------------


def settings(**prompt: object) -> PromptSettings:
    return PromptSettings.model_validate(prompt)


def test_fallbacks_follow_the_model_in_order_each_once() -> None:
    s = settings(model="a", fallbacks=[{"model": "b"}, {"model": "a"}, {"model": "c"}])
    p = plan_from(s, "a", max_retries=10, rng=random.Random(1))
    assert p.models == ("a", "b", "c")


def test_a_retry_setting_replaces_the_prompts_own_budget() -> None:
    with_retry = plan_from(
        settings(retry={"count": 2, "on_codes": [503]}), "a", max_retries=10, rng=random.Random(1)
    )
    without = plan_from(settings(timeout={"call_timeout": 2000}), "a", max_retries=4, rng=random.Random(1))
    assert (with_retry.retry_count, with_retry.retry_on) == (2, (503,))
    assert (without.retry_count, without.retry_on) == (4, None)
    assert without.call_timeout_ms == 2000


def test_cache_settings_give_the_plan_its_ttl() -> None:
    p = plan_from(
        settings(cache={"type": "exact_match", "ttl": 90}), "a", max_retries=1, rng=random.Random(1)
    )
    assert p.cache_ttl == 90


def test_has_routing_only_with_a_routing_key() -> None:
    assert not has_routing(settings(model="a", temperature=0.3))
    assert has_routing(settings(model="a", fallbacks=[{"model": "b"}]))


def test_the_load_balancer_pool_comes_first_then_the_fallbacks() -> None:
    s = settings(
        model="ignored",
        load_balancer={
            "type": "weight_based",
            "models": [{"model": "x", "weight": 1}, {"model": "y", "weight": 1}],
        },
        fallbacks=[{"model": "z"}, {"model": "x"}],
    )
    p = plan_from(s, "ignored", max_retries=0, rng=random.Random(7))
    assert set(p.models[:2]) == {"x", "y"} and p.models[2:] == ("z",)


@pytest.mark.parametrize("weights", [(0.7, 0.3), (1.0, 1.0, 2.0), (5.0, 0.5)])
def test_weighted_picks_follow_the_normalized_weights_over_2000_picks(weights: tuple[float, ...]) -> None:
    rng = random.Random(20261130)
    picks = Counter(weighted_pick(weights, rng) for _ in range(2000))
    total = sum(weights)
    for index, weight in enumerate(weights):
        p = weight / total
        expected = 2000 * p
        sigma = math.sqrt(2000 * p * (1 - p))
        assert abs(picks[index] - expected) <= 4 * sigma, (index, picks[index], expected)


def test_the_first_model_of_a_route_follows_the_weights() -> None:
    from promptsvc.domain.prompt_settings import WeightedModel

    pool = [WeightedModel(model="x", weight=0.8), WeightedModel(model="y", weight=0.2)]
    rng = random.Random(3)
    firsts = Counter(route_models("p", pool, [], rng)[0] for _ in range(2000))
    sigma = math.sqrt(2000 * 0.8 * 0.2)
    assert abs(firsts["x"] - 1600) <= 4 * sigma
    assert set(firsts) == {"x", "y"}


# -- variables -------------------------------------------------------------------------------------


def test_variables_fill_every_message_and_text_part() -> None:
    messages = [
        {"role": "system", "content": "You answer in {{language}}."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Tell me about {{ topic }}"}, {"type": "image_url"}],
        },
    ]
    rendered = render_messages(messages, {"language": "French", "topic": "cheese", "unused": 1})
    assert rendered[0]["content"] == "You answer in French."
    assert rendered[1]["content"][0]["text"] == "Tell me about cheese"
    assert rendered[1]["content"][1] == {"type": "image_url"}
    assert messages[0]["content"] == "You answer in {{language}}."  # the stored messages are untouched


def test_a_missing_variable_is_a_400_naming_every_one_missing() -> None:
    with pytest.raises(InvalidRequest, match="variables: no value for language, topic"):
        render_messages([{"role": "user", "content": "{{topic}} in {{language}}"}], {})


def test_values_are_not_scanned_again() -> None:
    rendered = render_messages([{"role": "user", "content": "{{a}}"}], {"a": "{{b}}"})
    assert rendered[0]["content"] == "{{b}}"


def test_the_last_user_message_is_the_prompt_text() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "second"},
    ]
    assert last_user_text(messages) == "second"


# -- the cache key ---------------------------------------------------------------------------------


def test_the_cache_key_changes_with_every_input() -> None:
    base = {
        "user_id": "alice",
        "model_id": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "prompt": "hi",
        "parameters": {"temperature": 0.2},
    }
    key = cache_key(**base)
    assert cache_key(**base) == key
    assert cache_key(**{**base, "parameters": {"temperature": 0.2}}) == key  # same values, new dict
    for change in (
        {"user_id": "bob"},
        {"model_id": "n"},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"prompt": "hi!"},
        {"parameters": {"temperature": 0.3}},
        {"parameters": {"temperature": 0.2, "seed": 1}},
    ):
        assert cache_key(**{**base, **change}) != key, change
