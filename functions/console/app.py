"""Console function: API keys (`/prompt-svc/keys`), usage (`/prompt-svc/usage`) and the playground
page (`/playground`). The queue API is functions/api, the prompt registry functions/registry: each
imports only its own routes (promptsvc/api/app.py)."""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

# The big packages this init imports, imported first, at the top of the stack (never named here):
# docs/architecture.md, "Cold start".
import boto3  # noqa: F401
import fastapi  # noqa: F401
import pydantic_settings  # noqa: F401
from promptsvc.api.handler import http_handler

handler = http_handler("console", function="console", error_metric="ConsoleServerErrors")

collector.resume()  # the init is done: promptsvc/collector.py
