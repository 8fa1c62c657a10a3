"""Token usage: a prompt's own (what its answering run cost), and the counters kept per user, UTC
day and model (docs/api.md, "Usage").

An engine reports the tokens the server counted (OpenAI's `usage`, streamed in the last chunk;
TGI's generated tokens). A count it did not report is **estimated** with a tokenizer-free rule,
one token per 4 UTF-8 bytes rounded up (`estimate_tokens`), and the prompt says so
(`usageEstimated`). A cached answer is a cache hit: the prompt shows the usage the answer had when
it was made, and the counters count a prompt and a hit but no tokens (none were used again). A
failed attempt counts as a failed attempt; its tokens are not known (a failed stream reports none)
and are not counted.
"""

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import msgspec

from promptsvc.domain.errors import InvalidRequest

BYTES_PER_TOKEN = 4
MAX_USAGE_DAYS = 92  # days a usage read may span: a quarter, at most 92 Queries for an admin's all-users read
CACHED = "cached"  # the finish reason of an answer from the response cache

GroupBy = Literal["day", "model"]


def estimate_tokens(text: str) -> int:
    """Tokens of `text` without a tokenizer: ceil(UTF-8 bytes / 4), about what BPE tokenizers give
    English text, and never 0 for a non-empty text."""
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN)


class PromptUsage(msgspec.Struct, frozen=True):
    """What the run that answered a prompt used (the prompt's `promptTokens`, ... fields)."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    estimated: bool  # a count the engine did not report was estimated

    @property
    def cached(self) -> bool:
        return self.finish_reason == CACHED

    def changes(self) -> dict[str, int | str | bool]:
        """The prompt item's fields."""
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "finishReason": self.finish_reason,
            "usageEstimated": self.estimated,
        }


def prompt_usage(
    reason: str, prompt_tokens: int | None, completion_tokens: int | None, sent: str, answer: str
) -> PromptUsage:
    """The usage of a finished run: the engine's counts, each one it did not report (None)
    estimated from the text sent (`sent`) or the answer."""
    estimated = prompt_tokens is None or completion_tokens is None
    return PromptUsage(
        prompt_tokens if prompt_tokens is not None else estimate_tokens(sent),
        completion_tokens if completion_tokens is not None else estimate_tokens(answer),
        reason,
        estimated,
    )


class UsageCount(msgspec.Struct, frozen=True):
    """The counters of one (user, day, model), or a sum of them. Names are the wire names."""

    prompts: int = 0  # prompts completed (a cache hit included)
    promptTokens: int = 0
    completionTokens: int = 0
    failedAttempts: int = 0
    cacheHits: int = 0

    def __add__(self, other: "UsageCount") -> "UsageCount":
        return UsageCount(*(getattr(self, name) + getattr(other, name) for name in COUNTERS))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}


COUNTERS: tuple[str, ...] = UsageCount.__struct_fields__
FAILED_ATTEMPT = UsageCount(failedAttempts=1)


def completed_count(usage: PromptUsage) -> UsageCount:
    """What a completed prompt adds to its counters: a cache hit counts no tokens."""
    if usage.cached:
        return UsageCount(prompts=1, cacheHits=1)
    return UsageCount(prompts=1, promptTokens=usage.prompt_tokens, completionTokens=usage.completion_tokens)


def completion_count(changes: Mapping[str, Any]) -> UsageCount:
    """What a completion adds to its counters, from the prompt fields its write sets
    (`PromptUsage.changes`)."""
    return completed_count(
        PromptUsage(
            int(changes.get("promptTokens", 0)),
            int(changes.get("completionTokens", 0)),
            str(changes.get("finishReason", "")),
            bool(changes.get("usageEstimated", False)),
        )
    )


class UsageRow(msgspec.Struct, frozen=True):
    """The stored counters of one user, day and model."""

    user_id: str
    day: str  # YYYY-MM-DD, UTC
    model_id: str
    count: UsageCount


def day_of(stamp: str) -> str:
    """The UTC day (YYYY-MM-DD) of an RFC 3339 UTC stamp (domain/clock.py's: it starts with it)."""
    return stamp[:10]


class DayRange(msgspec.Struct, frozen=True):
    first: date
    last: date

    def days(self) -> list[str]:
        return [(self.first + timedelta(n)).isoformat() for n in range((self.last - self.first).days + 1)]


def day_range(first: date | None, last: date | None, today: date | None = None) -> DayRange:
    """The days a usage read covers: `last` defaults to today (UTC), `first` to 29 days before
    `last`. InvalidRequest when `first` is after `last` or they span more than MAX_USAGE_DAYS."""
    last = last or today or datetime.now(UTC).date()
    first = first or date.fromordinal(max(1, last.toordinal() - 29))  # 29 days before, or year 1
    if first > last:
        raise InvalidRequest("from must not be after to")
    if (last - first).days + 1 > MAX_USAGE_DAYS:
        raise InvalidRequest(f"from and to may span at most {MAX_USAGE_DAYS} days")
    return DayRange(first, last)


def aggregate(rows: Iterable[UsageRow], group_by: GroupBy) -> tuple[list[tuple[str, UsageCount]], UsageCount]:
    """The rows summed by day or by model (in key order), and the total."""
    groups: dict[str, UsageCount] = {}
    total = UsageCount()
    for row in rows:
        key = row.day if group_by == "day" else row.model_id
        groups[key] = groups.get(key, UsageCount()) + row.count
        total = total + row.count
    return sorted(groups.items()), total
