"""Runs Python code in a subprocess where the server's dependencies cannot be imported: what a
machine with only `pip install "promptsvc[client]"` has."""

import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SERVER_ONLY = (
    "boto3", "botocore", "fastapi", "mangum", "aws_lambda_powertools", "pydantic_settings", "ulid",
    "moto", "uvicorn", "starlette", "yaml",
)  # fmt: skip

BLOCKER = f"""
import sys

class _ServerOnly:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_ONLY!r}:
            raise ImportError(f"{{name}} is a server dependency: blocked")
        return None

sys.meta_path.insert(0, _ServerOnly())
"""


def run_without_server_deps(
    code: str, env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`code` after the blocker, in a fresh interpreter (`env` added to a clean environment)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROMPTSVC_"))}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
