"""The ECS GPU stack's scaling rules, read from infra/ecs-gpu/stack.yaml, and a CloudWatch
metric-math evaluator for the subset the stack uses (numbers, metric ids, + - * /, comparisons,
AND/OR, IF, FILL).

benchmarks/gpu_fleet.py replays simulated CloudWatch datapoints through these rules, so the
simulation follows the stack as written: change an expression, a target, a cooldown or a step in
the stack and the replay changes with it. Parameters resolve to their defaults unless given.
"""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptsvc_dev.template import load_template

Value = float | None  # one period's datapoint of a series; None: no datapoint


# ------------------------------------------------------------------------------- metric math

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?)|([A-Za-z_][A-Za-z0-9_]*)|(<=|>=|==|!=|&&|\|\||[-+*/(),<>]))")


def _tokens(expression: str) -> list[str]:
    out, position = [], 0
    while position < len(expression.rstrip()):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise ValueError(f"metric math: cannot read {expression[position:]!r}")
        out.append(match.group(match.lastindex or 0))
        position = match.end()
    return out


def _arith(op: Callable[[float, float], float]) -> Callable[[Value, Value], Value]:
    def apply(a: Value, b: Value) -> Value:
        if a is None or b is None:
            return None  # a datapoint missing from one series: none in the result
        try:
            result = op(a, b)
        except ZeroDivisionError:
            return None
        return None if math.isnan(result) else result

    return apply


_BINARY: dict[str, tuple[int, Callable[[Value, Value], Value]]] = {
    "OR": (1, _arith(lambda a, b: float(bool(a) or bool(b)))),
    "AND": (2, _arith(lambda a, b: float(bool(a) and bool(b)))),
    "<": (3, _arith(lambda a, b: float(a < b))),
    ">": (3, _arith(lambda a, b: float(a > b))),
    "<=": (3, _arith(lambda a, b: float(a <= b))),
    ">=": (3, _arith(lambda a, b: float(a >= b))),
    "==": (3, _arith(lambda a, b: float(a == b))),
    "!=": (3, _arith(lambda a, b: float(a != b))),
    "+": (4, _arith(lambda a, b: a + b)),
    "-": (4, _arith(lambda a, b: a - b)),
    "*": (5, _arith(lambda a, b: a * b)),
    "/": (5, _arith(lambda a, b: a / b)),
}
_ALIASES = {"&&": "AND", "||": "OR"}


class MetricMath:
    """One expression, parsed once, evaluated for one period at a time."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._tokens = [_ALIASES.get(t, t) for t in _tokens(expression)]
        self._at = 0
        self._tree = self._binary(0)
        if self._at != len(self._tokens):
            raise ValueError(f"metric math: unexpected {self._tokens[self._at]!r} in {expression!r}")
        self.ids = sorted(self._names(self._tree))

    def __call__(self, values: Mapping[str, Value]) -> Value:
        return self._eval(self._tree, values)

    # A tree is a number, a name, ("call", NAME, [args]) or ("op", OP, left, right).
    def _binary(self, floor: int) -> Any:
        left = self._unary()
        while self._at < len(self._tokens):
            op = self._tokens[self._at]
            if op not in _BINARY or _BINARY[op][0] < floor:
                break
            self._at += 1
            left = ("op", op, left, self._binary(_BINARY[op][0] + 1))
        return left

    def _unary(self) -> Any:
        token = self._next()
        if token == "-":
            return ("op", "-", 0.0, self._unary())
        if token == "(":
            inner = self._binary(0)
            self._expect(")")
            return inner
        if token[0].isdigit():
            return float(token)
        if self._at < len(self._tokens) and self._tokens[self._at] == "(":
            self._at += 1
            args = [self._binary(0)]
            while self._next() == ",":
                args.append(self._binary(0))
            self._at -= 1
            self._expect(")")
            if token not in ("IF", "FILL"):
                raise ValueError(f"metric math: {token} is not supported here (IF and FILL are)")
            return ("call", token, args)
        return token

    def _next(self) -> str:
        if self._at >= len(self._tokens):
            raise ValueError(f"metric math: {self.expression!r} ends early")
        self._at += 1
        return self._tokens[self._at - 1]

    def _expect(self, token: str) -> None:
        if self._next() != token:
            raise ValueError(f"metric math: {token!r} expected in {self.expression!r}")

    def _names(self, tree: Any) -> set[str]:
        if isinstance(tree, str):
            return {tree}
        if isinstance(tree, tuple):
            parts = tree[2] if tree[0] == "call" else tree[2:]
            return set().union(*(self._names(p) for p in parts))
        return set()

    def _eval(self, tree: Any, values: Mapping[str, Value]) -> Value:
        if isinstance(tree, float):
            return tree
        if isinstance(tree, str):
            if tree not in values:
                raise KeyError(f"metric math: no series {tree!r} for {self.expression!r}")
            return values[tree]
        if tree[0] == "op":
            return _BINARY[tree[1]][1](self._eval(tree[2], values), self._eval(tree[3], values))
        args = tree[2]
        if tree[1] == "FILL":
            value = self._eval(args[0], values)
            return self._eval(args[1], values) if value is None else value
        condition = self._eval(args[0], values)  # IF(condition, when true, when false)
        if condition is None:
            return None
        return self._eval(args[1] if condition else args[2], values)


# ------------------------------------------------------------------------------- the stack's rules


@dataclass(frozen=True)
class MetricQuery:
    """A metric (namespace, name, statistic) or an expression over other queries' ids."""

    id: str
    namespace: str = ""
    name: str = ""
    stat: str = ""
    expression: MetricMath | None = None
    returned: bool = False
    queue: str = ""  # the stack parameter its QueueName dimension names (PromptsBulkQueueArn, ...)


