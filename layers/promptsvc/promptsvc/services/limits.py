"""Limits per API key (domain/limits.py), checked before anything is stored or queued.

Every check that admits takes its unit in the same conditional write (`LimitCounters.take`), so
the limits hold across every function instance. Without a limits table (LIMITS_TABLE empty) every
check passes and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from promptsvc.domain.limits import (
    KeyLimits,
    day_window,
    minute_window,
    requests_item,
    requests_refused,
    tokens_item,
    tokens_refused,
)

if TYPE_CHECKING:
    from promptsvc.domain.keys import Principal
    from promptsvc.domain.ports import LimitCounters


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LimitService:
    def __init__(
        self,
        counters: LimitCounters | None,
        defaults: KeyLimits,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._counters = counters
        self._defaults = defaults
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._counters is not None

    def limits_of(self, principal: Principal) -> KeyLimits:
        """The key's limits: its own overrides over the deployment's defaults."""
        return principal.limits.over(self._defaults)

    def admit_request(self, principal: Principal) -> None:
        """Count an authenticated request in its key's minute; LimitExceeded (429) past the limit."""
        limit = self.limits_of(principal).requests_per_minute
        if self._counters is None or not limit:
            return
        window = minute_window(self._clock())
        if not self._counters.take(requests_item(principal.key_id, window), limit, window.expires_at):
            raise requests_refused(limit, window)

    def admit_prompt(self, principal: Principal) -> tuple[str, int]:
        """Before a prompt is stored: its key's tokens today must be below the day's limit. Returns
        the key id the prompt must carry ("" without limits) and its in-flight limit (0: none):
        the store takes the slot in the prompt's own write (`PromptStore.put_new`), so a slot is
        held exactly when its prompt is stored, and counted even when unlimited, so a limit set
        later finds the counter right."""
        if self._counters is None:
            return "", 0
        limits = self.limits_of(principal)
        if limits.tokens_per_day:
            window = day_window(self._clock())
            if not self._counters.below(tokens_item(principal.key_id, window.name), limits.tokens_per_day):
                raise tokens_refused(limits.tokens_per_day, window)
        return principal.key_id, limits.prompts_in_flight or 0
