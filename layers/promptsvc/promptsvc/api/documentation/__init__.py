"""The models only the OpenAPI document reads: what the routes answer (they build their bodies
themselves) and the bodies they read as plain JSON objects.

Routes name them (`contract("PromptResponse", ...)`, api/openapi.py) and `openapi.document()`
imports this package when it writes the document: the deployed API serves no document, so its
init defines none of these classes (pydantic's class creation is most of the API's own cold start:
docs/architecture.md, "Cold start").
"""

from pydantic import BaseModel

from promptsvc.api.documentation import keys, queue, registry, seed, usage

_MODULES = (queue, keys, registry, seed, usage)


def model(name: str) -> type[BaseModel]:
    """The documented model called `name`."""
    for module in _MODULES:
        found = getattr(module, name, None)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    raise LookupError(f"no documented model {name!r} (api/documentation)")
