"""Runtime settings, read from the environment (template.yaml sets them on every function, and
infra/ecs-gpu/stack.yaml on the worker). Each group is read from the same flat variable names.

A resource a function needs has no default: the function checks its own needs at init
(`for_function`), so a missing variable fails the cold start with its name, instead of a call to a
table that does not exist."""

from functools import lru_cache
from typing import Self

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from promptsvc.domain.answers import DEFAULT_MAX_ANSWER_BYTES

_FROM_ENVIRONMENT = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")


class EngineSettings(BaseSettings):
    """How prompts are answered: the engines' endpoints and the mock engine's behaviour."""

    model_config = _FROM_ENVIRONMENT

    openai_base_url: str = Field("http://localhost:8000/v1", description="OpenAI-compatible server")
    openai_api_key: str = Field("", description="its API key, if it needs one")
    sagemaker_streaming: bool = Field(
        True, description="invoke_endpoint_with_response_stream, else invoke_endpoint"
    )
    engine: str = Field(
        "", description="serve every model with this engine (e.g. 'mock'); empty: per catalog"
    )
    mock_chunk_delay_seconds: float = Field(0.0, ge=0, description="mock engine delay per chunk")
    mock_chunks: int = Field(4, ge=1, description="how many chunks the mock engine streams")
    mock_max_answer_chars: int = Field(8192, ge=1, description="mock answers are cut to this length")
    # mock engine faults (engines/mock.py; `promptsvc dev --chaos`): off by default
    mock_fault_seed: int = Field(0, description="seed of the mock engine's faults (same seed, same faults)")
    mock_error_rate: float = Field(
        0.0, ge=0, le=1, description="share of mock attempts failing with a status"
    )
    mock_error_codes: str = Field(
        "500,502,503,429", description="statuses the mock fails with, comma-separated"
    )
    mock_stall_rate: float = Field(0.0, ge=0, le=1, description="share of mock attempts stalling")
    mock_cut_rate: float = Field(0.0, ge=0, le=1, description="share of mock streams cut midway")
    mock_kill_rate: float = Field(0.0, ge=0, le=1, description="share of mock attempts killing the consumer")
    mock_slow_first_token_rate: float = Field(0.0, ge=0, le=1, description="share with a slow first token")
    mock_slow_first_token_seconds: float = Field(
        0.0, ge=0, description="its delay (0: half the stall timeout)"
    )
    mock_attempt_log: str = Field(
        "", description="a file the mock engine appends each attempt to (JSON lines)"
    )


class WorkerSettings(BaseSettings):
    """The ECS worker (consumer/worker.py): its concurrency, drain and message visibility."""

    model_config = _FROM_ENVIRONMENT

    worker_concurrency: int = Field(32, ge=1, description="prompts one ECS worker runs at once")
    worker_drain_seconds: float = Field(100.0, ge=0, description="SIGTERM: time to finish in-flight work")
    worker_visibility_seconds: int = Field(60, ge=2, description="visibility the worker keeps extending")
    worker_lease_margin_seconds: float = Field(30.0, ge=0, description="lease beyond the visibility")


class MissingSettings(RuntimeError):
    """A function started without a setting it needs."""


# What each function (and the ECS worker) cannot run without; the rest is optional (empty: none)
# or has a default. tests/deploy/test_template_code.py checks the template sets each.
NEEDS: dict[str, tuple[str, ...]] = {
    "api": ("prompts_table", "keys_table", "registry_table", "prompts_queue_url", "cursor_secret_arn"),
    "consumer": ("prompts_table", "prompts_queue_url", "prompts_dlq_url"),
    "deadletter": ("prompts_table", "prompts_queue_url", "prompts_dlq_url"),
    "ws": ("keys_table", "connections_table", "subscriptions_table", "websocket_endpoint"),
    "stream": ("keys_table", "connections_table", "subscriptions_table", "websocket_endpoint"),
    "worker": ("prompts_table", "prompts_queue_url", "prompts_dlq_url"),
}


class Settings(BaseSettings):
    model_config = _FROM_ENVIRONMENT

    prompts_table: str = Field("", description="DynamoDB table of prompts")
    keys_table: str = Field("", description="DynamoDB table of hashed API keys")
    registry_table: str = Field("", description="DynamoDB table of stored prompts (/v2)")
    response_cache_table: str = Field("", description="DynamoDB table of cached answers (empty: none)")
    thread_events_table: str = Field("", description="DynamoDB table of thread events (empty: none kept)")
    event_ttl_seconds: int = Field(86_400, ge=60, description="how long thread events are kept")
    claim_wait_seconds: float = Field(2.0, ge=0, description="fan-out: wait for another poster's claim")
    delta_interval_seconds: float = Field(0.25, gt=0, description="at most one delta event per this")
    prompts_queue_url: str = Field("", description="SQS queue the consumer works")
    prompts_dlq_url: str = Field("", description="the queue's dead-letter queue")
    stranded_after_seconds: float = Field(
        300.0, gt=0, description="sweeper: re-queue a prompt scheduled and untouched this long"
    )
    cursor_secret_arn: str = Field("", description="Secrets Manager secret that signs list cursors")
    connections_table: str = Field("", description="DynamoDB table of open WebSocket connections")
    subscriptions_table: str = Field("", description="DynamoDB table of thread subscriptions")
    websocket_endpoint: str = Field("", description="the WebSocket API's @connections callback URL")
    connection_ttl_seconds: int = Field(7200, ge=60, description="connections expire (API GW: 2 h)")

    sync_wait_seconds: float = Field(25.0, gt=0, le=29, description="bound on sync add (API GW: 30 s)")
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

    engines: EngineSettings = Field(default_factory=EngineSettings, description="the engines' settings")
    worker: WorkerSettings = Field(default_factory=WorkerSettings, description="the ECS worker's settings")

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
