"""Routing at run time (retry, fallbacks, timeouts, load balancing, the response cache), each rule
driven by engines that fail on purpose: two fake OpenAI-compatible servers over real sockets, one
per model, on moto. Every `run()` is one attempt, as one delivery of the prompt's message is."""

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.response_cache_table import DynamoResponseCache
from promptsvc.adapters.thread_event_table import DynamoThreadEventLog
from promptsvc.consumer.runner import Outcome, PromptRunner, RunResult
from promptsvc.domain.catalog import Catalog
from promptsvc.domain.names import scoped
from promptsvc.engines.registry import EngineRegistry
from promptsvc.services.prompt_intake import PromptIntake
from promptsvc.settings import Settings
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.integration.helpers import queue_depth

ALPHA_TEXT = "Alpha says hello."
BETA_TEXT = "Beta says hi."


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    with FakeOpenAIServer() as alpha, FakeOpenAIServer() as beta:
        yield alpha, beta


def thread_key_of_dict(prompt: dict[str, Any]) -> str:
    """The events table's key of a prompt's thread: threads are per user."""
    return scoped(prompt["userId"], prompt["threadId"])


@dataclass
class Routed:
    """The API and a consumer sharing a catalog whose `alpha` model has the routing under test."""

    client: TestClient
    settings: Settings
    alpha: FakeOpenAIServer
    beta: FakeOpenAIServer
    now: list[float] = field(default_factory=lambda: [1_000_000.0])
    rng: random.Random = field(default_factory=lambda: random.Random(42))
    catalog: Catalog | None = None
    runner: PromptRunner | None = None
    owners: dict[str, str] = field(default_factory=dict)  # prompt id -> its user (ids are per user)

    def use(self, routing: dict[str, Any]) -> None:
        def model(name: str, server: FakeOpenAIServer, routing: dict[str, Any] | None = None) -> dict:
            return {
                "id": name,
                "engine": "openai",
                "api": "chat",
                "target": {"baseUrl": server.base_url},
                "parameters": {"max_tokens": 32},
                "routing": routing or {},
            }

        self.catalog = Catalog.from_dict(
            {
                "defaultModelId": "alpha",
                "models": [
                    model("alpha", self.alpha, routing),
                    model("beta", self.beta),
                    model("gamma", self.beta),
                ],
            }
        )
        catalog = self.catalog
        registry = wiring.registry_service(self.settings)
        self.client.app.state.intake = PromptIntake(lambda: catalog, registry, rng=self.rng)
        self.runner = PromptRunner(
            wiring.prompt_store(self.settings, completes=True),
            lambda: catalog,
            EngineRegistry(self.settings.engines.model_copy(update={"engine": ""})),
            cancel_poll=0.05,
            events=wiring.thread_event_log(self.settings),
            cache=DynamoResponseCache(self.settings.response_cache_table, clock=lambda: self.now[0]),
            usage=wiring.usage_table(self.settings),
        )

    def add(self, key: str, **body: Any) -> dict:
        response = self.client.post(
            "/prompt-svc/prompt", json={"modelId": "alpha", **body}, headers=auth(key)
        )
        assert response.status_code == 200, response.text
        prompt = response.json()["prompt"]
        self.owners[prompt["id"]] = prompt["userId"]
        return prompt

    def run(self, prompt_id: str) -> RunResult:
        """What a consumer does with the prompt's message (which names its owner)."""
        assert self.runner is not None
        return asyncio.run(self.runner.run(prompt_id, user_id=self.owners[prompt_id]))

    def get(self, key: str, prompt_id: str) -> dict:
        return self.client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(key)).json()


