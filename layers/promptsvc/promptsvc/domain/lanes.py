"""Fair queueing: two lanes per deployment, so one user's burst cannot hold back another user's
prompt by more than a bounded amount.

A user's prompt goes to the *fast lane* while that user has fewer than `per_user` prompts there
(queued or running); beyond that, to the *bulk lane*. Consumers read both and prefer the fast lane
(without starving the bulk one), so a quiet user's prompt waits behind at most `per_user` prompts
of each other user, however many a busy one has queued. The count is a counter item per user in
the limits table, taken in the add's own write and given back in the prompt's terminal write (the
store: adapters/prompt_table.py), so it holds across every function instance and returns to 0
exactly once per prompt. `per_user` 0: one lane, nothing counted (fairness off).
"""

from enum import StrEnum

from promptsvc.domain.status import Status, is_terminal


class Lane(StrEnum):
    """A prompt's lane (its `lane` attribute); NONE: lanes are off, the prompt counts nowhere."""

    NONE = ""
    FAST = "fast"
    BULK = "bulk"


def lane_item(user_id: str) -> str:
    """The limits table's item counting the user's fast-lane prompts (beside the keys'
    `<keyId>#...` counters of domain/limits.py; no key id is `lane`)."""
    return f"lane#{user_id}"


def admits(in_fast_lane: int, per_user: int) -> bool:
    """Whether a user with `in_fast_lane` prompts there may add one more to it: the store's
    conditional write (`attribute_not_exists(n) OR n < :perUser`) says the same, atomically."""
    return per_user > 0 and in_fast_lane < per_user


def lane_for(in_fast_lane: int, per_user: int) -> Lane:
    """The lane of a user's next prompt: NONE with lanes off, else FAST while it `admits`, else BULK."""
    if per_user <= 0:
        return Lane.NONE
    return Lane.FAST if admits(in_fast_lane, per_user) else Lane.BULK


def holds_fast_slot(lane: str, status: Status) -> bool:
    """Whether a prompt counts in its user's fast lane: a fast-lane prompt until its terminal
    transition (or its deletion) gives the slot back."""
    return lane == Lane.FAST and not is_terminal(status)
