"""The ECS worker's PromptsRunning metric (consumer/fleet_metrics.py): one EMF document a minute,
the minute's mean count, stamped with the minute, on the series infra/ecs-gpu/stack.yaml reads."""

import asyncio
import json
import time
from typing import Any

import pytest
from promptsvc.consumer.fleet_metrics import METRIC_NAME, FleetMetrics, queue_name

START = int(time.time()) // 60 * 60 - 600  # a minute's start, recent (CloudWatch takes 14 days back)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emf(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "promptsvc")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "promptsvc")
    capsys.readouterr()

    def documents() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]

    return documents


def test_each_finished_minute_publishes_its_mean_stamped_with_the_minute(emf: Any) -> None:
    clock = Clock(float(START))
    metrics = FleetMetrics("promptsvc-prompts", clock=clock)
    for seconds, count in [(0, 2), (20, 4), (40, 6)]:
        clock.now = float(START) + seconds
        metrics.sample(count)
    assert emf() == []  # the minute is not over

    clock.now = START + 61.0
    metrics.sample(32)

    (document,) = emf()
    assert document[METRIC_NAME] == [4.0]  # (2 + 4 + 6) / 3
    assert document["_aws"]["Timestamp"] == START * 1000
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "promptsvc"
    assert directive["Metrics"] == [{"Name": METRIC_NAME, "Unit": "Count"}]
    assert [sorted(d) for d in directive["Dimensions"]] == [["QueueName", "service"]]
    assert (document["QueueName"], document["service"]) == ("promptsvc-prompts", "promptsvc")


def test_one_datapoint_per_minute_and_none_for_a_minute_without_samples(emf: Any) -> None:
    clock = Clock(float(START))
    metrics = FleetMetrics("q", clock=clock)
    for seconds, count in [(0, 1), (59, 3), (60, 5), (300, 0)]:
        clock.now = float(START) + seconds
        metrics.sample(count)

    stamps = [(d["_aws"]["Timestamp"] // 1000 - START, d[METRIC_NAME]) for d in emf()]
    assert stamps == [(0, [2.0]), (60, [5.0])]  # minutes 2 to 4 had no sample: no datapoint


def test_nothing_is_written_when_metrics_are_disabled(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    clock = Clock(float(START))
    metrics = FleetMetrics("q", clock=clock)
    metrics.sample(3)
    clock.now += 60
    metrics.sample(3)
    assert METRIC_NAME not in capsys.readouterr().out


def test_run_samples_the_count_it_is_given_until_cancelled(emf: Any) -> None:
    clock = Clock(float(START))
    metrics = FleetMetrics("q", sample_seconds=0, clock=clock)
    counts = iter([7, 7, 9])

    def count() -> int:
        value = next(counts, None)
        if value is None:
            raise asyncio.CancelledError
        clock.now += 30  # two samples a minute
        return value

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(metrics.run(count))
    assert [d[METRIC_NAME] for d in emf()] == [[7.0]]


def test_the_queue_name_is_the_last_part_of_its_url() -> None:
    assert queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/promptsvc-prompts") == (
        "promptsvc-prompts"
    )
