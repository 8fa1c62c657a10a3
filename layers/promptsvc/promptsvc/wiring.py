"""The composition root: builds the services from settings. Handlers call these once per cold start."""

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING

from promptsvc.settings import Settings

# Each factory imports what it builds, so each function's cold start imports what its requests use
# and no more (benchmarks/cold_start.py; tests/deploy/test_cold_start_imports.py checks which
# modules each function imports).
if TYPE_CHECKING:
    from promptsvc.adapters.catalog_source import CatalogSource
    from promptsvc.adapters.connection_table import DynamoConnectionStore
    from promptsvc.adapters.connections_api import ConnectionsApi
    from promptsvc.adapters.prompt_queue import SqsMessages, SqsPromptQueue
    from promptsvc.adapters.prompt_table import DynamoPromptStore
    from promptsvc.adapters.thread_event_table import DynamoThreadEventLog
    from promptsvc.adapters.usage_table import DynamoUsageTable
    from promptsvc.consumer.async_runs import AsyncRuns
    from promptsvc.consumer.runner import PromptRunner
    from promptsvc.domain.catalog import Catalog
    from promptsvc.domain.ports import AnswerBodies, FramePoster, ResponseCache
    from promptsvc.domain.registry import RegistryVersion
    from promptsvc.engines.base import Engine
    from promptsvc.engines.sagemaker_async import SageMakerAsyncEngine
    from promptsvc.services.connection_keys import ConnectionKeys
    from promptsvc.services.fanout import Fanout
    from promptsvc.services.keys import KeyService
    from promptsvc.services.limits import LimitService
    from promptsvc.services.listing import PromptLister
    from promptsvc.services.prompt_intake import PromptIntake
    from promptsvc.services.prompts import PromptService
    from promptsvc.services.registry import RegistryService
    from promptsvc.services.subscriptions import SubscriptionService
    from promptsvc.services.usage import UsageService


def prompt_store(settings: Settings, *, completes: bool = False) -> "DynamoPromptStore":
    """The prompts' lifecycle store; with a limits table, a prompt's end gives back its key's
    in-flight slot (and its fast lane's) in the same transaction. `completes`: the consumer's,
    whose completions also add to the usage counters (the usage table) in that transaction. Adds
    choose a lane when the bulk lane has a queue and FAST_LANE_PROMPTS_PER_USER is above 0."""
    from promptsvc.adapters.prompt_table import DynamoPromptStore

    return DynamoPromptStore(
        settings.prompts_table,
        settings.prompt_retention_days,
        limits_table=settings.limits_table,
        usage_table=settings.usage_table if completes else "",
        fast_lane_per_user=settings.fast_lane_prompts_per_user if settings.prompts_bulk_queue_url else 0,
    )


def prompt_queue(settings: Settings) -> "SqsPromptQueue":
    """The prompts queue, both lanes (the bulk lane's queue when there is one)."""
    from promptsvc.adapters.prompt_queue import SqsPromptQueue

    return SqsPromptQueue(settings.prompts_queue_url, settings.prompts_bulk_queue_url)


def limit_service(settings: Settings) -> "LimitService":
    """The API keys' limits; every check passes when LIMITS_TABLE is unset."""
    from promptsvc.adapters.limit_table import DynamoLimitCounters
    from promptsvc.domain.limits import KeyLimits
    from promptsvc.services.limits import LimitService

    defaults = KeyLimits(
        settings.key_requests_per_minute, settings.key_prompts_in_flight, settings.key_tokens_per_day
    )
    counters = DynamoLimitCounters(settings.limits_table) if settings.limits_table else None
    return LimitService(counters, defaults)


def thread_event_log(settings: Settings) -> "DynamoThreadEventLog | None":
    from promptsvc.adapters.thread_event_table import DynamoThreadEventLog

    if not settings.thread_events_table:
        return None
    return DynamoThreadEventLog(settings.thread_events_table, settings.event_ttl_seconds)


def catalog_source(settings: Settings) -> "CatalogSource":
    from promptsvc.adapters.catalog_source import CatalogSource

    return CatalogSource(settings.model_catalog_ssm_parameter, settings.model_catalog_file)


def catalog(settings: Settings) -> "Catalog":
    return catalog_source(settings).get()


def prompt_service(settings: Settings, limits: "LimitService | None" = None) -> "PromptService":
    from promptsvc.services.prompts import PromptService

    return PromptService(
        prompt_store(settings),
        prompt_queue(settings),
        catalog_source(settings).get,
        events=thread_event_log(settings),
        answers=answer_bodies(settings),
        limits=limits,
    )


