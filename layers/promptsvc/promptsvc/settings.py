"""Runtime settings, read from the environment (template.yaml sets them on every function)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    prompts_table: str = Field("PromptsTable", description="DynamoDB table of prompts")
    keys_table: str = Field("ApiKeysTable", description="DynamoDB table of hashed API keys")
    prompts_queue_url: str = Field("", description="SQS queue the consumer works")
    cursor_secret_arn: str = Field("", description="Secrets Manager secret that signs list cursors")

    sync_wait_seconds: float = Field(25.0, gt=0, le=29, description="bound on sync add (API GW: 30 s)")
    key_cache_seconds: float = Field(60.0, ge=0, description="how long a warm function trusts a key")
    prompt_retention_days: int = Field(30, ge=1, description="TTL of terminal prompts")

    model_catalog_file: str = Field("", description="a model catalog JSON file replacing the shipped one")
    engine: str = Field(
        "", description="serve every model with this engine (e.g. 'mock'); empty: per catalog"
    )
    mock_chunk_delay_seconds: float = Field(0.0, ge=0, description="mock engine delay per chunk")
    mock_chunks: int = Field(4, ge=1, description="how many chunks the mock engine streams")
    mock_max_answer_chars: int = Field(8192, ge=1, description="mock answers are cut to this length")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
