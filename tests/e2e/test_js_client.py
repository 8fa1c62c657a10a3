"""The published JavaScript client `@1backend/client`, unmodified, against `promptsvc dev`."""

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_KEY, DevServer, call

pytestmark = pytest.mark.e2e

JS = ROOT / "tests" / "e2e" / "js"


def test_js_client_adds_lists_pages_and_removes(server: DevServer) -> None:
    node = shutil.which("node")
    assert node, "node is needed for the JS client test (the machine image provides it)"
    assert (JS / "node_modules" / "@1backend" / "client").is_dir(), "run scripts/bootstrap first"
    key = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": "js-user"}).json()["key"]

    result = subprocess.run(
        [node, "client_check.mjs"],
        cwd=JS,
        env={**os.environ, "PROMPTSVC_URL": server.base_url, "PROMPTSVC_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["sync"] == {
        "status": "completed",
        "message": "<js>What's a banana?</js>",
    }
    assert seen["count"] == 4
    assert len(seen["listed"]) == 4 and len(set(seen["listed"])) == 4
    assert seen["listed"][:3] == list(reversed(seen["added"]))
    assert seen["afterRemove"] == [i for i in seen["listed"] if i != seen["added"][0]]
    assert seen["emptyPrompt"]["status"] == 400
    assert "prompt" in seen["emptyPrompt"]["body"]["error"]
