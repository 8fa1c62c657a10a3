"""Chaos, small: 100 prompts through `promptsvc dev --chaos all` (every fault at once: engine
errors, stalls, cut streams, slow first tokens, killed consumers, duplicate deliveries, throttled
DynamoDB, gone WebSocket connections), then every invariant of dev/promptsvc_dev/chaos_check.py holds. The
1,000-prompt run, and its figures, is benchmarks/chaos.py."""

import json
from pathlib import Path
from typing import Any

import boto3
from promptsvc_dev.chaos_check import check
from promptsvc_dev.chaos_load import ChaosClient, Workload, attempt_log, dev_environment

from tests.e2e.conftest import ADMIN_KEY, dev_server

PROMPTS = 100


def test_every_invariant_holds_with_every_fault_on(tmp_path: Path) -> None:
    state = tmp_path / "dev.json"
    env = {"PROMPTSVC_CHAOS": "all,seed=3", "PROMPTSVC_DEV_STATE": str(state), **dev_environment(tmp_path)}
    with dev_server(mock_chunk_delay=0.05, env=env) as server:
        workload = Workload(prompts=PROMPTS, per_thread=5, workers=8, seed=3, drain_seconds=240)
        run = ChaosClient(server.base_url, ADMIN_KEY, server.ws_url).run(workload, attempt_log(tmp_path))
        slots = in_flight_counters(json.loads(state.read_text()))
    report = check(run.observed)
    report.violations.extend(run.ws_violations)

    assert len(run.observed.submitted) == PROMPTS, run.figures
    assert run.observed.attempts, "the mock engine recorded no attempt"
    assert report.lost == 0, "\n".join(report.summary())
    assert report.double_answers == 0, "\n".join(report.summary())
    assert report.violations == [], "\n".join(report.summary())
    # Every prompt ended (none lost): each key's in-flight slots and each user's fast-lane slots
    # (fair queueing) all came back, each exactly once, through killed consumers, duplicate
    # deliveries, throttling and cancels.
    assert any(name.startswith("lane#") for name in slots), slots
    assert slots and all(n == 0 for n in slots.values()), slots


def in_flight_counters(state: dict[str, Any]) -> dict[str, int]:
    """The keys' in-flight counters and the users' fast-lane counters in the limits table of the
    running `promptsvc dev`."""
    env = state["environment"]
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=state["endpoint"],
        region_name=state["region"],
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    items = dynamodb.scan(TableName=env["LIMITS_TABLE"])["Items"]
    return {
        i["key"]["S"]: int(i["n"]["N"])
        for i in items
        if i["key"]["S"].endswith("#inflight") or i["key"]["S"].startswith("lane#")
    }
