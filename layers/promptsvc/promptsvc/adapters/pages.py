"""Reading every page of a DynamoDB Query or Scan: the one loop that follows `LastEvaluatedKey`."""

from collections.abc import Callable, Iterator
from typing import Any


def pages(
    operation: Callable[..., dict[str, Any]],
    kwargs: dict[str, Any],
    next_page_size: Callable[[], int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every page of `operation(**kwargs)` (a table's `query` or `scan`), each fetched only when
    wanted. A page stops at 1 MB (or `Limit`), so a short page is not the end unless it says so.
    `next_page_size`: the `Limit` of each next page (what the caller still needs); 0 stops, though
    the last page said there was more."""
    while True:
        page = operation(**kwargs)
        yield page
        if "LastEvaluatedKey" not in page:
            return
        kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}
        if next_page_size is not None:
            size = next_page_size()
            if size <= 0:
                return
            kwargs["Limit"] = size


def items(operation: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item of every page."""
    for page in pages(operation, kwargs):
        yield from page.get("Items", [])
