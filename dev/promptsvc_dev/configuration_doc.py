"""docs/configuration.md, written from the `Settings` fields (their names, defaults, bounds and
descriptions), so the page cannot drift from the code (tests/unit/test_configuration_doc.py).

    python -m promptsvc_dev.configuration_doc docs/configuration.md          # write it
    python -m promptsvc_dev.configuration_doc --check docs/configuration.md  # exit 1 if it differs
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from promptsvc.settings import NEEDS, Settings
from promptsvc.settings.engines import EngineSettings
from promptsvc.settings.mock_engine import MockEngineSettings
from promptsvc.settings.worker import WorkerSettings
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

HEADER = """# Configuration

Every function reads its settings from the environment (`promptsvc/settings/`);
`template.yaml` sets them per function, several from the stack's parameters (`SyncWaitSeconds`,
`PromptRetentionDays`, `EventRetentionSeconds`, `ModelCatalogParameter`, ...), and `promptsvc dev`
gives each the environment the template gives it. Names are case-insensitive. Only the environment
is read: no `.env` file, no secrets directory.

A resource a function cannot run without has no default: the function checks it at init and
fails its cold start naming what is missing (`needed by` below; `Settings.for_function`).

This page is written from the code: `python -m promptsvc_dev.configuration_doc docs/configuration.md`.
"""
_TABLE_HEAD = "| variable | default | bounds | meaning |\n| --- | --- | --- | --- |\n"

_BOUNDS = ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<"))


def _default(field: Any) -> str:
    value = field.default
    if value is PydanticUndefined:
        return "(required)"
    if value == "" or value is None:
        return "(none)"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _bounds(field: Any) -> str:
    found = []
    for item in field.metadata:
        for kind, attribute, sign in _BOUNDS:
            if isinstance(item, kind):
                found.append(f"{sign} {getattr(item, attribute)}")
    return ", ".join(found)


def _needed_by(name: str) -> str:
    functions = [function for function, needs in NEEDS.items() if name in needs]
    return f" (needed by {', '.join(functions)})" if functions else ""


def _table(fields: dict[str, Any]) -> str:
    rows = [
        f"| `{name.upper()}` | {_default(field)} | {_bounds(field)} | {field.description}{_needed_by(name)} |"
        for name, field in fields.items()
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings))
    ]
    return _TABLE_HEAD + "\n".join(rows) + "\n"


def render() -> str:
    sections = [
        ("The service", Settings.model_fields),
        ("Engines (`EngineSettings`)", EngineSettings.model_fields),
        ("The mock engine (`MockEngineSettings`)", MockEngineSettings.model_fields),
        ("The ECS worker (`WorkerSettings`)", WorkerSettings.model_fields),
    ]
    return HEADER + "".join(f"\n## {title}\n\n{_table(dict(fields))}" for title, fields in sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not what the code says")
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is out of date: run python -m promptsvc_dev.configuration_doc {args.path}")
            return 1
        return 0
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