@pytest.fixture
def routed(
    client: TestClient, settings: Settings, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> Routed:
    alpha, beta = servers
    alpha.behaviour, beta.behaviour = Behaviour(text=ALPHA_TEXT), Behaviour(text=BETA_TEXT)
    alpha.reset()
    beta.reset()
    return Routed(client, settings, alpha, beta)


def test_a_503_then_success_retries_the_same_model_after_a_backoff(
    routed: Routed, keys: dict[str, str]
) -> None:
    routed.use({"retry": {"count": 2, "on_codes": [503]}, "fallbacks": [{"model": "beta"}]})
    prompt = routed.add(keys["alice"], prompt="Hi")
    routed.alpha.behaviour = Behaviour(text=ALPHA_TEXT, error_status=503)

    first = routed.run(prompt["id"])
    errored = routed.get(keys["alice"], prompt["id"])["prompt"]
    routed.alpha.behaviour = Behaviour(text=ALPHA_TEXT)
    second = routed.run(prompt["id"])

    assert first.outcome is Outcome.RETRY and 1 <= first.retry_after <= 2
    assert (
        errored["status"] == "errored"
        and errored["error"].startswith("alpha: ")
        and "503" in errored["error"]
    )
    assert second.outcome is Outcome.COMPLETED
    body = routed.get(keys["alice"], prompt["id"])
    assert body["answer"] == ALPHA_TEXT
    assert body["prompt"]["answeredBy"] == "alpha" and body["prompt"]["runCount"] == 2
    assert len(routed.alpha.requests) == 2 and routed.beta.requests == []


def test_a_429_beyond_the_retry_count_falls_back_to_the_next_model(
    routed: Routed, keys: dict[str, str]
) -> None:
    routed.use({"retry": {"count": 1, "on_codes": [429]}, "fallbacks": [{"model": "beta"}]})
    prompt = routed.add(keys["alice"], prompt="Hi")
    routed.alpha.behaviour = Behaviour(error_status=429)

    results = [routed.run(prompt["id"]) for _ in range(3)]

    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY, Outcome.COMPLETED]
    assert results[0].retry_after >= 1  # a retry of the same model waits
    assert results[1].retry_after == 0  # the next model is tried at once
    body = routed.get(keys["alice"], prompt["id"])
    assert body["answer"] == BETA_TEXT and body["prompt"]["answeredBy"] == "beta"
    assert body["prompt"]["modelId"] == "alpha" and body["prompt"]["runCount"] == 3
    assert len(routed.alpha.requests) == 2 and len(routed.beta.requests) == 1
    assert routed.beta.last_request.body["model"] == "beta"


def test_when_every_model_fails_the_prompt_is_abandoned_naming_the_last_one(
    routed: Routed, keys: dict[str, str]
) -> None:
    routed.use({"retry": {"count": 0}, "fallbacks": [{"model": "beta"}]})
    prompt = routed.add(keys["alice"], prompt="Hi")
    routed.alpha.behaviour = Behaviour(error_status=503)
    routed.beta.behaviour = Behaviour(error_status=500)

    results = [routed.run(prompt["id"]) for _ in range(2)]

    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.ABANDONED]
    body = routed.get(keys["alice"], prompt["id"])["prompt"]
    assert body["status"] == "abandoned" and body["error"].startswith("beta: ") and "500" in body["error"]
    assert body["maxRetries"] == 1  # two models, no retries: two runs in all


def test_a_client_error_is_neither_retried_nor_routed(routed: Routed, keys: dict[str, str]) -> None:
    routed.use({"retry": {"count": 3}, "fallbacks": [{"model": "beta"}]})
    prompt = routed.add(keys["alice"], prompt="Hi")
    routed.alpha.behaviour = Behaviour(error_status=400)

    result = routed.run(prompt["id"])

    assert result.outcome is Outcome.ABANDONED
    assert routed.get(keys["alice"], prompt["id"])["prompt"]["status"] == "abandoned"
    assert routed.beta.requests == []


