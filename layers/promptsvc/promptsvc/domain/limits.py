"""Limits per API key: requests per minute, prompts in flight, tokens per UTC day.

Each is a counter in the limits table, checked and taken in one conditional UpdateItem (DynamoDB
applies it atomically: two function instances cannot both take the last unit). This module holds
the pure rules: a key's effective limits, the counters' windows and item keys, and `Retry-After`.
A limit of 0 is no limit.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from promptsvc.domain.errors import DomainError, InvalidRequest

MAX_LIMIT = 1_000_000_000  # any larger override is surely a mistake
IN_FLIGHT_RETRY_SECONDS = 5  # Retry-After of a full in-flight limit: no window ends it, a prompt does
MINUTE_TTL_SECONDS = 120  # a minute's counter is kept this long past its minute
DAY_TTL_SECONDS = 2 * 86_400  # a day's counter this long past its day


class LimitExceeded(DomainError):
    """A key passed one of its limits (HTTP 429); `retry_after` is the seconds until it may pass."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KeyLimits(msgspec.Struct, frozen=True):
    """Limits of a key; None (on a key's record): the deployment's default; 0: unlimited."""

    requests_per_minute: int | None = None
    prompts_in_flight: int | None = None
    tokens_per_day: int | None = None

    def over(self, defaults: "KeyLimits") -> "KeyLimits":
        """These overrides over `defaults` (every field of which is set)."""
        return KeyLimits(
            _pick(self.requests_per_minute, defaults.requests_per_minute),
            _pick(self.prompts_in_flight, defaults.prompts_in_flight),
            _pick(self.tokens_per_day, defaults.tokens_per_day),
        )

    def is_default(self) -> bool:
        return self == KeyLimits()

    def as_dict(self) -> dict[str, int | None]:
        """The wire form (a key listing's `limits`)."""
        return {
            "requestsPerMinute": self.requests_per_minute,
            "promptsInFlight": self.prompts_in_flight,
            "tokensPerDay": self.tokens_per_day,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "KeyLimits":
        """From the wire form, each value checked (0..MAX_LIMIT, or None)."""
        if not data:
            return cls()
        values = {}
        for wire, name in (
            ("requestsPerMinute", "requests_per_minute"),
            ("promptsInFlight", "prompts_in_flight"),
            ("tokensPerDay", "tokens_per_day"),
        ):
            value = data.get(wire)
            if value is not None and (isinstance(value, bool) or not 0 <= int(value) <= MAX_LIMIT):
                raise InvalidRequest(f"limits.{wire}: between 0 (unlimited) and {MAX_LIMIT}")
            values[name] = None if value is None else int(value)
        return cls(**values)


def _pick(override: int | None, default: int | None) -> int:
    return int(override if override is not None else (default or 0))


class Window(msgspec.Struct, frozen=True):
    """A counter's window: its name in the item key, when the item may expire (epoch seconds, the
    table's TTL) and the seconds from now until the next window starts (`Retry-After`)."""

    name: str
    expires_at: int
    retry_after: int


def minute_window(now: datetime) -> Window:
    """The UTC minute of `now`: `202612010335`; Retry-After is the whole seconds to its end (1..60)."""
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    end = start + timedelta(minutes=1)
    return Window(
        start.strftime("%Y%m%d%H%M"), int(end.timestamp()) + MINUTE_TTL_SECONDS, _seconds_to(now, end)
    )


def day_window(now: datetime) -> Window:
    """The UTC day of `now`: `2026-12-01`; Retry-After is the whole seconds to the next midnight."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    return Window(start.strftime("%Y-%m-%d"), int(end.timestamp()) + DAY_TTL_SECONDS, _seconds_to(now, end))


def _seconds_to(now: datetime, end: datetime) -> int:
    """Whole seconds from `now` to `end`, rounded up, at least 1."""
    remaining = (end - now).total_seconds()
    return max(1, int(-(-remaining // 1)))


# The limits table's items (`key`: the partition key), one per key and counter (and window).
def requests_item(key_id: str, window: Window) -> str:
    return f"{key_id}#m#{window.name}"


def tokens_item(key_id: str, day: str) -> str:
    return f"{key_id}#d#{day}"


def in_flight_item(key_id: str) -> str:
    return f"{key_id}#inflight"


def requests_refused(limit: int, window: Window) -> LimitExceeded:
    return LimitExceeded(
        f"rate limit: this API key may make {limit} requests per minute; try again in {window.retry_after} s",
        retry_after=window.retry_after,
    )


def in_flight_refused(limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"in-flight limit: this API key may have {limit} prompts in flight (not yet finished); "
        "wait for one to finish",
        retry_after=IN_FLIGHT_RETRY_SECONDS,
    )


def tokens_refused(limit: int, window: Window) -> LimitExceeded:
    return LimitExceeded(
        f"token limit: this API key may use {limit} tokens per day (UTC) and has used them; try again "
        f"in {window.retry_after} s",
        retry_after=window.retry_after,
    )


def tokens_spent(ending: str, changes: dict[str, Any]) -> int:
    """What a prompt's terminal transition adds to its key's tokens of the day: a completion's
    prompt and completion tokens; a cache hit (`finishReason: cached`) used none again; any other
    ending stores no usage (a failed or canceled run's tokens are not known)."""
    if ending != "completed" or changes.get("finishReason") == "cached":
        return 0
    return int(changes.get("promptTokens", 0)) + int(changes.get("completionTokens", 0))


def day_of_stamp(stamp: str) -> Window:
    """The day window of an RFC 3339 stamp (domain/clock.py's form)."""
    return day_window(datetime.fromisoformat(stamp))
