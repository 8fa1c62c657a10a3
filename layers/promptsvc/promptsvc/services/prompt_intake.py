"""What an add-prompt request becomes: the `NewPrompt` the queue stores.

A plain prompt takes its model and template from the catalog; a stored prompt (`promptConfigId`)
is rendered with the request's variables and runs with its stored model and parameters. Either
gets a routing plan when its settings (the stored prompt's, or the model's catalog entry's) have
routing rules, and every model the plan may try must be in the catalog, so a prompt that cannot
run is refused here rather than abandoned later.
"""

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from promptsvc.domain.catalog import Catalog
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.ids import new_id
from promptsvc.domain.prompt import DEFAULT_MAX_RETRIES, NewPrompt
from promptsvc.domain.prompt_variables import last_user_text, render_messages
from promptsvc.domain.routing import RunPlan, has_routing, plan_from

if TYPE_CHECKING:  # its 37 models are built where a prompt has routing or is stored, not at init
    from promptsvc.domain.prompt_settings import PromptSettings


class StoredVersion(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def prompt(self) -> "PromptSettings": ...


class StoredPrompts(Protocol):
    def version_for_run(self, user_id: str, prompt_id: str, version_id: str | None) -> StoredVersion: ...


class PromptRequest(msgspec.Struct, frozen=True):
    """An add-prompt request, validated at the edge (`api.schemas.AddPromptRequest`)."""

    id: str | None
    prompt: str | None
    modelId: str | None
    template: str | None
    threadId: str | None
    maxRetries: int | None
    sync: bool
    promptConfigId: str | None = None
    promptConfigVersion: str | None = None
    variables: dict[str, Any] | None = None


class PromptIntake:
    def __init__(
        self,
        catalog: Callable[[], Catalog],
        stored: StoredPrompts | None,
        rng: random.Random | None = None,
    ) -> None:
        self._catalog = catalog
        self._stored = stored
        self._rng = rng or random.SystemRandom()

    def new_prompt(self, user_id: str, request: PromptRequest) -> NewPrompt:
        if request.promptConfigId:
            return self._from_stored(user_id, request)
        return self._plain(request)

    def _plain(self, request: PromptRequest) -> NewPrompt:
        if not request.prompt:
            raise InvalidRequest("prompt: field required (or name a stored prompt with promptConfigId)")
        catalog = self._catalog()
        model = catalog.resolve(request.modelId)
        max_retries = DEFAULT_MAX_RETRIES if request.maxRetries is None else request.maxRetries
        plan = None
        if model.routing:
            settings = _catalog_routing(model.id, model.routing)
            if has_routing(settings):
                plan = plan_from(settings, model.id, max_retries=max_retries, rng=self._rng)
                self._check_models(catalog, plan, f"the routing of model {model.id!r}")
        template = request.template or model.template
        return NewPrompt(
            id=request.id or new_id("prm"),
            prompt=request.prompt,
            modelId=plan.models[0] if plan else model.id,
            template=template,
            threadId=request.threadId or new_id("thr"),
            maxRetries=_budget(request.maxRetries, plan),
            sync=request.sync,
            plan=plan,
            fingerprint={
                "prompt": request.prompt,
                "modelId": model.id,
                "template": template,
                "threadId": request.threadId or "",
                "maxRetries": max_retries,
            },
        )

    def _from_stored(self, user_id: str, request: PromptRequest) -> NewPrompt:
        if request.modelId:
            raise InvalidRequest(
                "modelId: not allowed with promptConfigId (the stored prompt names its model)"
            )
        if self._stored is None:
            raise InvalidRequest("promptConfigId: this deployment has no prompt registry")
        prompt_id = str(request.promptConfigId)
        version = self._stored.version_for_run(user_id, prompt_id, request.promptConfigVersion)
        settings = version.prompt
        where = f"stored prompt {prompt_id!r} (version {version.id})"
        if not settings.messages and not request.prompt:
            raise InvalidRequest(f"{where} has no messages, and the request has no prompt")
        stored_messages = [m.model_dump(mode="json", exclude_none=True) for m in settings.messages or ()]
        messages = render_messages(stored_messages, request.variables or {})
        if request.prompt:  # the caller's input follows the stored conversation
            messages.append({"role": "user", "content": request.prompt})
        catalog = self._catalog()
        primary = settings.model or catalog.default_model_id
        max_retries = DEFAULT_MAX_RETRIES if request.maxRetries is None else request.maxRetries
        plan = plan_from(
            settings,
            primary,
            max_retries=max_retries,
            rng=self._rng,
            messages=messages,
            parameters=settings.engine_parameters(),
        )
        self._check_models(catalog, plan, where)
        first = catalog.resolve(plan.models[0])
        return NewPrompt(
            id=request.id or new_id("prm"),
            prompt=last_user_text(messages),
            modelId=first.id,
            template=first.template,
            threadId=request.threadId or new_id("thr"),
            maxRetries=_budget(request.maxRetries, plan),
            sync=request.sync,
            promptConfigId=prompt_id,
            promptConfigVersion=version.id,
            plan=plan,
            fingerprint={
                "prompt": request.prompt or "",
                "promptConfigId": prompt_id,
                "promptConfigVersion": request.promptConfigVersion or "",
                "variables": dict(request.variables or {}),
                "threadId": request.threadId or "",
                "maxRetries": max_retries,
            },
        )

    @staticmethod
    def _check_models(catalog: Catalog, plan: RunPlan, where: str) -> None:
        unknown = [m for m in plan.models if m not in catalog.models]
        if unknown:
            known = ", ".join(sorted(catalog.models))
            names = ", ".join(repr(m) for m in unknown)
            raise InvalidRequest(f"{where} routes to unknown model {names}; known models: {known}")


def _catalog_routing(model_id: str, routing: dict[str, Any]) -> "PromptSettings":
    from promptsvc.domain.prompt_settings import PromptSettings

    try:
        return PromptSettings.model_validate(routing)
    except ValueError as error:  # a catalog the operator got wrong: say where
        raise InvalidRequest(f"the catalog's routing for model {model_id!r} is invalid: {error}") from None


def _budget(requested: int | None, plan: RunPlan | None) -> int:
    """The prompt's `maxRetries`: a plan allows as many runs as its models and retries add up to,
    and never more than the caller asked for (the consumer stops at whichever comes first)."""
    if plan is None:
        return DEFAULT_MAX_RETRIES if requested is None else requested
    return plan.attempts - 1 if requested is None else min(requested, plan.attempts - 1)
