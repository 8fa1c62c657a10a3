"""Queue API function: `/prompt-svc/*` (prompts, threads, models). The console (keys, usage, the
playground) is functions/console, the prompt registry functions/registry: each imports only its own
routes (promptsvc/api/app.py)."""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

import boto3  # noqa: F401  (imported first, at the top of the stack: docs/architecture.md, "Cold start")
from promptsvc.api.handler import http_handler

handler = http_handler("queue", function="api", error_metric="ApiServerErrors")

collector.resume()  # the init is done: promptsvc/collector.py
