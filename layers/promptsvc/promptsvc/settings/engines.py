"""The engines' settings: their endpoints and the mock engine's behaviour (a group of
`promptsvc.settings.Settings`, read from the same flat variable names)."""

from pydantic import Field

from promptsvc.settings.environment import FromEnvironment


class EngineSettings(FromEnvironment):
    """How prompts are answered: the engines' endpoints and the mock engine's behaviour."""

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
