"""When and how long to wait before sending a request again.

429 (throttled) and 503 (the service's "AWS throttled me, try again", with `Retry-After`) say the
request was not carried out: every call retries them. Other 5xx answers (and a connection that
broke) may come after the request took effect, so only calls that are safe to repeat retry those:
reads, and adds, which carry a client-made prompt id (the API returns the stored prompt for a
re-added id with the same body, so a retried add cannot make two prompts).
"""

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum

import httpx


class Repeat(Enum):
    """How safe a call is to send again."""

    SAFE = "safe"  # reads, and adds with a client id: retry 429, 5xx and broken connections
    NOT_DONE_ONLY = "not-done-only"  # retry only answers saying nothing was done: 429, 503


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3  # at most this many requests after the first
    base_delay: float = 0.5  # seconds; doubled each retry, with jitter, when no Retry-After
    max_delay: float = 30.0  # no wait longer than this, whatever Retry-After says

    def retries(self, status_code: int, repeat: Repeat) -> bool:
        if status_code in (429, 503):
            return True
        return repeat is Repeat.SAFE and status_code >= 500

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds before retry number `retry` (0 for the first): Retry-After when the server gave
        one, else exponential backoff with jitter."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.max_delay, self.base_delay * 2**retry)
        return random.uniform(backoff / 2, backoff)


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
