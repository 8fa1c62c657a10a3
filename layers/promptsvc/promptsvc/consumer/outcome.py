"""What a run of a prompt tells its host to do with the prompt's message (consumer/settle.py):
delete it, keep it until `retry_after` has passed, or move it to the dead-letter queue."""

from enum import StrEnum

import msgspec


class Outcome(StrEnum):
    COMPLETED = "completed"
    CANCELED = "canceled"  # canceled while running: stopped, partial answer kept
    SKIPPED = "skipped"  # nothing to do: gone, terminal, or changed under us (duplicate delivery)
    DISCARDED = "discarded"  # the prompt was removed or changed while the engine ran
    BUSY = "busy"  # running elsewhere under a live lease: look again when it runs out
    RETRY = "retry"  # errored: run again after the backoff
    ABANDONED = "abandoned"
    DEAD_LETTER = "dead-letter"  # abandoned because consumers kept dying on it
    # handed to an async endpoint (consumer/async_runs.py): running, its notification settles it;
    # the message is kept hidden until the run's lease ends, to bring it back if none comes
    SUBMITTED = "submitted"


# A run that ended the prompt: its thread's events must end with the closing status.
FINISHED = frozenset({Outcome.COMPLETED, Outcome.CANCELED, Outcome.ABANDONED})


class RunResult(msgspec.Struct, frozen=True):
    outcome: Outcome
    retry_after: int = 0  # seconds until the message should come back (BUSY, RETRY)
    error: str = ""

    @property
    def keep_message(self) -> bool:
        return self.outcome in (Outcome.BUSY, Outcome.RETRY, Outcome.SUBMITTED)