class Queries:
    """A metric-math query set (a target-tracking metric or an alarm's): `value` is its result
    for one period, given each metric's datapoint, by (namespace, name, statistic, queue
    parameter)."""

    def __init__(self, queries: list[MetricQuery]) -> None:
        self.queries = {q.id: q for q in queries}
        (self.result,) = [q for q in queries if q.returned]

    @property
    def metrics(self) -> list[MetricQuery]:
        return [q for q in self.queries.values() if q.expression is None]

    def value(self, datapoint: Callable[[str, str, str, str], Value]) -> Value:
        """None when no metric has a datapoint in the period (CloudWatch's FILL has no timestamp
        to fill then), else the returned expression's value."""
        values: dict[str, Value] = {
            q.id: datapoint(q.namespace, q.name, q.stat, q.queue) for q in self.metrics
        }
        if all(v is None for v in values.values()):
            return None
        return self._of(self.result, values)

    def _of(self, query: MetricQuery, values: dict[str, Value]) -> Value:
        if query.expression is None:
            return values[query.id]
        return query.expression({name: self._of(self.queries[name], values) for name in query.expression.ids})


@dataclass(frozen=True)
class TargetTracking:
    target: float
    scale_out_cooldown: int
    scale_in_cooldown: int
    scale_in: bool  # not DisableScaleIn
    metric: Queries


@dataclass(frozen=True)
class Step:
    lower: float | None  # bounds of (metric - threshold), as StepAdjustment has them
    upper: float | None
    adjustment: int


@dataclass(frozen=True)
class StepPolicy:
    name: str
    adjustment_type: str  # ChangeInCapacity | ExactCapacity
    cooldown: int
    steps: tuple[Step, ...]

    def step_for(self, breach: float) -> Step | None:
        for step in self.steps:
            if (step.lower is None or breach >= step.lower) and (step.upper is None or breach <= step.upper):
                return step
        return None


@dataclass(frozen=True)
class Alarm:
    name: str
    metric: Queries
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    missing: str  # TreatMissingData
    policy: StepPolicy | None

    def breaches(self, value: float) -> bool:
        return {
            "GreaterThanThreshold": value > self.threshold,
            "GreaterThanOrEqualToThreshold": value >= self.threshold,
            "LessThanThreshold": value < self.threshold,
            "LessThanOrEqualToThreshold": value <= self.threshold,
        }[self.comparison]


@dataclass(frozen=True)
class ScalingRules:
    min_tasks: int
    max_tasks: int
    target_tracking: TargetTracking
    alarms: tuple[Alarm, ...]  # the alarms that act on a step policy of the service
    concurrency: int  # WorkerConcurrency: one task's engine slots
    parameters: Mapping[str, str]


