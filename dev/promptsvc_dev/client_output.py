"""How the client commands print: tables for people, JSON for programs."""

import json
from collections.abc import Iterable, Sequence
from typing import Any

from promptsvc.client import Prompt, ThreadEvent
from pydantic import BaseModel

PROMPT_PREVIEW = 40


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    lines = [list(header), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)), line[-1]]
        ).rstrip()
        for line in lines
    )


def as_json(value: BaseModel | Sequence[BaseModel]) -> str:
    """The API's own names (camelCase, `_id`), indented."""
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(by_alias=True), indent=2)
    return json.dumps([item.model_dump(by_alias=True) for item in value], indent=2)


def preview(text: str, width: int = PROMPT_PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def prompt_rows(prompts: Iterable[Prompt]) -> list[list[str]]:
    return [
        [p.id, p.status, p.thread_id, p.model_id.rsplit("/", 1)[-1], p.created_at[:19], preview(p.prompt)]
        for p in prompts
    ]


PROMPT_HEADER = ["ID", "STATUS", "THREAD", "MODEL", "CREATED", "PROMPT"]


def event_line(event: ThreadEvent) -> str:
    detail: Any
    if event.type == "delta":
        detail = json.dumps(event.text or "", ensure_ascii=False)
    elif event.type == "status":
        detail = event.status + (f" ({event.error})" if event.error else "") if event.status else ""
    else:
        detail = ""
    return f"{event.seq:>6}  {event.type:<6}  {event.prompt_id}  {detail}".rstrip()
