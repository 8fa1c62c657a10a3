"""Validation errors in words: the one formatter for every pydantic error the service reports (HTTP
bodies, the list query, WebSocket frames, stored prompts, queue messages), and the validators that
make pydantic's errors name what the caller sent.

Each problem reads `where: what`, e.g. `query.filters[0].fields[1]: unknown field 'colour'`.
"""

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import InitErrorDetails, PydanticCustomError

QUOTE_LIMIT = 100  # characters of a caller's value quoted back in a message
TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})  # a discriminated union's tag is wrong
_CONTEXT_READ = TAG_ERRORS | {"too_long", "json_invalid"}  # what `describe` reads an error's context of


def describe(
    errors: Iterable[Mapping[str, Any]],
    *,
    where: str = "",
    skip: Container[str] = (),
    brackets: bool = False,
) -> str:
    """One problem per error, `; `-separated, each naming its field.

    `where` names the validated value (`query`, `prompt`); `skip` drops location parts that name no
    field (FastAPI's `body`, `query`); `brackets` writes list positions `[0]` rather than `.0`.
    """
    problems = [_problem(error, where, skip, brackets) for error in errors]
    return "; ".join(problems) or "invalid request"


def _problem(error: Mapping[str, Any], where: str, skip: Container[str], brackets: bool) -> str:
    kind = str(error.get("type"))
    context: Mapping[str, Any] = error.get("ctx") or {}
    if kind == "json_invalid":
        return f"invalid JSON body: {context.get('error', 'malformed')}"
    loc: list[str | int] = [part for part in error.get("loc", ()) if part not in skip]
    if kind in TAG_ERRORS:  # a discriminated union's tag: located at the tag's field
        loc.append(str(context.get("discriminator", "")).strip("'"))
    message = _message(kind, context, loc, str(error.get("msg", "invalid")))
    path = located(where, loc, brackets) or "body"
    return message if message.startswith(f"{path} ") else f"{path}: {message}"


def _message(kind: str, context: Mapping[str, Any], loc: Sequence[str | int], message: str) -> str:
    """pydantic's message, in the caller's words where pydantic's would name our internals."""
    if kind == "union_tag_not_found":
        return "Field required"
    if kind == "union_tag_invalid":
        return f"unknown {loc[-1]} {quote(context.get('tag'))}; known: {context.get('expected_tags')}"
    if kind == "too_long" and "max_length" in context:  # a list's bound, in the list's words
        noun = next((part for part in reversed(loc) if isinstance(part, str)), "items")
        actual = context.get("actual_length")
        return f"at most {context['max_length']} {noun}" + (f", not {actual}" if actual else "")
    if kind == "model_type":  # not "... or instance of _SomeModel": the class is ours, not theirs
        return "Input should be a valid dictionary"
    return message.removeprefix("Value error, ")


def located(where: str, loc: Sequence[str | int], brackets: bool = False) -> str:
    """`where` and the location: `query.filters[0].op` (brackets) or `prompt.messages.0.role`."""
    path = where
    for part in loc:
        if brackets and isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def quote(value: Any) -> str:
    """A caller's value in a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."


def untagged(discriminator: str) -> WrapValidator:
    """For a discriminated union on `discriminator`: its errors located as a plain model's.

    pydantic puts the member's tag in the location of every error inside it (`filters.0.equals.
    fields`); a caller sent no field by that name, so the tag is taken out (`filters.0.fields`).
    """

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as error:
            tag = value.get(discriminator) if isinstance(value, Mapping) else None
            raise _relocated(error, lambda loc: loc[1:] if loc and loc[0] == tag else loc) from None

    return WrapValidator(validate)


def worded(message: str, **by_type: str) -> WrapValidator:
    """Any error of the value reported as one `message` (or `by_type[error type]`): for a value
    whose rule reads better whole than as pydantic's one problem per union member."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as error:
            kinds = [problem["type"] for problem in error.errors(include_url=False)]
            chosen = next((by_type[kind] for kind in kinds if kind in by_type), message)
            raise PydanticCustomError("invalid", chosen) from None

    return WrapValidator(validate)


def _relocated(error: ValidationError, move: Callable[[tuple[Any, ...]], tuple[Any, ...]]) -> ValidationError:
    """`error` with each problem's location moved; its type and message are kept."""
    details: list[InitErrorDetails] = []
    for problem in error.errors(include_url=False):
        # The rendered message is the new template: its `{name}`s are filled from the context, so
        # the context goes along only where `describe` reads it (and writes its own message).
        context = problem.get("ctx") if problem["type"] in _CONTEXT_READ else None
        kind = PydanticCustomError(problem["type"], problem["msg"], context)
        details.append({"type": kind, "loc": move(tuple(problem["loc"])), "input": problem["input"]})
    return ValidationError.from_exception_data(error.title, details)
