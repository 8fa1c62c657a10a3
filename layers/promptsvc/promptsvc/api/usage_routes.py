"""`GET /prompt-svc/usage`: the usage counters (services/usage.py)."""

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from promptsvc.api import deps
from promptsvc.api.auth import principal
from promptsvc.api.openapi import contract
from promptsvc.domain.keys import Principal
from promptsvc.domain.names import ID_PATTERN
from promptsvc.domain.usage import MAX_USAGE_DAYS
from promptsvc.services.usage import UsageService

router = APIRouter(prefix="/prompt-svc", dependencies=[Depends(principal)])


@router.get("/usage", **contract("Usage", 400, 403, 404))
def usage(
    first: Annotated[
        date | None,
        Query(alias="from", description="first UTC day, YYYY-MM-DD (default: 29 days before `to`)"),
    ] = None,
    last: Annotated[
        date | None,
        Query(alias="to", description=f"last UTC day (default: today); at most {MAX_USAGE_DAYS} days in all"),
    ] = None,
    groupBy: Literal["day", "model"] = "day",
    userId: Annotated[
        str | None, Query(pattern=ID_PATTERN, description="whose usage; admin only for another user's")
    ] = None,
    caller: Principal = Depends(principal),
    service: UsageService = Depends(deps.usage),
) -> dict[str, Any]:
    report = service.report(caller, first, last, groupBy, userId)
    key = "day" if groupBy == "day" else "modelId"
    return {
        "usage": [{key: name, **count.as_dict()} for name, count in report.groups],
        "total": report.total.as_dict(),
        "from": report.first,
        "to": report.last,
        "groupBy": report.group_by,
        "userId": report.user_id,
    }
