"""Reading the usage counters (`GET /prompt-svc/usage`): a user reads their own; an admin one
user's (`userId`) or every user's (no `userId`: one Query a day of the `byDay` index)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import msgspec

from promptsvc.domain.errors import Forbidden, NotFound
from promptsvc.domain.usage import GroupBy, UsageCount, UsageRow, aggregate, day_range

if TYPE_CHECKING:
    from promptsvc.domain.keys import Principal
    from promptsvc.domain.ports import UsageReader


class UsageReport(msgspec.Struct, frozen=True):
    first: str
    last: str
    group_by: GroupBy
    user_id: str | None  # None: every user's
    groups: list[tuple[str, UsageCount]]
    total: UsageCount


class UsageService:
    def __init__(self, reader: UsageReader | None) -> None:
        self._reader = reader

    def report(
        self,
        caller: Principal,
        first: date | None,
        last: date | None,
        group_by: GroupBy,
        user_id: str | None = None,
        today: date | None = None,
    ) -> UsageReport:
        """The counters from `first` to `last` (domain.usage.day_range's defaults and bound),
        summed by day or model. Forbidden when a user names another user; NotFound when no
        usage is kept (USAGE_TABLE unset)."""
        span = day_range(first, last, today)
        if user_id and user_id != caller.user_id and not caller.is_admin:
            raise Forbidden("only an admin may read another user's usage")
        if self._reader is None:
            raise NotFound("usage is not kept by this deployment (USAGE_TABLE is not set)")
        whose = user_id or (None if caller.is_admin else caller.user_id)
        rows: list[UsageRow] = []
        if whose is not None:
            rows = self._reader.of_user(whose, span.first.isoformat(), span.last.isoformat())
        else:
            for day in span.days():
                rows.extend(self._reader.of_day(day))
        groups, total = aggregate(rows, group_by)
        return UsageReport(span.first.isoformat(), span.last.isoformat(), group_by, whose, groups, total)
