"""The `prompt` field of stored prompts (promptsvc.domain.prompt_settings)."""

from typing import Any

import pytest
from orq_ai_sdk.models import PromptConfig, PromptField
from promptsvc.domain.prompt_settings import (
    ROUTING_KEYS,
    LoadBalancer,
    Message,
    PromptSettings,
    RetryPolicy,
    prompt_config,
)
from pydantic import ValidationError

KITCHEN_SINK: dict[str, Any] = {
    "model": "openai/gpt-4o",
    "name": "sink",
    "messages": [
        {"role": "system", "content": "You are {{persona}}", "name": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}, "index": 0}
            ],
        },
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
    ],
    "temperature": 0.7,
    "top_p": 0.9,
    "top_k": 40,
    "max_tokens": 1000,
    "max_completion_tokens": 900,
    "stop": ["\n\n", "END"],
    "seed": 7,
    "presence_penalty": -0.5,
    "frequency_penalty": 1.5,
    "n": 2,
    "response_format": {"type": "json_schema", "json_schema": {"name": "out", "strict": True}},
    "logprobs": True,
    "top_logprobs": 5,
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "parallel_tool_calls": False,
    "reasoning_effort": "low",
    "verbosity": "low",
    "stream_options": {"include_usage": True},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "modalities": ["text"],
    "audio": {"voice": "alloy", "format": "wav"},
    "guardrails": [{"id": "orq_pii_detection", "execute_on": "input"}],
    "plugins": [{"id": "trace_scrubbing", "mask": ["input"]}],
    "fallbacks": [{"model": "openai/gpt-4o-mini"}],
    "retry": {"count": 2, "on_codes": [429, 503]},
    "cache": {"type": "exact_match", "ttl": 60},
    "load_balancer": {"type": "weight_based", "models": [{"model": "a", "weight": 0.7}, {"model": "b"}]},
    "timeout": {"call_timeout": 30000},
    "x_custom": {"kept": [1, 2]},
    "version": "v1",
}


def sink(**changes: Any) -> dict[str, Any]:
    return {**KITCHEN_SINK, **changes}


def error_text(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        PromptSettings.model_validate(data)
    return str(caught.value)


def test_the_kitchen_sink_validates_and_the_sdk_reads_both_views() -> None:
    settings = PromptSettings.model_validate(KITCHEN_SINK)

    dumped = settings.model_dump(mode="json", exclude_none=True)
    PromptField.model_validate(dumped)
    PromptConfig.model_validate(prompt_config(settings))
    assert dumped["x_custom"] == {"kept": [1, 2]}


def test_a_minimal_prompt_is_valid() -> None:
    settings = PromptSettings.model_validate({"messages": [{"role": "user", "content": "hi"}]})

    assert settings.model is None
    assert settings.engine_parameters() == {}


def test_unknown_keys_are_kept_on_settings_and_messages() -> None:
    settings = PromptSettings.model_validate(
        {"messages": [{"role": "user", "content": "hi", "x_note": 1}], "x_top": "y"}
    )

    dumped = settings.model_dump(mode="json", exclude_none=True)
    assert dumped["x_top"] == "y"
    assert dumped["messages"][0]["x_note"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.1),
        ("temperature", -0.1),
        ("top_p", 1.5),
        ("top_k", -1),
        ("max_tokens", 0),
        ("max_completion_tokens", 0),
        ("stop", ["a", "b", "c", "d", "e"]),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3),
        ("n", 0),
        ("top_logprobs", 21),
        ("seed", 1.5),
        ("response_format", {"type": "xml"}),
        ("response_format", {"type": "json_schema"}),
        ("tool_choice", "sometimes"),
        ("reasoning_effort", "extreme"),
        ("modalities", ["video"]),
        ("audio", {"voice": "robot", "format": "wav"}),
        ("thinking", {"type": "enabled"}),
        ("messages", "hi"),
        ("model", ""),
    ],
)
def test_out_of_range_or_mistyped_parameters_are_rejected_naming_the_field(field: str, value: Any) -> None:
    assert field in error_text({field: value})


