"""The FastAPI application factory.

The service has three APIs behind one HTTP API: the queue (`/prompt-svc/*`: prompts, threads,
models), the console (API keys, usage and the playground page: `/prompt-svc/keys`,
`/prompt-svc/usage`, `/playground`) and the prompt registry (`/v2/prompts`). Each Lambda function
serves one (functions/api, functions/console, functions/registry) and imports only its routes;
`promptsvc dev` and the OpenAPI document serve all three.
"""

from collections.abc import Collection
from functools import cache, partial
from typing import Literal

from aws_lambda_powertools import Logger
from fastapi import FastAPI

from promptsvc import wiring
from promptsvc.api import errors, openapi
from promptsvc.api.body_limit import BodyLimit
from promptsvc.settings import Settings, get_settings

logger = Logger(child=True)

Api = Literal["queue", "console", "registry"]
APIS: tuple[Api, ...] = ("queue", "console", "registry")

DESCRIPTION = (
    "A managed prompt service: the queue API (`/prompt-svc/*`, wire-compatible with `@1backend/client`) "
    "and the prompt registry (`/v2/prompts`, wire-compatible with `orq-ai-sdk`). Every route needs an "
    'API key. Errors are `{"error": ...}` on /prompt-svc/* and `{"message": ...}` on /v2/*.'
)


def create_app(
    settings: Settings | None = None, *, docs: bool = False, apis: Collection[Api] = APIS
) -> FastAPI:
    """The API serving `apis`. `docs`: also serve the OpenAPI document at /openapi.json and Swagger
    UI at /docs, unauthenticated (`promptsvc dev` does; the deployed API's routes do not reach them)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="promptsvc",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        redirect_slashes=False,  # a redirect would answer before auth, to a Location from the Host header
    )
    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.limits = wiring.limit_service(settings)  # every route's key counts its requests
    app.state.keys = wiring.key_service(settings, api=True)
    errors.install(app)
    if "queue" in apis:
        _serve_queue(app, settings)
    if "console" in apis:
        _serve_console(app, settings)
    if "registry" in apis:
        _serve_registry(app, settings)
    app.add_middleware(BodyLimit, read_seconds=settings.body_read_seconds)
    return app


def _serve_queue(app: FastAPI, settings: Settings) -> None:
    from promptsvc.api import seed_routes
    from promptsvc.api.routes import router
    from promptsvc.services.threads import ThreadService

    app.state.prompts = wiring.prompt_service(settings, app.state.limits)
    app.state.intake = wiring.prompt_intake(settings)
    app.state.lister = cache(partial(wiring.prompt_lister, settings))  # made by the first list (api/deps.py)
    app.state.threads = ThreadService(wiring.thread_event_log(settings))
    app.include_router(router)
    seed_routes.install(app)  # promptTypes, subscribeToPromptResponses (SSE)


def _serve_console(app: FastAPI, settings: Settings) -> None:
    """What an account's people manage rather than what its apps call: its keys, its usage, and
    the playground page (its own function: a prompt's cold start builds none of it, and only this
    function's role may write the keys table)."""
    from promptsvc.api.key_routes import router as key_router
    from promptsvc.api.playground import router as playground_router
    from promptsvc.api.usage_routes import router as usage_router

    app.state.usage = wiring.usage_service(settings)
    app.include_router(key_router)  # /prompt-svc/keys
    app.include_router(usage_router)  # /prompt-svc/usage
    app.include_router(playground_router)  # static, the one route without a key (api/playground.py)


def _serve_registry(app: FastAPI, settings: Settings) -> None:
    from promptsvc.api.registry_routes import router

    app.state.registry = wiring.registry_service(settings)
    app.include_router(router)
