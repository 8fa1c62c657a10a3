"""Time as the service stores and compares it: fixed-width RFC 3339 UTC with microseconds and `Z`
(e.g. 2026-11-30T10:00:00.123456Z), so that string order is time order in every index."""

from datetime import UTC, datetime

_RFC3339 = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_rfc3339(clock: datetime | None = None) -> str:
    """`clock` (default: now) in the stored form."""
    moment = clock or datetime.now(UTC)
    return moment.astimezone(UTC).strftime(_RFC3339)


def seconds_until(moment_ms: int, now_ms: int) -> int:
    """Whole seconds from `now_ms` to `moment_ms` (epoch milliseconds), rounded up, at least 1: how
    long a message waits (SQS counts visibility and delays in whole seconds)."""
    return max(1, -(-(moment_ms - now_ms) // 1000))


def parse_rfc3339(value: str) -> datetime:
    """The moment a `now_rfc3339` string names; ValueError for any other text."""
    return datetime.strptime(value, _RFC3339).replace(tzinfo=UTC)


def epoch_seconds(value: str) -> float:
    """The epoch seconds of a stored moment (any ISO 8601 text with its offset)."""
    return datetime.fromisoformat(value).timestamp()
