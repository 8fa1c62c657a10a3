"""The published contract: the OpenAPI 3.1 document of both APIs, generated from the typed models.

Two things FastAPI cannot see by itself are added here:

- request bodies: the routes read them through `json_body` dependencies (api/body.py: no
  Content-Type needed, errors in each API's shape), not body parameters, so `contract(body=...)`
  documents the model in `openapi_extra` and `document()` adds its schema to the components;
- responses: the routes build their bodies themselves (runtime unchanged), so `contract()` names
  the model of each status instead of a `response_model`; FastAPI's default 422 for a parameter
  that fails validation becomes the API's own answer (400 `{error}`, on /v2 422 `{message}`).

`python -m promptsvc.api.openapi docs/openapi.json` (what `scripts/openapi` runs) writes the
document; `--check` fails when the file differs from the app's.
"""

import argparse
import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Security
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from pydantic.warnings import UnsupportedFieldAttributeWarning

from promptsvc.api.auth import principal

REF_TEMPLATE = "#/components/schemas/{model}"
_MODEL_PATH = "/request-models"
_REQUEST_MODELS: dict[str, type[BaseModel] | str] = {}  # a name: a model of api/documentation

_MEANING = {
    400: "malformed JSON, a wrong field (named), or a bad cursor",
    401: "missing or unknown API key",
    403: "the key's role may not do this",
    408: "the body was not received in time (`BODY_READ_SECONDS`)",
    404: "no such resource (another user's is 404 too), or no such route",
    409: "conflicts with the stored state",
    413: "the body is larger than 1 MB (or the prompt than 256 KB, or the item than DynamoDB's 400 KB)",
    422: "a field is not valid (named)",
    500: "internal error (never a stack trace)",
    429: "the API key passed a limit (named, with its value): try again after `Retry-After` seconds",
    503: "the service is busy (AWS throttled it past its retries): try again after `Retry-After` seconds",
}
_ALWAYS = (401, 429, 500, 503)  # 429: every request counts in its key's minute


