"""Runtime settings, read from the environment (template.yaml sets them on every function, and
infra/ecs-gpu/stack.yaml on the worker). Each group is read from the same flat variable names.

A resource a function needs has no default: the function checks its own needs at init
(`for_function`), so a missing variable fails the cold start with its name, instead of a call to a
table that does not exist."""

from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Self

from pydantic import Field

from promptsvc.domain.answers import DEFAULT_MAX_ANSWER_BYTES
from promptsvc.settings.environment import FromEnvironment

if TYPE_CHECKING:
    from promptsvc.settings.engines import EngineSettings
    from promptsvc.settings.worker import WorkerSettings


class MissingSettings(RuntimeError):
    """A function started without a setting it needs."""


# What each function (and the ECS worker) cannot run without; the rest is optional (empty: none)
# or has a default. tests/deploy/test_template_code.py checks the template sets each.
NEEDS: dict[str, tuple[str, ...]] = {
    "api": ("prompts_table", "keys_table", "registry_table", "prompts_queue_url", "cursor_secret_arn"),
    "console": ("keys_table",),
    "registry": ("keys_table", "registry_table"),
    "consumer": ("prompts_table", "prompts_queue_url", "prompts_dlq_url"),
    "deadletter": ("prompts_table", "prompts_queue_url", "prompts_dlq_url"),
    "ws": ("keys_table", "connections_table", "subscriptions_table", "websocket_endpoint"),
    "stream": ("keys_table", "connections_table", "subscriptions_table", "websocket_endpoint"),
    "worker": ("prompts_table", "prompts_queue_url", "prompts_dlq_url"),
    "settle": ("prompts_table", "prompts_queue_url"),
}


class Settings(FromEnvironment):
    prompts_table: str = Field("", description="DynamoDB table of prompts")
    keys_table: str = Field("", description="DynamoDB table of hashed API keys")
    registry_table: str = Field("", description="DynamoDB table of stored prompts (/v2)")
    response_cache_table: str = Field("", description="DynamoDB table of cached answers (empty: none)")
    usage_table: str = Field(
        "", description="DynamoDB table of usage counters per user, day and model (empty: none kept)"
    )
    limits_table: str = Field(
        "", description="DynamoDB table of the API keys' limit counters (empty: no limits)"
    )
    key_requests_per_minute: int = Field(
        0, ge=0, description="default requests per minute of an API key (0: unlimited)"
    )
    key_prompts_in_flight: int = Field(
        0, ge=0, description="default prompts in flight (not yet finished) of an API key (0: unlimited)"
    )
    key_tokens_per_day: int = Field(
        0, ge=0, description="default tokens (prompt + completion) a day (UTC) of an API key (0: unlimited)"
    )
    thread_events_table: str = Field("", description="DynamoDB table of thread events (empty: none kept)")
    event_ttl_seconds: int = Field(86_400, ge=60, description="how long thread events are kept")
    claim_wait_seconds: float = Field(2.0, ge=0, description="fan-out: wait for another poster's claim")
    delta_interval_seconds: float = Field(0.25, gt=0, description="at most one delta event per this")
    prompts_queue_url: str = Field("", description="SQS queue the consumer works")
    prompts_dlq_url: str = Field("", description="the queue's dead-letter queue")
    prompts_bulk_queue_url: str = Field(
        "", description="SQS queue of the bulk lane (fair queueing; empty: one lane)"
    )
    fast_lane_prompts_per_user: int = Field(
        0,
        ge=0,
        description="a user's prompts in the fast lane (queued or running) before more go to the bulk lane "
        "(0: one lane, fairness off)",
    )
    stranded_after_seconds: float = Field(
        300.0, gt=0, description="sweeper: re-queue a prompt scheduled and untouched this long"
    )
    cursor_secret_arn: str = Field("", description="Secrets Manager secret that signs list cursors")
    connections_table: str = Field("", description="DynamoDB table of open WebSocket connections")
    subscriptions_table: str = Field("", description="DynamoDB table of thread subscriptions")
    websocket_endpoint: str = Field("", description="the WebSocket API's @connections callback URL")
    websocket_url: str = Field(
        "", description="where clients connect to the WebSocket API (ws:// or wss://): for /playground"
    )
    connection_ttl_seconds: int = Field(7200, ge=60, description="connections expire (API GW: 2 h)")

    sync_wait_seconds: float = Field(25.0, gt=0, le=29, description="bound on sync add (API GW: 30 s)")
    subscribe_wait_seconds: float = Field(
        25.0, gt=0, le=29, description="bound on a responses subscription (SSE) seeing no done (API GW: 30 s)"
    )
    body_read_seconds: float = Field(10.0, gt=0, description="a request body not received by then: 408")
    key_cache_seconds: float = Field(60.0, ge=0, description="how long a warm function trusts a key")
    prompt_retention_days: int = Field(30, ge=1, description="TTL of terminal prompts")
    answers_bucket: str = Field(
        "", description="S3 bucket of answers too large for a prompt's item (empty: none, they fail)"
    )
    max_answer_bytes: int = Field(
        DEFAULT_MAX_ANSWER_BYTES, ge=1, description="a longer answer abandons its prompt (UTF-8 bytes)"
    )

    model_catalog_file: str = Field("", description="a model catalog JSON file replacing the shipped one")
    model_catalog_ssm_parameter: str = Field("", description="an SSM parameter holding the catalog JSON")

    # the consumer (Lambda and ECS worker)
    lease_seconds: float = Field(90.0, gt=0, description="how long a claim holds a prompt before renewal")
    cancel_poll_seconds: float = Field(0.5, gt=0, description="how often a running prompt is re-read")
    crash_limit: int = Field(3, ge=1, description="consumer crashes on one prompt before it is abandoned")
    retry_base_seconds: float = Field(2.0, gt=0, description="first retry backoff")
    retry_cap_seconds: float = Field(900.0, gt=0, description="longest retry backoff")

    # The groups only the consumer and the worker read: made when first read, so the other
    # functions' cold starts do not build them (benchmarks/cold_start.py).
    @cached_property
    def engines(self) -> "EngineSettings":
        """The engines' settings (settings/engines.py), from the same environment."""
        from promptsvc.settings.engines import EngineSettings

        return EngineSettings()

    @cached_property
    def worker(self) -> "WorkerSettings":
        """The ECS worker's settings (settings/worker.py), from the same environment."""
        from promptsvc.settings.worker import WorkerSettings

        return WorkerSettings()

    def for_function(self, function: str) -> Self:
        """These settings, once every one `function` needs (NEEDS) is set; else MissingSettings
        naming the variables."""
        missing = [name.upper() for name in NEEDS[function] if not getattr(self, name)]
        if missing:
            raise MissingSettings(f"the {function} function needs {', '.join(missing)}: not set")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
