"""The published JavaScript client `@1backend/client`, unmodified, against `promptsvc dev`."""

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_KEY, DevServer, call

pytestmark = pytest.mark.e2e

JS = ROOT / "tests" / "e2e" / "js"


def run_check(server: DevServer, script: str, key: str) -> dict[str, Any]:
    """Run one of the .mjs checks with the published client; what it saw (its last output line)."""
    node = shutil.which("node")
    assert node, "node is needed for the JS client test (the machine image provides it)"
    assert (JS / "node_modules" / "@1backend" / "client").is_dir(), "run scripts/bootstrap first"
    result = subprocess.run(
        [node, script],
        cwd=JS,
        env={**os.environ, "PROMPTSVC_URL": server.base_url, "PROMPTSVC_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


def test_js_client_adds_lists_pages_and_removes(server: DevServer) -> None:
    key = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": "js-user"}).json()["key"]

    seen = run_check(server, "client_check.mjs", key)

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


def test_js_client_gets_prompt_types_and_a_threads_streamed_answer(server: DevServer) -> None:
    """promptTypes, and subscribeToPromptResponses on a thread not yet made, then a prompt on it:
    the client resolves with the prompt's progress chunks in order, the whole answer, then done."""
    key = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": "js-sse-user"}).json()["key"]

    seen = run_check(server, "subscribe_check.mjs", key)

    assert seen["types"] == {}  # the generated model keeps only `chunk`, which is never sent
    assert seen["typesBody"] == {"promptTypes": ["Text-to-Text"], "chunkTypes": ["progress", "done"]}
    events = seen["events"]
    ids = [event["id"] for event in events]
    assert ids == sorted(set(ids)), ids
    chunks = [event["data"] for event in events]
    assert len(chunks) >= 2 and [c["type"] for c in chunks] == ["progress"] * (len(chunks) - 1) + ["done"]
    assert {c["messageId"] for c in chunks} == {seen["promptId"]}
    assert chunks[-1]["status"] == "completed"
    answer = call(server, key, "GET", f"/prompt-svc/prompt/{seen['promptId']}").json()["answer"]
    assert "".join(c["text"] for c in chunks) == answer and "banana" in answer
    assert seen["badThread"]["status"] == 400 and "thread" in seen["badThread"]["body"]["error"]
