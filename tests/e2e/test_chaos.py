"""Chaos, small: 100 prompts through `promptsvc dev --chaos all` (every fault at once: engine
errors, stalls, cut streams, slow first tokens, killed consumers, duplicate deliveries, throttled
DynamoDB, gone WebSocket connections), then every invariant of dev/promptsvc_dev/chaos_check.py holds. The
1,000-prompt run, and its figures, is benchmarks/chaos.py."""

from pathlib import Path

from promptsvc_dev.chaos_check import check
from promptsvc_dev.chaos_load import ChaosClient, Workload, attempt_log, dev_environment

from tests.e2e.conftest import ADMIN_KEY, dev_server

PROMPTS = 100


def test_every_invariant_holds_with_every_fault_on(tmp_path: Path) -> None:
    env = {"PROMPTSVC_CHAOS": "all,seed=3", **dev_environment(tmp_path)}
    with dev_server(mock_chunk_delay=0.05, env=env) as server:
        workload = Workload(prompts=PROMPTS, per_thread=5, workers=8, seed=3, drain_seconds=240)
        run = ChaosClient(server.base_url, ADMIN_KEY, server.ws_url).run(workload, attempt_log(tmp_path))
    report = check(run.observed)
    report.violations.extend(run.ws_violations)

    assert len(run.observed.submitted) == PROMPTS, run.figures
    assert run.observed.attempts, "the mock engine recorded no attempt"
    assert report.lost == 0, "\n".join(report.summary())
    assert report.double_answers == 0, "\n".join(report.summary())
    assert report.violations == [], "\n".join(report.summary())
