"""`{{name}}` variables in a stored prompt's messages, filled in when the prompt is run."""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from promptsvc.domain.errors import InvalidRequest

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


def render_messages(
    messages: Sequence[Mapping[str, Any]], variables: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Substitute every `{{name}}` in the messages' text (a string content, or the text parts of
    a multi-part content). A variable with no value is a 400 naming every one missing; variables
    the messages do not use are ignored. Values are inserted as text; nothing is re-scanned, so a
    value holding `{{x}}` stays as it is."""
    missing = sorted(
        {name for m in messages for text in _texts(m) for name in VARIABLE.findall(text)} - set(variables)
    )
    if missing:
        names = ", ".join(missing)
        raise InvalidRequest(f"variables: no value for {names} (used by the stored prompt's messages)")
    return [_render_message(m, variables) for m in messages]


def _texts(message: Mapping[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def _render_message(message: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    rendered = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        rendered["content"] = _fill(content, variables)
    elif isinstance(content, list):
        rendered["content"] = [
            {**part, "text": _fill(part["text"], variables)}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return rendered


def _fill(text: str, variables: Mapping[str, Any]) -> str:
    return VARIABLE.sub(lambda match: _as_text(variables[match.group(1)]), text)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last user message: what the prompt's `prompt` field shows, and what a
    completion-style model (one that takes a single prompt, not messages) is given."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return "".join(_texts(message))
    return "".join(text for m in messages for text in _texts(m))
