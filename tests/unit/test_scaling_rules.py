"""dev/promptsvc_dev/scaling_rules.py: the metric-math subset the ECS stack uses, and the rules
benchmarks/gpu_fleet.py replays, read from infra/ecs-gpu/stack.yaml itself."""

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from promptsvc_dev.scaling_rules import MetricMath, Value, load_scaling_rules
from promptsvc_dev.template import load_template

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra" / "ecs-gpu" / "stack.yaml"


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        ("1 + 2 * 3 - 4 / 2", {}, 5.0),
        ("(1 + 2) * 3", {}, 9.0),
        ("a / b", {"a": 6.0, "b": 3.0}, 2.0),
        ("a / b", {"a": 6.0, "b": 0.0}, None),  # no datapoint, as CloudWatch gives none
        ("a + b", {"a": 1.0, "b": None}, None),
        ("FILL(a, 0) + FILL(b, 0)", {"a": 1.0, "b": None}, 1.0),
        ("IF(a > 1, a, 1)", {"a": 0.0}, 1.0),
        ("IF(a > 1, a, 1)", {"a": 3.0}, 3.0),
        ("IF(a > 0 AND b <= 0, 1, 0)", {"a": 2.0, "b": 0.0}, 1.0),
        ("IF(a > 0 && b <= 0, 1, 0)", {"a": 2.0, "b": 1.0}, 0.0),
        ("IF(a > 0 OR b > 0, 1, 0)", {"a": 0.0, "b": 1.0}, 1.0),
        ("-a + 2", {"a": 1.0}, 1.0),
    ],
)
def test_metric_math(expression: str, values: dict[str, Value], expected: Value) -> None:
    assert MetricMath(expression)(values) == expected


def test_functions_the_evaluator_does_not_know_are_refused() -> None:
    with pytest.raises(ValueError, match="RATE"):
        MetricMath("RATE(a)")


def tracking_metric(stack: dict[str, Any]) -> list[dict[str, Any]]:
    policy = stack["Resources"]["BacklogPerTaskScaling"]["Properties"]
    metrics: list[dict[str, Any]] = policy["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]["Metrics"]
    return metrics


def test_the_rules_are_the_stacks_own_expressions_and_values() -> None:
    stack = load_template(STACK)
    rules = load_scaling_rules(STACK)

    expressions = {m["Id"]: m["Expression"] for m in tracking_metric(stack) if "Expression" in m}
    for query in rules.target_tracking.metric.queries.values():
        if query.expression is not None:
            assert query.expression.expression == expressions[query.id]
    parameters = stack["Parameters"]
    assert rules.target_tracking.target == float(parameters["TargetBacklogPerTask"]["Default"])
    assert rules.min_tasks == int(parameters["MinTasks"]["Default"])
    assert rules.max_tasks == int(parameters["MaxTasks"]["Default"])
    assert rules.concurrency == int(parameters["WorkerConcurrency"]["Default"])
    acting = {
        name
        for name, r in stack["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and any(
            stack["Resources"].get(a.get("Ref", ""), {}).get("Type")
            == "AWS::ApplicationAutoScaling::ScalingPolicy"
            for a in r["Properties"].get("AlarmActions", [])
            if isinstance(a, dict)
        )
    }
    assert {a.name for a in rules.alarms} == acting
    quiet = next(a for a in rules.alarms if a.policy and a.policy.name == "StopLastTaskScaling")
    assert quiet.evaluation_periods == int(parameters["ScaleInQuietMinutes"]["Default"])
    assert load_scaling_rules(STACK, ScaleInQuietMinutes=45).alarms != rules.alarms  # parameters apply


def test_changing_the_stack_changes_what_the_benchmark_replays(tmp_path: Path) -> None:
    """The benchmark evaluates the file, not a copy of its formula: edit the expression and the
    value the replay reads changes with it."""
    text = STACK.read_text()
    edited = tmp_path / "stack.yaml"
    assert "Expression: work / IF(" in text
    edited.write_text(text.replace("Expression: work / IF(", "Expression: 2 * work / IF("))

    def metric(path: Path) -> Value:
        datapoints = {
            "ApproximateNumberOfMessagesVisible": 30.0,
            "PromptsRunning": 50.0,
            "DesiredTaskCount": 2.0,
        }
        return load_scaling_rules(path).target_tracking.metric.value(
            lambda _ns, name, _stat, queue: 0.0 if queue == "PromptsBulkQueueArn" else datapoints[name]
        )

    assert metric(STACK) == 40.0  # (30 + 50) / 2
    assert metric(edited) == 80.0

    spec = importlib.util.spec_from_file_location("gpu_fleet", ROOT / "benchmarks" / "gpu_fleet.py")
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert benchmark.STACK == STACK  # and it replays the rules load_scaling_rules reads from it
    assert benchmark.load_scaling_rules is load_scaling_rules
