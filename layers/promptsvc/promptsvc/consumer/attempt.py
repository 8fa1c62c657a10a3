"""What one run of a prompt sends, and to which model.

A plain prompt runs its own model with its template. A routed prompt (`domain.routing`) runs the
model its plan has reached, bounded by the plan's call timeout, with the stored prompt's messages
and parameters over the catalog's defaults; its answer may come from the response cache.
"""

import msgspec
from msgspec.structs import replace

from promptsvc.domain.catalog import Catalog, Model
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.prompt_variables import last_user_text
from promptsvc.domain.response_cache import cache_key
from promptsvc.domain.routing import RunPlan
from promptsvc.domain.template import render
from promptsvc.engines.base import CALL_PARAMETERS, EngineRequest


class Attempt(msgspec.Struct, frozen=True):
    """One run's model and request; a routed prompt's also has its place in the plan."""

    model: Model
    request: EngineRequest
    plan: RunPlan | None = None
    cache_key: str | None = None  # the response cache's key, when the plan caches answers


def attempt_for(claimed: Prompt, catalog: Catalog, *, caching: bool) -> Attempt:
    """The attempt of the run just claimed (`caching`: a response cache is configured).
    InvalidRequest when the catalog has no such model."""
    plan = claimed.run_plan
    stored = plan.messages if plan else ()
    model, template = _model_and_template(claimed, catalog, plan, chat=bool(stored))
    parameters = plan.parameters if plan else {}
    request = EngineRequest(
        model=model,
        prompt=render(template, last_user_text(stored) if stored else claimed.prompt),
        messages=tuple(stored) or ({"role": "user", "content": claimed.prompt},),
        parameters={**model.parameters, **{k: v for k, v in parameters.items() if k in CALL_PARAMETERS}},
    )
    if plan is None:
        return Attempt(model, request)
    key = None
    if plan.cache_ttl and caching:
        every = {**model.parameters, **parameters}
        key = cache_key(claimed.userId, model.id, request.messages, request.prompt, every)
    return Attempt(model, request, plan, key)


def _model_and_template(
    claimed: Prompt, catalog: Catalog, plan: RunPlan | None, *, chat: bool
) -> tuple[Model, str]:
    """The run's model and template (`chat`: the prompt is stored chat messages)."""
    model_id = plan.models[min(claimed.routeIndex, len(plan.models) - 1)] if plan else claimed.modelId
    model = catalog.resolve(model_id)
    if plan and plan.call_timeout_ms:
        model = replace(model, call_timeout=plan.call_timeout_ms / 1000)
    # The prompt's own template is for its first model; another model gets its own.
    template = claimed.template if model.id == claimed.modelId else model.template
    if not chat and model.api == "chat" and template != model.template:
        # The caller chose a template: a chat API would apply the server's own and ignore it,
        # so the prompt goes as a completion, rendered with the caller's template.
        model = replace(model, api="completions")
    return model, template
