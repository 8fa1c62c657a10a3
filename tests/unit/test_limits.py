"""The limits' pure rules (domain/limits.py) and the limit service over in-memory counters."""

from datetime import UTC, datetime

import pytest
from promptsvc.domain.errors import InvalidRequest
from promptsvc.domain.keys import Principal, Role
from promptsvc.domain.limits import (
    KeyLimits,
    LimitExceeded,
    day_window,
    minute_window,
    requests_item,
    tokens_item,
    tokens_spent,
)
from promptsvc.services.limits import LimitService


class Counters:
    """The limits table's counters in memory (LimitCounters)."""

    def __init__(self) -> None:
        self.n: dict[str, int] = {}
        self.expires: dict[str, int | None] = {}

    def take(self, item: str, limit: int, expires_at: int | None = None) -> bool:
        if self.n.get(item, 0) >= limit:
            return False
        self.add(item, 1, expires_at)
        return True

    def below(self, item: str, limit: int) -> bool:
        return self.n.get(item, 0) < limit

    def add(self, item: str, amount: int, expires_at: int | None = None) -> None:
        self.n[item] = self.n.get(item, 0) + amount
        self.expires[item] = expires_at


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_a_minute_window_names_its_utc_minute_and_the_seconds_to_its_end() -> None:
    window = minute_window(at("2026-12-01T03:35:20.250000+00:00"))
    assert window.name == "202612010335"
    assert window.retry_after == 40  # 39.75 s, rounded up
    assert window.expires_at == int(at("2026-12-01T03:36:00+00:00").timestamp()) + 120
    assert minute_window(at("2026-12-01T03:35:00+00:00")).retry_after == 60
    assert minute_window(at("2026-12-01T03:35:59.999999+00:00")).retry_after == 1
    # another offset is the same moment
    assert minute_window(at("2026-12-01T05:35:20+02:00")).name == "202612010335"


def test_a_day_window_is_the_utc_day_and_retry_after_runs_to_midnight() -> None:
    window = day_window(at("2026-12-01T23:00:00+00:00"))
    assert window.name == "2026-12-01"
    assert window.retry_after == 3600
    assert day_window(at("2026-12-02T00:30:00+01:00")).name == "2026-12-01"  # 23:30 UTC
    assert day_window(at("2026-12-31T23:59:59.5+00:00")).retry_after == 1


def test_a_keys_overrides_win_over_the_defaults_and_zero_is_unlimited() -> None:
    defaults = KeyLimits(60, 10, 1000)
    assert KeyLimits().over(defaults) == defaults
    assert KeyLimits(requests_per_minute=0, tokens_per_day=5).over(defaults) == KeyLimits(0, 10, 5)
    assert KeyLimits.from_dict({"requestsPerMinute": 3, "tokensPerDay": None}) == KeyLimits(3, None, None)
    assert KeyLimits.from_dict(KeyLimits(1, 2, 3).as_dict()) == KeyLimits(1, 2, 3)
    with pytest.raises(InvalidRequest, match=r"limits\.promptsInFlight"):
        KeyLimits.from_dict({"promptsInFlight": -1})


def test_only_a_completion_not_from_the_cache_spends_tokens() -> None:
    assert tokens_spent("completed", {"promptTokens": 7, "completionTokens": 5, "finishReason": "stop"}) == 12
    assert (
        tokens_spent("completed", {"promptTokens": 7, "completionTokens": 5, "finishReason": "cached"}) == 0
    )
    assert tokens_spent("abandoned", {"error": "x"}) == 0
    assert tokens_spent("canceled", {"answer": "partial"}) == 0


def service(counters: Counters, defaults: KeyLimits, now: str) -> LimitService:
    return LimitService(counters, defaults, clock=lambda: at(now))


def key(limits: KeyLimits = KeyLimits()) -> Principal:
    return Principal("alice", Role.USER, "k1", limits=limits)


def test_requests_past_the_minutes_limit_are_refused_with_the_seconds_to_the_next_minute() -> None:
    counters = Counters()
    limits = service(counters, KeyLimits(3, 0, 0), "2026-12-01T03:35:45+00:00")
    for _ in range(3):
        limits.admit_request(key())
    with pytest.raises(LimitExceeded, match="3 requests per minute") as refused:
        limits.admit_request(key())
    assert refused.value.retry_after == 15
    assert counters.n[requests_item("k1", minute_window(at("2026-12-01T03:35:45+00:00")))] == 3
    # the next minute is a new window
    service(counters, KeyLimits(3, 0, 0), "2026-12-01T03:36:00+00:00").admit_request(key())


def test_a_key_of_its_own_limit_and_unlimited_keys_write_nothing_for_requests() -> None:
    counters = Counters()
    limits = service(counters, KeyLimits(0, 0, 0), "2026-12-01T03:35:45+00:00")
    for _ in range(50):
        limits.admit_request(key())
    assert counters.n == {}
    with pytest.raises(LimitExceeded):
        for _ in range(3):
            limits.admit_request(key(KeyLimits(requests_per_minute=2)))


def test_a_prompt_carries_its_key_and_in_flight_limit_and_the_service_writes_nothing() -> None:
    """The slot is the store's to take, in the prompt's own write (tests/integration/test_key_limits.py)."""
    counters = Counters()
    limits = service(counters, KeyLimits(0, 2, 0), "2026-12-01T03:35:45+00:00")
    assert limits.admit_prompt(key()) == ("k1", 2)
    assert limits.admit_prompt(key(KeyLimits(prompts_in_flight=5))) == ("k1", 5)
    assert service(counters, KeyLimits(0, 0, 0), "2026-12-01T03:35:45+00:00").admit_prompt(key()) == ("k1", 0)
    assert counters.n == {}


def test_a_prompt_is_refused_once_the_days_tokens_reached_the_limit_until_midnight() -> None:
    counters = Counters()
    limits = service(counters, KeyLimits(0, 0, 100), "2026-12-01T23:00:00+00:00")
    counters.add(tokens_item("k1", "2026-12-01"), 99)
    assert limits.admit_prompt(key()) == ("k1", 0)  # below: admitted (its own tokens may pass the limit)
    counters.add(tokens_item("k1", "2026-12-01"), 30)
    with pytest.raises(LimitExceeded, match="100 tokens per day") as refused:
        limits.admit_prompt(key())
    assert refused.value.retry_after == 3600
    service(counters, KeyLimits(0, 0, 100), "2026-12-02T00:00:00+00:00").admit_prompt(key())


def test_without_a_limits_table_everything_passes_and_nothing_is_held() -> None:
    limits = LimitService(None, KeyLimits(1, 1, 1), clock=lambda: datetime.now(UTC))
    for _ in range(5):
        limits.admit_request(key())
        assert limits.admit_prompt(key()) == ("", 0)