def test_a_stream_cut_midway_is_retried_and_the_thread_starts_over(
    routed: Routed, keys: dict[str, str], settings: Settings
) -> None:
    routed.use({"retry": {"count": 1, "on_codes": [502]}})
    prompt = routed.add(keys["alice"], prompt="Hi")
    routed.alpha.behaviour = Behaviour(text=ALPHA_TEXT, cut_after=2)

    first = routed.run(prompt["id"])
    routed.alpha.behaviour = Behaviour(text=ALPHA_TEXT)
    second = routed.run(prompt["id"])

    assert (first.outcome, second.outcome) == (Outcome.RETRY, Outcome.COMPLETED)
    body = routed.get(keys["alice"], prompt["id"])
    assert body["answer"] == ALPHA_TEXT  # not the cut attempt's words glued to the retry's
    events = DynamoThreadEventLog(settings.thread_events_table).after(thread_key_of_dict(prompt), 0, 100)
    kinds = [e.type for e in events]
    assert "reset" in kinds
    after_reset = events[len(kinds) - 1 - kinds[::-1].index("reset") :]
    assert "".join(e.text or "" for e in after_reset if e.type == "delta") == ALPHA_TEXT
    cut_attempt = events[: kinds.index("reset")]
    assert any(e.type == "delta" for e in cut_attempt)  # the cut attempt had streamed some text
    assert [e.status for e in events if e.type == "status"][-1] == "completed"


def test_a_timed_out_attempt_falls_back_to_the_next_model(routed: Routed, keys: dict[str, str]) -> None:
    # The timeout bounds each model's whole call, the fallback's too: 1 s leaves beta's quick answer
    # room on a busy machine, and alpha's first token comes a second after it.
    routed.use({"timeout": {"call_timeout": 1000}, "retry": {"count": 0}, "fallbacks": [{"model": "beta"}]})
    prompt = routed.add(keys["alice"], prompt="Hi")
    routed.alpha.behaviour = Behaviour(text=ALPHA_TEXT, token_delay=2.0)

    first = routed.run(prompt["id"])
    errored = routed.get(keys["alice"], prompt["id"])["prompt"]
    second = routed.run(prompt["id"])

    assert first.outcome is Outcome.RETRY and first.retry_after == 0
    assert "exceeded 1 s" in errored["error"]
    assert second.outcome is Outcome.COMPLETED
    body = routed.get(keys["alice"], prompt["id"])
    assert body["answer"] == BETA_TEXT and body["prompt"]["answeredBy"] == "beta"
    assert routed.alpha.requests[0].wait() != "completed"  # the slow stream was hung up on


def test_the_load_balancer_picks_by_weight_and_the_rest_of_the_pool_is_tried(
    routed: Routed, keys: dict[str, str]
) -> None:
    routed.use(
        {
            "load_balancer": {
                "type": "weight_based",
                "models": [{"model": "alpha", "weight": 0.5}, {"model": "beta", "weight": 0.5}],
            },
            "retry": {"count": 0},
        }
    )
    prompts = [routed.add(keys["alice"], prompt=f"Hi {i}") for i in range(30)]
    picks = {p["modelId"] for p in prompts}
    on_alpha = next(p for p in prompts if p["modelId"] == "alpha")
    routed.alpha.behaviour = Behaviour(error_status=503)

    results = [routed.run(on_alpha["id"]) for _ in range(2)]

    assert picks == {"alpha", "beta"}
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.COMPLETED]
    assert routed.get(keys["alice"], on_alpha["id"])["prompt"]["answeredBy"] == "beta"


def test_an_exact_match_is_answered_from_the_cache_until_it_expires(
    routed: Routed, keys: dict[str, str], settings: Settings
) -> None:
    routed.use({"cache": {"type": "exact_match", "ttl": 60}})
    first = routed.add(keys["alice"], prompt="Same question")
    assert routed.run(first["id"]).outcome is Outcome.COMPLETED

    hit = routed.add(keys["alice"], prompt="Same question")
    other_user = routed.add(keys["bob"], prompt="Same question")
    other_text = routed.add(keys["alice"], prompt="Another question")
    outcomes = [routed.run(p["id"]).outcome for p in (hit, other_user, other_text)]
    routed.now[0] += 61
    expired = routed.add(keys["alice"], prompt="Same question")
    assert routed.run(expired["id"]).outcome is Outcome.COMPLETED

    assert outcomes == [Outcome.COMPLETED] * 3
    assert len(routed.alpha.requests) == 4  # first, bob's, the other text, and after expiry
    body = routed.get(keys["alice"], hit["id"])
    assert body["answer"] == ALPHA_TEXT and body["prompt"]["answeredBy"] == "alpha"
    events = DynamoThreadEventLog(settings.thread_events_table).after(thread_key_of_dict(hit), 0, 100)
    assert "".join(e.text or "" for e in events if e.type == "delta") == ALPHA_TEXT
    assert [e.status for e in events if e.type == "status"] == ["scheduled", "running", "completed"]


