"""End to end on `promptsvc dev`: fair queueing's two lanes (domain/lanes.py). A tenant over its
fast-lane share gets bulk-lane prompts that still complete, and another tenant's prompt completes
while that burst is still queued; every lane counter comes back to 0."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import ADMIN_KEY, DevServer, call, dev_server

pytestmark = pytest.mark.e2e

BURST = 100


def dynamodb(state: dict[str, Any]) -> Any:
    env = state["environment"]
    return boto3.client(
        "dynamodb",
        endpoint_url=state["endpoint"],
        region_name=state["region"],
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )


def scan(state: dict[str, Any], table: str) -> list[dict[str, Any]]:
    client, items, start = dynamodb(state), [], None
    while True:
        page = client.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def new_key(server: DevServer, user: str) -> str:
    response = call(server, ADMIN_KEY, "POST", "/prompt-svc/keys", {"userId": user})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def status(server: DevServer, key: str, prompt_id: str) -> str:
    return str(call(server, key, "GET", f"/prompt-svc/prompt/{prompt_id}").json()["prompt"]["status"])


def test_a_burst_goes_to_the_bulk_lane_and_another_tenants_prompt_overtakes_it(tmp_path: Path) -> None:
    state_file = tmp_path / "dev.json"
    with dev_server(mock_chunk_delay=0.5, env={"PROMPTSVC_DEV_STATE": str(state_file)}) as server:
        state = json.loads(state_file.read_text())
        share = int(state["environment"]["FAST_LANE_PROMPTS_PER_USER"])
        busy, quiet = new_key(server, "busy"), new_key(server, "quiet")

        def add(number: int) -> str:
            response = call(server, busy, "POST", "/prompt-svc/prompt", {"prompt": f"burst {number}"})
            assert response.status_code == 200, response.text
            return str(response.json()["prompt"]["id"])

        with ThreadPoolExecutor(8) as pool:  # queued faster than the consumer works it
            burst = list(pool.map(add, range(BURST)))
        one = call(server, quiet, "POST", "/prompt-svc/prompt", {"prompt": "just one"}).json()["prompt"]["id"]

        deadline = time.monotonic() + 60
        while status(server, quiet, one) != "completed":
            assert time.monotonic() < deadline, "the quiet tenant's prompt did not complete"
            time.sleep(0.1)
        waiting = [p for p in burst if status(server, busy, p) in ("scheduled", "running")]
        assert waiting, "the burst had all run before the quiet tenant's prompt: nothing was overtaken"

        items = scan(state, state["environment"]["PROMPTS_TABLE"])
        lanes = [item["lane"]["S"] for item in items if item["userId"]["S"] == "busy"]
        assert lanes.count("fast") >= share and lanes.count("bulk") > 0, lanes
        assert [item["lane"]["S"] for item in items if item["userId"]["S"] == "quiet"] == ["fast"]

        deadline = time.monotonic() + 120
        while any(status(server, busy, p) != "completed" for p in waiting):
            assert time.monotonic() < deadline, "the burst's bulk-lane prompts did not all complete"
            time.sleep(0.5)
        counters = {
            i["key"]["S"]: int(i["n"]["N"])
            for i in scan(state, state["environment"]["LIMITS_TABLE"])
            if i["key"]["S"].startswith("lane#")
        }
    assert counters == {"lane#busy": 0, "lane#quiet": 0}, counters
