"""Queue API function: `/prompt-svc/*` (prompts, threads, models). The console (keys, usage, the
playground) is functions/console, the prompt registry functions/registry: each imports only its own
routes (promptsvc/api/app.py)."""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

# The big packages this init imports, imported first, at the top of the stack (never named here):
# docs/architecture.md, "Cold start".
import boto3  # noqa: F401
import fastapi  # noqa: F401
import pydantic_settings  # noqa: F401
from promptsvc.api.handler import http_handler

handler = http_handler("queue", function="api", error_metric="ApiServerErrors")

collector.resume()  # the init is done: promptsvc/collector.py