class _Resolver:
    """Parameters (defaults, or the values given) and pseudo-parameters; intrinsic functions
    other than Ref and Sub of a parameter stay as they are (dimensions, names)."""

    def __init__(self, template: dict[str, Any], overrides: Mapping[str, object]) -> None:
        self.parameters = {
            name: str(overrides.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in self.parameters:
            return self.parameters[value["Ref"]]
        if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return re.sub(
                r"\$\{([^}]+)\}", lambda m: self.parameters.get(m.group(1), m.group(0)), value["Fn::Sub"]
            )
        return value


def _queries(entries: list[dict[str, Any]], resolve: _Resolver) -> Queries:
    queries = []
    for entry in entries:
        returned = bool(entry.get("ReturnData", True))
        if "Expression" in entry:
            queries.append(
                MetricQuery(
                    entry["Id"], expression=MetricMath(resolve(entry["Expression"])), returned=returned
                )
            )
        else:
            stat = entry["MetricStat"]
            metric = stat["Metric"]
            queries.append(
                MetricQuery(
                    entry["Id"],
                    metric["Namespace"],
                    metric["MetricName"],
                    stat["Stat"],
                    None,
                    returned,
                    _queue_parameter(metric.get("Dimensions", [])),
                )
            )
    return Queries(queries)


def _queue_parameter(dimensions: list[dict[str, Any]]) -> str:
    """The parameter a QueueName dimension is made of (`!Select [5, !Split [":", !Ref P]]`)."""
    for dimension in dimensions:
        if dimension.get("Name") == "QueueName":
            refs = re.findall(r"'Ref': '([A-Za-z0-9]+)'", repr(dimension.get("Value")))
            return refs[0] if refs else ""
    return ""


def _steps(config: dict[str, Any], resolve: _Resolver) -> tuple[Step, ...]:
    def bound(value: Any) -> float | None:
        return None if value is None else float(resolve(value))

    return tuple(
        Step(
            bound(s.get("MetricIntervalLowerBound")),
            bound(s.get("MetricIntervalUpperBound")),
            int(resolve(s["ScalingAdjustment"])),
        )
        for s in config["StepAdjustments"]
    )


def load_scaling_rules(path: Path, **parameters: object) -> ScalingRules:
    """The scaling of the stack at `path`: its scalable target's bounds, its target-tracking
    policy, and each alarm whose action is one of its step policies."""
    template = load_template(path)
    resolve = _Resolver(template, parameters)
    resources: dict[str, dict[str, Any]] = template["Resources"]

    def of_type(kind: str) -> dict[str, dict[str, Any]]:
        return {name: r["Properties"] for name, r in resources.items() if r["Type"] == kind}

    ((_, target),) = of_type("AWS::ApplicationAutoScaling::ScalableTarget").items()
    policies = of_type("AWS::ApplicationAutoScaling::ScalingPolicy")
    ((_, tracking),) = [(n, p) for n, p in policies.items() if p["PolicyType"] == "TargetTrackingScaling"]
    config = tracking["TargetTrackingScalingPolicyConfiguration"]
    steps = {
        name: StepPolicy(
            name,
            p["StepScalingPolicyConfiguration"]["AdjustmentType"],
            int(resolve(p["StepScalingPolicyConfiguration"].get("Cooldown", 300))),
            _steps(p["StepScalingPolicyConfiguration"], resolve),
        )
        for name, p in policies.items()
        if p["PolicyType"] == "StepScaling"
    }
    alarms = []
    for name, alarm in of_type("AWS::CloudWatch::Alarm").items():
        actions = [a["Ref"] for a in alarm.get("AlarmActions", []) if isinstance(a, dict) and "Ref" in a]
        acting = [steps[a] for a in actions if a in steps]
        if not acting:
            continue
        periods = {int(m["MetricStat"]["Period"]) for m in alarm["Metrics"] if "MetricStat" in m}
        evaluation = int(resolve(alarm["EvaluationPeriods"]))
        alarms.append(
            Alarm(
                name,
                _queries(alarm["Metrics"], resolve),
                periods.pop() if len(periods) == 1 else 60,
                evaluation,
                int(resolve(alarm.get("DatapointsToAlarm", evaluation))),
                float(resolve(alarm["Threshold"])),
                alarm["ComparisonOperator"],
                alarm.get("TreatMissingData", "missing"),
                acting[0],
            )
        )
    return ScalingRules(
        min_tasks=int(resolve(target["MinCapacity"])),
        max_tasks=int(resolve(target["MaxCapacity"])),
        target_tracking=TargetTracking(
            float(resolve(config["TargetValue"])),
            int(resolve(config.get("ScaleOutCooldown", 300))),
            int(resolve(config.get("ScaleInCooldown", 300))),
            str(resolve(config.get("DisableScaleIn", False))).lower() != "true",
            _queries(config["CustomizedMetricSpecification"]["Metrics"], resolve),
        ),
        alarms=tuple(alarms),
        concurrency=int(resolve.parameters.get("WorkerConcurrency", "32")),
        parameters=resolve.parameters,
    )
