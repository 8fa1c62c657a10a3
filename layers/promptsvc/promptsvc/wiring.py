"""The composition root: builds the services from settings. Handlers call these once per cold start."""

from functools import partial

from promptsvc.adapters.clients import secret_bytes
from promptsvc.adapters.key_table import DynamoKeyRepository
from promptsvc.adapters.prompt_queue import SqsPromptQueue
from promptsvc.adapters.prompt_table import DynamoPromptRepository
from promptsvc.consumer.runner import PromptRunner
from promptsvc.domain.catalog import Catalog
from promptsvc.engines.registry import EngineRegistry
from promptsvc.services.keys import KeyService
from promptsvc.services.listing import PromptLister
from promptsvc.services.prompts import PromptService
from promptsvc.settings import Settings


def prompt_repository(settings: Settings) -> DynamoPromptRepository:
    return DynamoPromptRepository(settings.prompts_table, settings.prompt_retention_days)


def catalog(settings: Settings) -> Catalog:
    return Catalog.load(settings.model_catalog_file or None)


def prompt_service(settings: Settings) -> PromptService:
    return PromptService(
        prompt_repository(settings), SqsPromptQueue(settings.prompts_queue_url), catalog(settings)
    )


def prompt_lister(settings: Settings) -> PromptLister:
    return PromptLister(prompt_repository(settings), partial(secret_bytes, settings.cursor_secret_arn))


def key_service(settings: Settings) -> KeyService:
    return KeyService(DynamoKeyRepository(settings.keys_table), cache_seconds=settings.key_cache_seconds)


def prompt_runner(settings: Settings) -> PromptRunner:
    return PromptRunner(prompt_repository(settings), catalog(settings), EngineRegistry(settings))
