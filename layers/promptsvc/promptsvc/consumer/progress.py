"""What a run has generated so far (`Progress`), and the failure no run of a prompt could avoid
(`FinalError`): shared by the runs an engine streams (generation.py) and those an async endpoint
answers (async_runs.py), which the settle function ends without importing the generation's engines
(benchmarks/cold_start.py)."""

from __future__ import annotations

import msgspec

from promptsvc.consumer.run_events import NoEvents, RunEvents
from promptsvc.domain.prompt import Prompt
from promptsvc.domain.usage import UsageCount
from promptsvc.engines.base import EngineError, Finish


class Progress(msgspec.Struct):
    """What a run has generated so far, and when."""

    events: RunEvents | NoEvents = msgspec.field(default_factory=NoEvents)
    parts: list[str] = msgspec.field(default_factory=list)
    size: int = 0  # UTF-8 bytes of the answer so far
    started: float = 0.0
    first_token: float | None = None
    finish: Finish | None = None
    # What the run's ending adds to the usage counters, once the run's events are closed
    # (Endings.count): (the prompt as ended, the model, the count).
    counted: tuple[Prompt, str, UsageCount] | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class FinalError(EngineError):
    """A failure no run of this prompt could avoid (its answer is over the maximum, or fits
    nowhere): the prompt is abandoned, whatever its retries or routing plan say."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, status_code=413)
