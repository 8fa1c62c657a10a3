"""The exact-match response cache: what makes two runs the same request."""

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec


def cache_key(
    user_id: str,
    model_id: str,
    messages: Sequence[Mapping[str, Any]],
    prompt: str,
    parameters: Mapping[str, Any],
) -> str:
    """SHA-256 of the model, the rendered messages (or the rendered prompt, for a completion
    model) and every parameter, in canonical JSON. Scoped to the user: one user's answers are
    never served to another."""
    body = {
        "user": user_id,
        "model": model_id,
        "messages": list(messages),
        "prompt": prompt,
        "parameters": dict(parameters),
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class CachedAnswer(msgspec.Struct, frozen=True):
    """A cached answer, with the tokens it used when it was made (None: the engine did not say)."""

    answer: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