def contract(
    ok: str | None,
    *errors: int,
    registry: bool = False,
    status: int = 200,
    also: dict[int, str] | None = None,
    body: type[BaseModel] | str | None = None,
    body_required: bool = True,
    stream: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Route decorator arguments documenting a route: its answer (`ok`, with `status`; None for an
    empty body), more successful answers (`also`), its error statuses besides 401 and 500, and the
    JSON body it reads: the model its `json_body` dependency validates with, or the name of one in
    api/documentation for a body read as a plain object. `stream`: the content of an answer that is
    a stream (`{media type: {"schema": ...}}`; `ok` None, the route's `response_class` has that
    media type), whose errors are still JSON. Answers are named, not given: their models are in
    api/documentation, which only `document()` imports."""
    error_model = "RegistryError" if registry else "QueueError"
    responses: dict[int | str, dict[str, Any]] = {}
    for code, model in {status: ok, **(also or {})}.items():
        responses[code] = {"description": "OK"} if model is None else {"model": model, "description": "OK"}
    if stream is not None:
        responses[status]["content"] = stream
    bounded = (408, 413) if body is not None else ()  # api/body_limit.py, for any route that reads a body
    for code in sorted({*errors, *_ALWAYS, *bounded}):
        responses[code] = {"model": error_model, "description": _MEANING[code]}
        if stream is not None:  # FastAPI would give the model the route's media type
            schema = {"$ref": REF_TEMPLATE.format(model=error_model)}
            responses[code] = {
                "description": _MEANING[code],
                "content": {"application/json": {"schema": schema}},
            }
    # The route gets the responses without their models (FastAPI would build each model's
    # validator when the route is made: cold start time for documentation); `document()` documents
    # a twin of the route that has them.
    described = {code: {"description": r["description"]} for code, r in responses.items()}
    extra: dict[str, Any] = {_DOCUMENTED: responses}
    arguments: dict[str, Any] = {"response_model": None, "status_code": status, "responses": described}
    if body is not None:
        name = body if isinstance(body, str) else body.__name__
        _REQUEST_MODELS[name] = body
        schema = {"$ref": _placeholder(name)}  # the schema's name is FastAPI's to choose
        extra["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": schema}},
        }
    arguments["openapi_extra"] = extra
    return arguments


_DOCUMENTED = "x-promptsvc-responses"  # a route's responses with their models (in no document)


def routes_of(routes: Any) -> Any:
    """Every route, those of included routers too (FastAPI keeps an included router whole)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from routes_of(included.routes) if included is not None else (route,)


def _bearer() -> HTTPBearer:
    """The API key scheme as the document shows it. Only the document's twins of the routes depend on
    it: `principal` reads the header itself, and a `Security` dependency on every route would be
    analyzed per route at init and run on every request, for the document's sake."""
    return HTTPBearer(
        scheme_name="apiKey",
        bearerFormat="psk_<keyId>_<secret>",
        description="An API key: `Authorization: Bearer KEY` (a bare `KEY` is accepted too).",
        auto_error=False,
    )


def _documented(route: Any) -> Any:
    """The route as the document shows it: a twin made with its responses' models and, where it
    depends on `principal`, the API key scheme."""
    if not isinstance(route, APIRoute) or _DOCUMENTED not in (route.openapi_extra or {}):
        return route
    dependencies = list(route.dependencies)
    if any(dependency.dependency is principal for dependency in dependencies):
        dependencies.append(Security(_bearer()))
    extra = dict(route.openapi_extra or {})
    responses = {
        code: {**response, "model": _model(response["model"])} if "model" in response else response
        for code, response in extra.pop(_DOCUMENTED).items()
    }
    return APIRoute(
        route.path,
        route.endpoint,
        methods=sorted(route.methods or ()),
        status_code=route.status_code,
        response_model=None,
        response_class=route.response_class,
        responses=responses,
        dependencies=dependencies,
        openapi_extra=extra or None,
        name=route.name,
        summary=route.summary,
        description=route.description,
        tags=route.tags,
        operation_id=route.operation_id,
        include_in_schema=route.include_in_schema,
    )


def _model(name: str) -> type[BaseModel]:
    """A model of api/documentation: imported here, when a document is written, not at init."""
    from promptsvc.api import documentation

    return documentation.model(name)


def _placeholder(name: str) -> str:
    return f"{_MODEL_PATH}/{name}"


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (what it serves at /openapi.json), built once."""
    if app.openapi_schema is None:
        models = _documentation_routes()
        with warnings.catch_warnings():
            # pydantic, building a request model (deferred, api/schemas.py) for its documentation
            # route, warns that the body parameter's alias FastAPI sets has no effect there: true,
            # and nothing to act on.
            warnings.simplefilter("ignore", UnsupportedFieldAttributeWarning)
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=[*map(_documented, routes_of(app.routes)), *models.values()],
            )
        _link_request_bodies(doc, models)
        _validation_errors(doc)
        _integral_bounds(doc)
        app.openapi_schema = doc
    return app.openapi_schema


def _documentation_routes() -> dict[str, APIRoute]:
    """One route per request model, taking it as a body: FastAPI then names and generates its schema
    together with every other model (shared ones once); `_link_request_bodies` removes them again."""
    routes = {}
    for name, body in _REQUEST_MODELS.items():
        model = _model(body) if isinstance(body, str) else body

        def endpoint(body: Any) -> None:  # never called
            raise NotImplementedError

        parameter = inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=model)
        endpoint.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
        routes[name] = APIRoute(f"{_MODEL_PATH}/{name}", endpoint, methods=["POST"])
    return routes


def _link_request_bodies(doc: dict[str, Any], models: dict[str, APIRoute]) -> None:
    refs = {}
    for name, route in models.items():
        operation = doc["paths"].pop(route.path)["post"]
        refs[_placeholder(name)] = operation["requestBody"]["content"]["application/json"]["schema"]
    for item in doc["paths"].values():
        for operation in item.values():
            if "requestBody" in operation:
                content = operation["requestBody"]["content"]["application/json"]
                content["schema"] = refs[content["schema"]["$ref"]]


def _validation_errors(doc: dict[str, Any]) -> None:
    """FastAPI's default 422 (its own error shape) out; the API's own answer to a parameter that
    fails validation (400 `{error}`, or 422 `{message}` on /v2) in, where a parameter can fail."""
    default = {"$ref": REF_TEMPLATE.format(model="HTTPValidationError")}
    for path, item in doc["paths"].items():
        for operation in item.values():
            responses = operation["responses"]
            if (
                responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema")
                == default
            ):
                del responses["422"]
            if any(_constrained(parameter["schema"]) for parameter in operation.get("parameters", ())):
                status, model = (422, "RegistryError") if path.startswith("/v2/") else (400, "QueueError")
                schema = {"$ref": REF_TEMPLATE.format(model=model)}
                responses.setdefault(
                    str(status),
                    {"description": _MEANING[status], "content": {"application/json": {"schema": schema}}},
                )
            operation["responses"] = dict(sorted(responses.items()))
    text = json.dumps(doc["paths"])
    schemas = doc["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        if f'"{REF_TEMPLATE.format(model=name)}"' not in text:
            schemas.pop(name, None)


_CONSTRAINTS = frozenset({"pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                          "minLength", "maxLength", "enum", "const"})  # fmt: skip


def _constrained(schema: dict[str, Any]) -> bool:
    """Whether a value can fail this parameter schema (a plain string cannot)."""
    if _CONSTRAINTS & set(schema) or schema.get("type", "string") not in ("string", "null"):
        return True
    return any(_constrained(option) for option in schema.get("anyOf", ()))


_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


def _integral_bounds(node: Any) -> None:
    """Bounds as pydantic writes them (`0`, not FastAPI's `0.0`): a generator reading `minimum: 0.0`
    on an integer may send `5.0`, which the strict request models refuse."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _BOUNDS and isinstance(value, float) and value.is_integer():
                node[key] = int(value)
            else:
                _integral_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integral_bounds(value)


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    # The module the routes registered their request models in (run as `-m`, this one is __main__).
    from promptsvc.api import openapi
    from promptsvc.api.app import create_app

    parser = argparse.ArgumentParser(description="Write (or --check) the OpenAPI document of the API.")
    parser.add_argument("path", type=Path, help="where the document goes, e.g. docs/openapi.json")
    parser.add_argument("--check", action="store_true", help="fail if the file differs from the app's")
    args = parser.parse_args(argv)
    text = openapi.render(openapi.document(create_app()))
    if args.check:
        if not args.path.exists() or args.path.read_text() != text:
            print(f"{args.path} is out of date: run scripts/openapi", file=sys.stderr)
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