def test_a_cache_hit_shows_the_cached_usage_and_counts_a_hit_not_tokens_again(
    routed: Routed, keys: dict[str, str]
) -> None:
    routed.use({"cache": {"type": "exact_match", "ttl": 60}})
    first = routed.add(keys["alice"], prompt="Same question")
    hit = routed.add(keys["alice"], prompt="Same question")
    assert [routed.run(p["id"]).outcome for p in (first, hit)] == [Outcome.COMPLETED] * 2

    made, cached = (routed.get(keys["alice"], p["id"])["prompt"] for p in (first, hit))
    assert made["finishReason"] == "stop" and cached["finishReason"] == "cached"
    assert made["promptTokens"] > 0 and made["completionTokens"] > 0 and not made["usageEstimated"]
    fields = ("promptTokens", "completionTokens", "usageEstimated")
    assert [cached[f] for f in fields] == [
        made[f] for f in fields
    ]  # the server's count, kept with the answer
    total = routed.client.get("/prompt-svc/usage", headers=auth(keys["alice"])).json()["total"]
    assert total == {
        "prompts": 2,
        "promptTokens": made["promptTokens"],
        "completionTokens": made["completionTokens"],
        "failedAttempts": 0,
        "cacheHits": 1,
    }


def test_a_failed_attempt_counts_against_the_model_that_failed(routed: Routed, keys: dict[str, str]) -> None:
    routed.use({"retry": {"count": 1, "on_codes": [429]}, "fallbacks": [{"model": "beta"}]})
    prompt = routed.add(keys["alice"], prompt="Hi")
    routed.alpha.behaviour = Behaviour(error_status=503)  # not one it retries: beta next, at once
    assert [routed.run(prompt["id"]).outcome for _ in range(2)] == [Outcome.RETRY, Outcome.COMPLETED]

    body = routed.client.get("/prompt-svc/usage", params={"groupBy": "model"}, headers=auth(keys["alice"]))
    counts = {g["modelId"]: (g["prompts"], g["failedAttempts"]) for g in body.json()["usage"]}
    assert counts == {"alpha": (0, 1), "beta": (1, 0)}


def test_a_cache_that_cannot_be_read_falls_back_to_the_engine(
    routed: Routed, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    routed.use({"cache": {"type": "exact_match", "ttl": 60}})

    def broken(self: DynamoResponseCache, key: str) -> None:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(DynamoResponseCache, "get", broken)
    prompt = routed.add(keys["alice"], prompt="Hi")

    assert routed.run(prompt["id"]).outcome is Outcome.COMPLETED
    assert routed.get(keys["alice"], prompt["id"])["answer"] == ALPHA_TEXT


def test_the_callers_max_retries_caps_the_plan(routed: Routed, keys: dict[str, str]) -> None:
    routed.use({"retry": {"count": 5, "on_codes": [503]}, "fallbacks": [{"model": "beta"}]})
    capped = routed.add(keys["alice"], prompt="Hi", maxRetries=1)
    full = routed.add(keys["alice"], prompt="Hi")
    routed.alpha.behaviour = Behaviour(error_status=503)

    results = [routed.run(capped["id"]) for _ in range(2)]

    assert (capped["maxRetries"], full["maxRetries"]) == (1, 11)  # 2 models x (1 + 5 retries) - 1
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.ABANDONED]
    assert routed.beta.requests == []


