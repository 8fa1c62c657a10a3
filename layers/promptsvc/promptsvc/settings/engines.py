"""The engines' settings: their endpoints (a group of `promptsvc.settings.Settings`, read from the
same flat variable names), and the mock engine's behaviour as a group of its own (settings/mock_engine.py)."""

from functools import cached_property
from typing import TYPE_CHECKING

from pydantic import Field

from promptsvc.settings.environment import FromEnvironment

if TYPE_CHECKING:
    from promptsvc.settings.mock_engine import MockEngineSettings


class EngineSettings(FromEnvironment):
    """How prompts are answered: the engines' endpoints."""

    openai_base_url: str = Field("http://localhost:8000/v1", description="OpenAI-compatible server")
    openai_api_key: str = Field("", description="its API key, if it needs one")
    sagemaker_streaming: bool = Field(
        True, description="invoke_endpoint_with_response_stream, else invoke_endpoint"
    )
    sagemaker_async_bucket: str = Field(
        "", description="S3 bucket of the sagemaker-async engine's requests (its endpoints' answers too)"
    )
    sagemaker_async_endpoint: str = Field(
        "", description="sagemaker-async: the endpoint of models whose catalog target names none"
    )
    sagemaker_async_request_ttl_seconds: int = Field(
        3600, ge=60, le=21600, description="sagemaker-async: how long a request may wait in the endpoint"
    )
    engine: str = Field(
        "", description="serve every model with this engine (e.g. 'mock'); empty: per catalog"
    )

    @cached_property
    def mock(self) -> "MockEngineSettings":
        """The mock engine's settings, made when the mock engine is: a deployed consumer, whose
        models are served by real engines, never builds them (benchmarks/cold_start.py)."""
        from promptsvc.settings.mock_engine import MockEngineSettings

        return MockEngineSettings()
