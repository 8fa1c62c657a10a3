"""Routing policy: which models a prompt is tried on, in what order, and what a failure leads to.

A routed prompt (one run from a stored prompt, or a plain prompt whose model's catalog entry has
routing settings) carries a `RunPlan`, fixed when it is added:

- `models`: the order models are tried in. With a load balancer, the first is picked by normalized
  weights and the rest of the pool follows (in weighted order, so a fallback also follows the
  weights); the `fallbacks` come after, in their order.
- `retry`: each model gets up to `count` more attempts on the listed status codes (any retryable
  failure when no codes are listed), each after an exponential backoff with jitter.
- a model that still fails with a retryable code hands over to the next model at once; a failure
  that cannot succeed on retry (a 4xx other than 408/429) ends the prompt.

Failures without an HTTP status get one, as a gateway reports them: a timeout is 504 and a
connection error or a stream cut midway is 502.

Each attempt is one run of the prompt (its message comes back after the backoff, or at once for
a fallback), so a consumer never sleeps and a consumer that dies loses nothing.
"""

import json
import random
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Protocol

import msgspec

TIMEOUT_CODE = 504
TRANSPORT_CODE = 502


def is_retryable_code(code: int) -> bool:
    """Throttling (429), timeouts (408) and server errors (5xx) may succeed on another attempt."""
    return code in (408, 429) or code >= 500


class RunPlan(msgspec.Struct, frozen=True):
    """Everything a consumer needs to run a routed prompt, stored with it as JSON."""

    models: tuple[str, ...]
    retry_count: int = 0
    retry_on: tuple[int, ...] | None = None  # None: every retryable code
    call_timeout_ms: float | None = None
    cache_ttl: int | None = None  # seconds; None: no cache
    messages: tuple[dict[str, Any], ...] = ()  # rendered chat messages (stored prompts)
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)  # over the catalog's defaults

    @property
    def attempts(self) -> int:
        """The most runs the plan allows: every model, each with its retries."""
        return len(self.models) * (1 + self.retry_count)

    def to_json(self) -> str:
        return json.dumps(msgspec.structs.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "RunPlan":
        data = json.loads(text)
        return cls(
            models=tuple(data["models"]),
            retry_count=int(data.get("retry_count", 0)),
            retry_on=None if data.get("retry_on") is None else tuple(data["retry_on"]),
            call_timeout_ms=data.get("call_timeout_ms"),
            cache_ttl=data.get("cache_ttl"),
            messages=tuple(data.get("messages", ())),
            parameters=dict(data.get("parameters", {})),
        )


class StepKind(StrEnum):
    RETRY = "retry"  # the same model again, after a backoff
    FALLBACK = "fallback"  # the next model, at once
    GIVE_UP = "give-up"  # abandoned


class Step(msgspec.Struct, frozen=True):
    kind: StepKind
    model_index: int  # the model the next attempt uses


def after_failure(plan: RunPlan, model_index: int, model_attempts: int, code: int) -> Step:
    """What follows a failed attempt.

    `model_attempts` counts the attempts made on the current model, the failed one included.
    """
    if model_attempts <= plan.retry_count and _retries_on(plan, code):
        return Step(StepKind.RETRY, model_index)
    if is_retryable_code(code) and model_index + 1 < len(plan.models):
        return Step(StepKind.FALLBACK, model_index + 1)
    return Step(StepKind.GIVE_UP, model_index)


def _retries_on(plan: RunPlan, code: int) -> bool:
    if plan.retry_on is None:
        return is_retryable_code(code)
    return code in plan.retry_on


# -- building a plan from routing settings -----------------------------------------------------


class _Weighted(Protocol):
    model: str
    weight: float


def weighted_pick(weights: Sequence[float], rng: random.Random) -> int:
    """Index picked with probability weight / sum(weights) (weights need not sum to 1)."""
    total = sum(weights)
    point = rng.random() * total
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1  # rounding at the very top of the range


def weighted_order(pool: Sequence[_Weighted], rng: random.Random) -> list[str]:
    """The pool's models in weighted random order: the first is the request's pick, the rest are
    what is tried next should it fail (sampling without replacement)."""
    remaining = list(pool)
    order: list[str] = []
    while remaining:
        index = weighted_pick([m.weight for m in remaining], rng)
        order.append(remaining.pop(index).model)
    return order


def route_models(
    primary: str, pool: Sequence[_Weighted] | None, fallbacks: Sequence[str], rng: random.Random
) -> tuple[str, ...]:
    """The models in the order they are tried, each once."""
    first = weighted_order(pool, rng) if pool else [primary]
    ordered: list[str] = []
    for model in [*first, *fallbacks]:
        if model not in ordered:
            ordered.append(model)
    return tuple(ordered)


class RoutingSettings(Protocol):
    """The routing part of a stored prompt's settings (`PromptSettings`) or a catalog entry's."""

    fallbacks: Any
    retry: Any
    cache: Any
    load_balancer: Any
    timeout: Any


def has_routing(settings: RoutingSettings) -> bool:
    return any(
        getattr(settings, name) is not None
        for name in ("fallbacks", "retry", "cache", "load_balancer", "timeout")
    )


def plan_from(
    settings: RoutingSettings,
    primary: str,
    *,
    max_retries: int,
    rng: random.Random,
    messages: Sequence[dict[str, Any]] = (),
    parameters: dict[str, Any] | None = None,
) -> RunPlan:
    """The plan for one prompt. Without a `retry` setting each model keeps the prompt's own retry
    budget (`max_retries`, on any retryable failure)."""
    pool = settings.load_balancer.models if settings.load_balancer else None
    fallbacks = [f.model for f in settings.fallbacks or ()]
    if settings.retry is not None:
        retry_count, retry_on = int(settings.retry.count), tuple(int(c) for c in settings.retry.on_codes)
    else:
        retry_count, retry_on = max_retries, None
    return RunPlan(
        models=route_models(primary, pool, fallbacks, rng),
        retry_count=retry_count,
        retry_on=retry_on,
        call_timeout_ms=float(settings.timeout.call_timeout) if settings.timeout else None,
        cache_ttl=int(settings.cache.ttl) if settings.cache else None,
        messages=tuple(messages),
        parameters=dict(parameters or {}),
    )
