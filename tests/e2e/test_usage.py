"""End to end on `promptsvc dev`: prompts added through the API, run by the consumer, carry their
usage, and `GET /prompt-svc/usage` (and `promptsvc usage`) equals the sum over them."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from promptsvc.client import AsyncClient, Client, Usage

from tests.conftest import ROOT
from tests.e2e.conftest import DevServer, call, dev_server

pytestmark = pytest.mark.e2e

FIELDS = ("promptTokens", "completionTokens")


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(mock_chunk_delay=0) as started:  # its own: usage starts at zero
        yield started


def test_usage_equals_the_sum_over_the_prompts_in_the_api_and_the_cli(
    server: DevServer, users: dict[str, str]
) -> None:
    texts = ["What is a banana?", "Why is the sky blue?", "one", "Tell me a long story about the sea, please"]
    prompts = []
    for text in texts:
        added = call(server, users["alice"], "POST", "/prompt-svc/prompt", {"prompt": text, "sync": True})
        assert added.status_code == 200, added.text
        prompts.append(added.json()["prompt"])
    bobs = call(server, users["bob"], "POST", "/prompt-svc/prompt", {"prompt": "bob's", "sync": True})
    assert bobs.status_code == 200 and bobs.json()["prompt"]["status"] == "completed"

    assert all(p["status"] == "completed" and p["finishReason"] == "stop" for p in prompts)
    assert all(
        p["promptTokens"] > 0 and p["completionTokens"] > 0 and not p["usageEstimated"] for p in prompts
    )
    expected = {
        "prompts": len(texts),
        "promptTokens": sum(p["promptTokens"] for p in prompts),
        "completionTokens": sum(p["completionTokens"] for p in prompts),
        "failedAttempts": 0,
        "cacheHits": 0,
    }
    mine = call(server, users["alice"], "GET", "/prompt-svc/usage?groupBy=model")
    assert mine.status_code == 200, mine.text
    assert mine.json()["total"] == expected
    assert [g["modelId"] for g in mine.json()["usage"]] == [prompts[0]["modelId"]]
    assert call(server, users["alice"], "GET", "/prompt-svc/usage?userId=bob").status_code == 403

    async def read_async(group_by: str) -> Usage:
        async with AsyncClient(server.base_url, users["alice"]) as client:
            return await client.usage(group_by=group_by)

    with Client(server.base_url, users["alice"]) as client:
        by_model = client.usage(group_by="model")
    assert by_model.total.model_dump(by_alias=True) == expected and by_model.user_id == "alice"
    assert [g.model_id for g in by_model.usage] == [prompts[0]["modelId"]]
    assert asyncio.run(read_async("day")).total.prompt_tokens == expected["promptTokens"]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROMPTSVC_"))}
    env |= {"PROMPTSVC_URL": server.base_url, "PROMPTSVC_API_KEY": users["alice"]}

    def promptsvc(*args: str) -> str:
        run = subprocess.run(
            [sys.executable, "-m", "promptsvc_dev.cli", "usage", *args],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return run.stdout

    shown = json.loads(promptsvc("--json"))
    assert shown["total"] == expected and shown["userId"] == "alice" and shown["groupBy"] == "day"
    table = promptsvc("--by", "model").splitlines()
    assert table[1].split() == [
        "MODEL",
        "PROMPTS",
        "TOKENS",
        "IN",
        "TOKENS",
        "OUT",
        "FAILED",
        "CACHE",
        "HITS",
    ]
    assert table[-1].split() == [
        "total",
        *(str(expected[k]) for k in ("prompts", *FIELDS, "failedAttempts", "cacheHits")),
    ]
