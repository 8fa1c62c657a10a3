"""Prompt registry function: the `/v2/prompts` API. The queue API is functions/api, the console
functions/console: each imports only its own routes (promptsvc/api/app.py)."""

from promptsvc import collector

collector.pause()  # before any other import: promptsvc/collector.py

import boto3  # noqa: F401  (imported first, at the top of the stack: docs/architecture.md, "Cold start")
from promptsvc.api.handler import http_handler

handler = http_handler("registry", function="registry", error_metric="RegistryServerErrors")

collector.resume()  # the init is done: promptsvc/collector.py