@pytest.mark.parametrize("value", [0, 2, 0.0, 1])
def test_temperature_bounds_are_inclusive(value: float) -> None:
    assert PromptSettings.model_validate({"temperature": value}).temperature == value


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "user"}, "needs content"),
        ({"role": "system", "content": None}, "needs content"),
        ({"role": "assistant"}, "content or tool_calls"),
        ({"role": "user", "content": "x", "tool_calls": []}, "tool_calls belong"),
        ({"role": "user", "content": "x", "tool_call_id": "c"}, "tool_call_id belongs"),
        ({"role": "narrator", "content": "x"}, "role"),
        ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}, "content.0.type"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, "content.0.image_url.url"),
        ({"role": "user", "content": [{"text": "no type"}]}, "content.0.type"),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]},
            "arguments",
        ),
    ],
)
def test_message_rules(message: dict[str, Any], needle: str) -> None:
    assert needle in error_text({"messages": [message]})


def test_an_assistant_message_may_carry_only_tool_calls() -> None:
    message = Message.model_validate(
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}
    )

    assert message.content is None
    assert message.tool_calls is not None and message.tool_calls[0].type == "function"


def test_retry_defaults_and_bounds() -> None:
    assert RetryPolicy().count == 3
    assert RetryPolicy().on_codes == [429, 500, 502, 503, 504]
    assert "retry.count" in error_text({"retry": {"count": 11}})
    assert "retry.on_codes.0" in error_text({"retry": {"on_codes": [200]}})


def test_cache_ttl_bounds_and_type() -> None:
    assert PromptSettings.model_validate({"cache": {"type": "exact_match"}}).cache.ttl == 3600  # type: ignore[union-attr]
    assert "cache.ttl" in error_text({"cache": {"type": "exact_match", "ttl": 0}})
    assert "cache.ttl" in error_text({"cache": {"type": "exact_match", "ttl": 259_201}})
    assert "cache.type" in error_text({"cache": {"type": "semantic"}})


def test_routing_settings_reject_misspelt_keys() -> None:
    assert "retry.on_code" in error_text({"retry": {"on_code": [429]}})


def test_the_load_balancer_accepts_the_specs_nested_form_and_stores_it_flat() -> None:
    nested = {
        "type": "weight_based",
        "models": {
            "type": "weight_based",
            "models": [{"model": "a", "weight": 0.7}, {"model": "b", "weight": 0.3}],
        },
    }

    balancer = LoadBalancer.model_validate(nested)

    assert [(m.model, m.weight) for m in balancer.models] == [("a", 0.7), ("b", 0.3)]
    assert balancer.model_dump(mode="json")["models"][0] == {"model": "a", "weight": 0.7}


@pytest.mark.parametrize(
    "balancer",
    [
        {"type": "weight_based", "models": []},
        {"type": "weight_based", "models": [{"model": "a", "weight": 0}]},
        {"type": "round_robin", "models": [{"model": "a"}]},
    ],
)
def test_bad_load_balancers_are_rejected(balancer: dict[str, Any]) -> None:
    assert "load_balancer" in error_text({"load_balancer": balancer})


def test_timeout_must_be_positive() -> None:
    assert "timeout.call_timeout" in error_text({"timeout": {"call_timeout": 0}})


def test_engine_parameters_leave_out_identity_messages_and_routing() -> None:
    parameters = PromptSettings.model_validate(KITCHEN_SINK).engine_parameters()

    assert not (set(parameters) & (ROUTING_KEYS | {"model", "messages", "version", "name"}))
    assert parameters["temperature"] == 0.7
    assert parameters["x_custom"] == {"kept": [1, 2]}
    assert parameters["response_format"]["json_schema"]["name"] == "out"


def test_prompt_config_mirrors_the_prompt() -> None:
    config = prompt_config(PromptSettings.model_validate(KITCHEN_SINK))

    assert config["model"] == "openai/gpt-4o"
    assert config["model_type"] == "chat"
    assert config["version"] == "v1"
    assert config["model_parameters"] == {
        "temperature": 0.7,
        "maxTokens": 1000,
        "topK": 40,
        "topP": 0.9,
        "frequencyPenalty": 1.5,
        "presencePenalty": -0.5,
        "seed": 7,
        "responseFormat": {
            "type": "json_schema",
            "json_schema": {"name": "out", "strict": True, "schema": {}},
        },
    }
    roles = [m["role"] for m in config["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    user = config["messages"][1]["content"]
    assert [p["type"] for p in user] == ["text", "image_url", "file"]  # audio has no place in the mirror
    assert config["messages"][2]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert config["messages"][3]["tool_call_id"] == "call_1"


def test_prompt_config_of_an_empty_prompt() -> None:
    config = prompt_config(PromptSettings())

    assert config == {
        "messages": [],
        "stream": False,
        "model": None,
        "model_type": "chat",
        "model_parameters": {},
    }
    PromptConfig.model_validate(config)
