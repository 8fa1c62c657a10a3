"""The FastAPI application factory."""

from aws_lambda_powertools import Logger
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from promptsvc import wiring
from promptsvc.api import errors
from promptsvc.api.registry_routes import router as registry_router
from promptsvc.api.routes import router
from promptsvc.services.threads import ThreadService
from promptsvc.settings import Settings, get_settings

logger = Logger(child=True)

MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """413 for a body whose declared length is over the limit, before anything reads it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                response = errors.error_response(
                    413, f"request body is larger than {self.limit} bytes", scope.get("path", "")
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="promptsvc", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.prompts = wiring.prompt_service(settings)
    app.state.intake = wiring.prompt_intake(settings)
    app.state.lister = wiring.prompt_lister(settings)
    app.state.keys = wiring.key_service(settings)
    app.state.threads = ThreadService(wiring.thread_event_log(settings))
    app.state.registry = wiring.registry_service(settings)
    errors.install(app)
    app.include_router(router)
    app.include_router(registry_router)
    app.add_middleware(BodyLimit)
    return app
