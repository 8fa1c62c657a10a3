"""Untrusted JSON (request bodies, WebSocket messages, JSON-encoded query values), parsed with bounds.

Python's `json` accepts what would later break the service: nesting deep enough to exhaust the
recursion limit, integers of thousands of digits (slow to convert, over DynamoDB's 38 digits, over
Python's 4,300-digit limit), `NaN`/`Infinity` (not JSON), and lone UTF-16 surrogates (`"\\ud800"`,
which no UTF-8 encoder, boto3's included, can write). `loads` refuses each of them with an
`InvalidRequest` naming the problem, so every caller answers 400 (or an error frame) with nothing done.
"""

import json
import math
import re
from typing import Any

from promptsvc.domain.errors import InvalidRequest

MAX_DEPTH = 32  # objects and arrays inside each other; `{}` is depth 1
MAX_INT_DIGITS = 20  # enough for any 64-bit integer
MAX_NUMBER_CHARS = 40  # a non-integer number's literal

_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRejected(InvalidRequest):
    """The text is not JSON, or is JSON beyond a bound."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonRejected(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRejected(f"a number is longer than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected(f"the number {text} is out of range")
    return value


def _constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not a JSON value")


def loads(raw: str | bytes, what: str = "JSON") -> Any:
    """The value of `raw`; JsonRejected (`"invalid {what}: ..."`) unless it is JSON within bounds."""
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonRejected(f"invalid {what}: not UTF-8 text") from None
    else:
        text = raw
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except JsonRejected as error:
        raise JsonRejected(f"invalid {what}: {error}") from None
    except RecursionError:
        raise JsonRejected(f"invalid {what}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as error:  # JSONDecodeError, and int()'s own digit limit
        raise JsonRejected(f"invalid {what}: {error}") from None
    problem = _check(value)
    if problem:
        raise JsonRejected(f"invalid {what}: {problem}")
    return value


def _check(value: Any) -> str | None:
    """The first bound the parsed value breaks (depth, lone surrogates), walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return "a string holds a lone UTF-16 surrogate (not Unicode text)"
        elif isinstance(node, dict | list):
            depth += 1
            if depth > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep"
            if isinstance(node, dict):
                stack.extend((key, depth) for key in node)
                stack.extend((item, depth) for item in node.values())
            else:
                stack.extend((item, depth) for item in node)
    return None