def prompt_intake(settings: Settings) -> "PromptIntake":
    from promptsvc.services.prompt_intake import PromptIntake

    return PromptIntake(catalog_source(settings).get, StoredPromptsOnDemand(settings))


class StoredPromptsOnDemand:
    """The registry as the queue API's runs of stored prompts read it, built at the first such run:
    an instance whose requests name no stored prompt never imports the registry's modules."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._registry: RegistryService | None = None

    def version_for_run(self, user_id: str, prompt_id: str, version_id: str | None) -> "RegistryVersion":
        if self._registry is None:
            self._registry = registry_service(self._settings)
        return self._registry.version_for_run(user_id, prompt_id, version_id)


def registry_service(settings: Settings) -> "RegistryService":
    """The prompt registry (/v2/prompts); also what runs of stored prompts read versions from."""
    from promptsvc.adapters.registry_table import DynamoRegistryRepository
    from promptsvc.services.registry import RegistryService

    return RegistryService(DynamoRegistryRepository(settings.registry_table))


def prompt_lister(settings: Settings) -> "PromptLister":
    from promptsvc.adapters.clients import secret_bytes
    from promptsvc.adapters.prompt_reads import DynamoPromptReader
    from promptsvc.services.listing import PromptLister

    return PromptLister(
        DynamoPromptReader(settings.prompts_table), partial(secret_bytes, settings.cursor_secret_arn)
    )


def key_service(
    settings: Settings,
    monotonic: Callable[[], float] = time.monotonic,
    *,
    wall: Callable[[], float] = time.time,
    api: bool = False,
) -> "KeyService":
    """The key cache and key use cases. `api`: the HTTP API's, which also checks allow-lists
    against the catalog and records each key's `lastUsedAt`."""
    from promptsvc.adapters.key_table import DynamoKeyRepository
    from promptsvc.services.keys import KeyService

    return KeyService(
        DynamoKeyRepository(settings.keys_table),
        cache_seconds=settings.key_cache_seconds,
        monotonic=monotonic,
        wall=wall,
        catalog=catalog_source(settings).get if api else None,
        track_use=api,
    )


# Engines by name that runners use before the ones the settings make: none in a deployment; a
# test sets them (`use_engines`) before it loads a handler, which builds its runner at import.
_engines: "dict[str, Engine]" = {}


def use_engines(engines: "Mapping[str, Engine] | None") -> None:
    """For tests: runners built from now on use these engines by name (a scripted engine as
    "mock", say) instead of making them from the settings; None: the settings' engines again."""
    _engines.clear()
    _engines.update(engines or {})


def prompt_runner(settings: Settings, engines: "Mapping[str, Engine] | None" = None) -> "PromptRunner":
    """The consumer core; `engines` by name before the settings' (default: those `use_engines` set)."""
    from promptsvc.consumer.runner import PromptRunner
    from promptsvc.engines.registry import EngineRegistry

    return PromptRunner(
        prompt_store(settings, completes=True),
        catalog_source(settings).get,
        EngineRegistry(settings.engines, _engines if engines is None else engines),
        lease_seconds=settings.lease_seconds,
        cancel_poll=settings.cancel_poll_seconds,
        crash_limit=settings.crash_limit,
        retry_base=settings.retry_base_seconds,
        retry_cap=settings.retry_cap_seconds,
        events=thread_event_log(settings),
        delta_interval=settings.delta_interval_seconds,
        cache=response_cache(settings),
        answers=answer_bodies(settings),
        max_answer_bytes=settings.max_answer_bytes,
        usage=usage_table(settings),
    )


def async_runs(settings: Settings) -> "AsyncRuns":
    """What ends the async endpoints' runs (functions/settle): the endings of any run, without the
    claims, engines and response cache of the `prompt_runner` (the settle function calls no engine)."""
    from promptsvc.consumer.async_runs import AsyncRuns
    from promptsvc.consumer.endings import Endings
    from promptsvc.domain.failure_policy import FailurePolicy

    store = prompt_store(settings, completes=True)
    events = thread_event_log(settings)
    policy = FailurePolicy(settings.retry_base_seconds, settings.retry_cap_seconds)
    endings = Endings(store, events, policy, answer_bodies(settings), time.time, usage=usage_table(settings))
    return AsyncRuns(
        store,
        catalog_source(settings).get,
        endings,
        events,
        lease_seconds=settings.lease_seconds,
        delta_interval=settings.delta_interval_seconds,
        max_answer_bytes=settings.max_answer_bytes,
        clock=time.time,
    )