def test_a_plan_naming_a_model_the_catalog_lacks_is_refused_and_nothing_is_queued(
    routed: Routed, keys: dict[str, str], local_stack: LocalStack
) -> None:
    routed.use({"fallbacks": [{"model": "no-such-model"}]})

    response = routed.client.post(
        "/prompt-svc/prompt", json={"modelId": "alpha", "prompt": "Hi"}, headers=auth(keys["alice"])
    )

    assert response.status_code == 400
    assert "'no-such-model'" in response.json()["error"]
    assert queue_depth(local_stack) == 0


# -- stored prompts (/v2/prompts) ------------------------------------------------------------------

STORED = {
    "model": "alpha",
    "messages": [
        {"role": "system", "content": "You answer in {{language}}."},
        {"role": "user", "content": "Tell me about {{topic}}."},
    ],
    "temperature": 0.3,
    "max_tokens": 50,
    "guardrails": [{"id": "orq_pii_detection", "execute_on": "input"}],
}


def store(routed: Routed, key: str, prompt: dict[str, Any] | None = None) -> dict:
    body = {"display_name": "Explainer", "path": "Default/explainers", "prompt": prompt or STORED}
    response = routed.client.post("/v2/prompts", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_a_stored_prompt_runs_with_its_rendered_messages_model_and_parameters(
    routed: Routed, keys: dict[str, str]
) -> None:
    routed.use({})
    stored = store(routed, keys["alice"])
    prompt = routed.add(
        keys["alice"],
        modelId=None,
        promptConfigId=stored["_id"],
        variables={"language": "French", "topic": "cheese"},
    )

    result = routed.run(prompt["id"])

    assert result.outcome is Outcome.COMPLETED
    assert prompt["promptConfigId"] == stored["_id"]
    assert prompt["promptConfigVersion"] == stored["prompt"]["version"]
    assert prompt["modelId"] == "alpha" and prompt["prompt"] == "Tell me about cheese."
    sent = routed.alpha.last_request.body
    assert sent["messages"] == [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Tell me about cheese."},
    ]
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 50  # the stored values win over the catalog's
    assert "guardrails" not in sent  # kept with the prompt, not sent to a server that may reject it
    body = routed.get(keys["alice"], prompt["id"])
    assert body["answer"] == ALPHA_TEXT and body["prompt"]["answeredBy"] == "alpha"


def test_the_requests_prompt_follows_the_stored_conversation(routed: Routed, keys: dict[str, str]) -> None:
    routed.use({})
    stored = store(
        routed, keys["alice"], {"model": "beta", "messages": [{"role": "system", "content": "Be brief."}]}
    )
    prompt = routed.add(keys["alice"], modelId=None, promptConfigId=stored["_id"], prompt="What is DynamoDB?")

    routed.run(prompt["id"])

    assert routed.beta.last_request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is DynamoDB?"},
    ]
    assert prompt["modelId"] == "beta" and prompt["prompt"] == "What is DynamoDB?"


def test_a_missing_variable_is_a_400_naming_it_and_nothing_is_stored_or_queued(
    routed: Routed, keys: dict[str, str], local_stack: LocalStack
) -> None:
    routed.use({})
    stored = store(routed, keys["alice"])

    response = routed.client.post(
        "/prompt-svc/prompt",
        json={"id": "prm_missing", "promptConfigId": stored["_id"], "variables": {"topic": "cheese"}},
        headers=auth(keys["alice"]),
    )

    assert response.status_code == 400
    assert "language" in response.json()["error"] and "topic" not in response.json()["error"]
    assert queue_depth(local_stack) == 0
    assert routed.client.get("/prompt-svc/prompt/prm_missing", headers=auth(keys["alice"])).status_code == 404


