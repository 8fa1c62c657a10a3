"""Runs one Lambda handler the way the Lambda runtime does, in a process of its own.

Usage: python -I -S harness.py SPEC.json   (run by tests/deploy, never imported by them)

SPEC gives `sys_path` (the function's code directory and its layers' `python` directories, as
Lambda has /var/task and /opt/python), `handler` ("module.attribute", as in template.yaml),
`events` (invoked in order, on one warm "container") and `result`, the file the outcome is written
to. With `-I -S` nothing but the standard library and `sys_path` is importable, so a dependency
missing from the layer fails here as it would in AWS. The process environment is the function's
own (set by the caller).

Each event is {"payload": {...}} and may carry "substitute": {"placeholder": ["body", "prompt",
"id"]}: every occurrence of the placeholder in the payload is replaced by that field of the JSON
body of the previous response (so an API add can be followed by a GET of what it made).

The outcome records, besides the responses: which Settings fields the code read (their
environment variables must be set by the template), every AWS API call it made (so the test can
check the function's role allows each), where every imported module came from, and which modules
were compiled from source (none should be: the artifacts ship bytecode, and the caller runs this
with `-B`, as Lambda's read-only filesystem keeps Python from writing any).
"""

import importlib
import json
import sys
import traceback
import uuid
from typing import Any


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_seconds: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "harness"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self._timeout_ms = timeout_seconds * 1000

    def get_remaining_time_in_millis(self) -> int:
        return self._timeout_ms


def _record_settings_reads(reads: set[str]) -> None:
    from promptsvc import settings as settings_module

    cls = settings_module.Settings
    fields = set(cls.model_fields)
    original = cls.__getattribute__

    def recording(self: Any, name: str) -> Any:
        if name in fields:
            reads.add(name)
        return original(self, name)

    cls.__getattribute__ = recording  # type: ignore[method-assign]


def _record_aws_calls(calls: list[dict[str, Any]]) -> None:
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        model = self.meta.service_model
        call = {
            "service": model.service_name,
            "signingName": model.signing_name,
            "operation": operation_name,
            "endpoint": self.meta.endpoint_url,
        }
        for name in (
            "TableName",
            "IndexName",
            "QueueUrl",
            "SecretId",
            "Name",
            "EndpointName",
            "ConnectionId",
            "Bucket",
            "Key",
        ):
            if isinstance(api_params.get(name), str):
                call[name] = api_params[name]
        if isinstance(api_params.get("RequestItems"), dict):  # BatchWriteItem, BatchGetItem
            call["TableNames"] = sorted(api_params["RequestItems"])
        if isinstance(api_params.get("TransactItems"), list):  # one permission per item's own action
            call["TransactItems"] = [
                [kind, body.get("TableName")]
                for item in api_params["TransactItems"]
                for kind, body in item.items()
            ]
        calls.append(call)
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = recording  # type: ignore[method-assign]


def _record_compiles(compiled: list[str]) -> None:
    """Every module compiled from its source rather than loaded from bytecode: a deployed function
    cannot write __pycache__ (its code and layers are read-only), so each of those is compiled
    again at every cold start."""
    from importlib.machinery import SourceFileLoader

    compile_source = SourceFileLoader.source_to_code

    def recording(self: Any, data: Any, path: Any = "<string>", **kwargs: Any) -> Any:
        compiled.append(str(path))
        return compile_source(self, data, path, **kwargs)

    SourceFileLoader.source_to_code = recording  # type: ignore[method-assign]


def _field(body: str, path: list[str]) -> str:
    value: Any = json.loads(body)
    for key in path:
        value = value[key]
    return str(value)


def main(spec_path: str) -> int:
    with open(spec_path) as spec_file:
        spec = json.load(spec_file)
    sys.path[:0] = spec["sys_path"]
    outcome: dict[str, Any] = {"responses": [], "settingsRead": [], "awsCalls": [], "modules": {}}
    reads: set[str] = set()
    compiled: list[str] = []
    try:
        _record_compiles(compiled)
        _record_settings_reads(reads)
        _record_aws_calls(outcome["awsCalls"])
        for name in spec.get("also_import", []):  # what the runtime needs besides the handler's imports
            importlib.import_module(name)
        module_name, attribute = spec["handler"].rsplit(".", 1)
        module = importlib.import_module(module_name)  # the cold start
        handler = getattr(module, attribute)
        outcome["handlerCallable"] = callable(handler)
        context = LambdaContext(spec["function_name"], spec.get("timeout", 30))
        previous: Any = None
        for event in spec["events"]:
            text = json.dumps(event["payload"])
            for placeholder, path in event.get("substitute", {}).items():
                text = text.replace(placeholder, _field(previous["body"], path))
            previous = handler(json.loads(text), context)
            outcome["responses"].append(previous)
    except BaseException:
        outcome["error"] = traceback.format_exc()
    outcome["settingsRead"] = sorted(reads)
    outcome["compiled"] = compiled
    outcome["modules"] = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None)
    }
    outcome["stdlib"] = [sys.base_prefix, sys.prefix]
    with open(spec["result"], "w") as result_file:
        json.dump(outcome, result_file, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
