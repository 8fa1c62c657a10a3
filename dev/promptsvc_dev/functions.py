"""Loads the Lambda handlers from functions/<name>/app.py, exactly the files SAM deploys."""

import importlib.util
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType


def load_handler_module(root: Path, function: str) -> ModuleType:
    """Import functions/<function>/app.py as a fresh module (settings are read at import)."""
    path = root / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(
        f"promptsvc_function_{function}_{uuid.uuid4().hex[:8]}", path
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    remaining_ms: int = 120_000  # what get_remaining_time_in_millis answers (the function's timeout)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