def test_another_users_or_an_unknown_stored_prompt_is_not_found(routed: Routed, keys: dict[str, str]) -> None:
    routed.use({})
    stored = store(routed, keys["alice"])
    variables = {"language": "French", "topic": "cheese"}

    responses = [
        routed.client.post(
            "/prompt-svc/prompt",
            json={"promptConfigId": config_id, "variables": variables},
            headers=auth(keys[user]),
        )
        for user, config_id in (("bob", stored["_id"]), ("alice", "01JJ1HDHN79XAS7A01WB3HYSDB"))
    ]

    assert [r.status_code for r in responses] == [404, 404]
    assert all("error" in r.json() for r in responses)


def test_a_pinned_version_runs_as_it_was_stored(routed: Routed, keys: dict[str, str]) -> None:
    routed.use({})
    stored = store(routed, keys["alice"], {**STORED, "temperature": 0.1})
    first_version = stored["prompt"]["version"]
    patched = routed.client.patch(
        f"/v2/prompts/{stored['_id']}",
        json={"prompt": {**STORED, "temperature": 0.9}},
        headers=auth(keys["alice"]),
    )
    assert patched.status_code == 200 and patched.json()["prompt"]["version"] != first_version
    variables = {"language": "German", "topic": "bread"}

    pinned = routed.add(
        keys["alice"],
        modelId=None,
        promptConfigId=stored["_id"],
        promptConfigVersion=first_version,
        variables=variables,
    )
    routed.run(pinned["id"])
    pinned_temperature = routed.alpha.last_request.body["temperature"]
    current = routed.add(keys["alice"], modelId=None, promptConfigId=stored["_id"], variables=variables)
    routed.run(current["id"])

    assert (pinned_temperature, routed.alpha.last_request.body["temperature"]) == (0.1, 0.9)
    assert pinned["promptConfigVersion"] == first_version
    assert current["promptConfigVersion"] == patched.json()["prompt"]["version"]


def test_a_stored_prompts_fallbacks_route_its_runs(routed: Routed, keys: dict[str, str]) -> None:
    routed.use({})
    stored = store(
        routed, keys["alice"], {**STORED, "retry": {"count": 0}, "fallbacks": [{"model": "gamma"}]}
    )
    prompt = routed.add(
        keys["alice"],
        modelId=None,
        promptConfigId=stored["_id"],
        variables={"language": "Dutch", "topic": "tea"},
    )
    routed.alpha.behaviour = Behaviour(error_status=503)

    results = [routed.run(prompt["id"]) for _ in range(2)]

    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.COMPLETED]
    assert routed.beta.last_request.body["model"] == "gamma"
    assert routed.beta.last_request.body["temperature"] == 0.3  # the stored parameters go to every model
    assert routed.get(keys["alice"], prompt["id"])["prompt"]["answeredBy"] == "gamma"


def test_re_adding_a_stored_prompt_run_is_idempotent_and_another_body_conflicts(
    routed: Routed, keys: dict[str, str], local_stack: LocalStack
) -> None:
    routed.use({})
    stored = store(routed, keys["alice"])
    body = {
        "id": "prm_again",
        "promptConfigId": stored["_id"],
        "variables": {"language": "French", "topic": "x"},
    }

    first = routed.client.post("/prompt-svc/prompt", json=body, headers=auth(keys["alice"]))
    again = routed.client.post("/prompt-svc/prompt", json=body, headers=auth(keys["alice"]))
    other = routed.client.post(
        "/prompt-svc/prompt",
        json={**body, "variables": {"language": "French", "topic": "y"}},
        headers=auth(keys["alice"]),
    )

    assert (first.status_code, again.status_code, other.status_code) == (200, 200, 409)
    assert again.json()["prompt"] == first.json()["prompt"]
    assert queue_depth(local_stack) == 1


def test_model_id_cannot_override_a_stored_prompts_model(routed: Routed, keys: dict[str, str]) -> None:
    routed.use({})
    stored = store(routed, keys["alice"])

    response = routed.client.post(
        "/prompt-svc/prompt",
        json={
            "promptConfigId": stored["_id"],
            "modelId": "beta",
            "variables": {"language": "a", "topic": "b"},
        },
        headers=auth(keys["alice"]),
    )

    assert response.status_code == 400 and "modelId" in response.json()["error"]
