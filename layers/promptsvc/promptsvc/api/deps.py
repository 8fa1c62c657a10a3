"""The services a route uses, as FastAPI dependencies: the one way a handler reaches them (the app
builds each once, in api/app.py, and keeps it on `app.state`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

# Types only: each API imports the services it serves (api/app.py), and no other's.
if TYPE_CHECKING:
    from promptsvc.services.keys import KeyService
    from promptsvc.services.limits import LimitService
    from promptsvc.services.listing import PromptLister
    from promptsvc.services.prompt_intake import PromptIntake
    from promptsvc.services.prompts import PromptService
    from promptsvc.services.registry import RegistryService
    from promptsvc.services.threads import ThreadService
    from promptsvc.services.usage import UsageService
    from promptsvc.settings import Settings


def settings(request: Request) -> Settings:
    return request.app.state.settings


def limits(request: Request) -> LimitService:
    return request.app.state.limits


def prompts(request: Request) -> PromptService:
    return request.app.state.prompts


def intake(request: Request) -> PromptIntake:
    return request.app.state.intake


def lister(request: Request) -> PromptLister:
    """Made by the first list request (api/app.py): the list query language, its reads and its
    cursors are no other request's, so an instance's cold start does not import them."""
    return request.app.state.lister()


def keys(request: Request) -> KeyService:
    return request.app.state.keys


def threads(request: Request) -> ThreadService:
    return request.app.state.threads


def registry(request: Request) -> RegistryService:
    return request.app.state.registry


def usage(request: Request) -> UsageService:
    return request.app.state.usage