def answer_bodies(settings: Settings) -> "AnswerBodies | None":
    """The answers bucket (claim check for answers too large for an item); None when unset."""
    from promptsvc.adapters.answer_bodies import S3AnswerBodies

    if not settings.answers_bucket:
        return None
    return S3AnswerBodies(settings.answers_bucket)


def response_cache(settings: Settings) -> "ResponseCache | None":
    from promptsvc.adapters.response_cache_table import DynamoResponseCache

    if not settings.response_cache_table:
        return None
    return DynamoResponseCache(settings.response_cache_table)


def usage_table(settings: Settings) -> "DynamoUsageTable | None":
    """The usage counters (per user, day and model); None when USAGE_TABLE is unset."""
    from promptsvc.adapters.usage_table import DynamoUsageTable

    if not settings.usage_table:
        return None
    return DynamoUsageTable(settings.usage_table)


def usage_service(settings: Settings) -> "UsageService":
    from promptsvc.services.usage import UsageService

    return UsageService(usage_table(settings))


def queue_messages(settings: Settings) -> "SqsMessages":
    from promptsvc.adapters.prompt_queue import SqsMessages

    return SqsMessages(settings.prompts_queue_url, settings.prompts_dlq_url, settings.prompts_bulk_queue_url)


def connection_store(settings: Settings) -> "DynamoConnectionStore":
    from promptsvc.adapters.connection_table import DynamoConnectionStore

    return DynamoConnectionStore(settings.connections_table, settings.subscriptions_table)


def connections_api(settings: Settings) -> "ConnectionsApi":
    from promptsvc.adapters.connections_api import ConnectionsApi

    return ConnectionsApi(settings.websocket_endpoint)


def _required_event_log(settings: Settings) -> "DynamoThreadEventLog":
    log = thread_event_log(settings)
    if log is None:
        raise ValueError("THREAD_EVENTS_TABLE is not set: thread streams replay from it")
    return log


def connection_keys(
    settings: Settings, keys: "KeyService | None" = None, close: Callable[[str], None] | None = None
) -> "ConnectionKeys":
    """Checks open connections' keys (`keys`, `close`: another key cache or way to close, for tests)."""
    from promptsvc.services.connection_keys import ConnectionKeys

    return ConnectionKeys(
        keys or key_service(settings), connection_store(settings), close or connections_api(settings).close
    )


def fanout(
    settings: Settings,
    poster: "FramePoster | None" = None,
    keys: "KeyService | None" = None,
    close: Callable[[str], None] | None = None,
) -> "Fanout":
    """The fan-out to WebSocket connections (`poster`: another way to send frames, e.g. a fake)."""
    from promptsvc.services.fanout import Fanout

    return Fanout(
        connection_store(settings),
        poster or connections_api(settings),
        _required_event_log(settings),
        claim_wait_seconds=settings.claim_wait_seconds,
        keys=connection_keys(settings, keys, close),
    )


def subscription_service(
    settings: Settings,
    poster: "FramePoster | None" = None,
    keys: "KeyService | None" = None,
    close: Callable[[str], None] | None = None,
) -> "SubscriptionService":
    from promptsvc.services.fanout import Fanout
    from promptsvc.services.subscriptions import SubscriptionService

    store = connection_store(settings)
    poster = poster or connections_api(settings)
    log = _required_event_log(settings)
    keys = keys or key_service(settings)
    return SubscriptionService(
        keys,
        store,
        poster,
        log,
        Fanout(store, poster, log, claim_wait_seconds=settings.claim_wait_seconds),
        log.live_cursor,  # a live-only subscription starts after the gapless run at the top
        connection_keys=connection_keys(settings, keys, close),
        ttl_seconds=settings.connection_ttl_seconds,
    )


def async_results(settings: Settings) -> "SageMakerAsyncEngine":
    """What reads the async endpoints' notifications and their output objects (functions/settle)."""
    from promptsvc.engines.sagemaker_async import SageMakerAsyncEngine

    engines = settings.engines
    return SageMakerAsyncEngine(
        engines.sagemaker_async_bucket,
        request_ttl_seconds=engines.sagemaker_async_request_ttl_seconds,
        default_endpoint=engines.sagemaker_async_endpoint,
    )
