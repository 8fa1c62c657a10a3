"""The usage rules (domain/usage.py): estimation, a prompt's usage, what it adds to the counters,
the days a read covers, and the sums by day or model."""

from datetime import date

import pytest
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.usage import (
    CACHED,
    FAILED_ATTEMPT,
    MAX_USAGE_DAYS,
    UsageCount,
    UsageRow,
    aggregate,
    completed_count,
    day_of,
    day_range,
    estimate_tokens,
    prompt_usage,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("é" * 2, 1), ("€", 1), ("€€", 2), ("😀" * 3, 3)],
)
def test_an_estimate_is_one_token_per_four_utf8_bytes_rounded_up(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_reported_counts_are_kept_and_not_estimated() -> None:
    usage = prompt_usage("length", 7, 3, "the prompt sent", "the answer")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.finish_reason) == (7, 3, "length")
    assert not usage.estimated


def test_a_count_not_reported_is_estimated_and_says_so() -> None:
    neither = prompt_usage("stop", None, None, "x" * 10, "y" * 9)
    one = prompt_usage("stop", 5, None, "x" * 10, "y" * 9)
    assert (neither.prompt_tokens, neither.completion_tokens, neither.estimated) == (3, 3, True)
    assert (one.prompt_tokens, one.completion_tokens, one.estimated) == (5, 3, True)


def test_a_zero_reported_is_a_count_not_a_missing_one() -> None:
    assert prompt_usage("stop", 0, 0, "text", "text").estimated is False


def test_a_completed_prompt_counts_its_tokens_and_a_cache_hit_counts_none() -> None:
    assert completed_count(prompt_usage("stop", 7, 3, "", "")) == UsageCount(1, 7, 3, 0, 0)
    assert completed_count(prompt_usage(CACHED, 7, 3, "", "")) == UsageCount(prompts=1, cacheHits=1)
    assert UsageCount(failedAttempts=1) == FAILED_ATTEMPT


def test_the_day_of_a_stamp_is_its_utc_date() -> None:
    assert day_of("2026-12-01T23:59:59.999999Z") == "2026-12-01"


def test_a_read_defaults_to_the_thirty_days_up_to_today() -> None:
    span = day_range(None, None, today=date(2026, 3, 1))
    assert (span.first, span.last) == (date(2026, 1, 31), date(2026, 3, 1))
    assert len(span.days()) == 30 and span.days()[-1] == "2026-03-01"
    assert day_range(None, date(1, 1, 2)).first == date(1, 1, 1)  # never before the first day


def test_a_read_spans_at_most_the_limit_and_never_backwards() -> None:
    assert len(day_range(date(2026, 1, 1), date(2026, 4, 2)).days()) == MAX_USAGE_DAYS
    with pytest.raises(InvalidRequest, match=f"at most {MAX_USAGE_DAYS} days"):
        day_range(date(2026, 1, 1), date(2026, 4, 3))
    with pytest.raises(InvalidRequest, match="from must not be after to"):
        day_range(date(2026, 1, 2), date(2026, 1, 1))


def test_rows_sum_by_day_or_by_model_and_in_total() -> None:
    rows = [
        UsageRow("alice", "2026-01-01", "m1", UsageCount(1, 10, 5, 0, 0)),
        UsageRow("bob", "2026-01-01", "m2", UsageCount(2, 20, 6, 1, 1)),
        UsageRow("alice", "2026-01-02", "m1", UsageCount(1, 1, 1, 2, 0)),
    ]
    by_day, total = aggregate(rows, "day")
    by_model, same_total = aggregate(rows, "model")
    assert by_day == [("2026-01-01", UsageCount(3, 30, 11, 1, 1)), ("2026-01-02", UsageCount(1, 1, 1, 2, 0))]
    assert by_model == [("m1", UsageCount(2, 11, 6, 2, 0)), ("m2", UsageCount(2, 20, 6, 1, 1))]
    assert total == same_total == UsageCount(4, 31, 12, 3, 1)
    assert aggregate([], "day") == ([], UsageCount())
