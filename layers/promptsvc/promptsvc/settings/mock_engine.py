"""The mock engine's settings (engines/mock.py): its answers and the faults `promptsvc dev --chaos`
injects (a group of `promptsvc.settings.engines.EngineSettings`, read from the same flat variable
names)."""

from pydantic import Field

from promptsvc.settings.environment import FromEnvironment


class MockEngineSettings(FromEnvironment):
    """The mock engine: its answers' length and pace, and its faults (off by default)."""

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
