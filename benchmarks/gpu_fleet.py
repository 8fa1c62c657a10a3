"""GPU task-hours of the ECS worker fleet over a simulated day, against the ideal (target <= 1.3),
and no task added during an engine outage (target 0).

The scaling rules come from infra/ecs-gpu/stack.yaml as written (dev/promptsvc_dev/scaling_rules.py
reads them): the target-tracking policy's metric math, target and cooldowns, every alarm that
drives a step policy (its metric math, threshold, evaluation periods, missing-data treatment) and
that policy's steps and cooldown, and MinTasks/MaxTasks/WorkerConcurrency, at their defaults unless
`--set NAME=VALUE` overrides one. They are evaluated each minute on simulated CloudWatch
datapoints of the finished minutes:

- AWS/SQS ApproximateNumberOfMessagesVisible / NotVisible (waiting; held by a worker or waiting out
  a retry's backoff), per minute Average/Minimum/Maximum of 5 s samples. SQS stops publishing a
  queue's metrics after 6 h without activity (no message, no receive: a fleet at zero) and resumes
  them `--sqs-resume-minutes` after new activity.
- promptsvc PromptsRunning (consumer/fleet_metrics.py): each ready task's mean count of prompts
  held over the minute, one datapoint per task; the Sum over tasks. None when no task is ready.
- ECS/ContainerInsights DesiredTaskCount and RunningTaskCount.
Datapoints reach the alarms `--metric-lag-minutes` after their minute ends.

What Application Auto Scaling does with them, as modelled here (AWS documents the behaviour, not
the algorithm): target tracking scales out when 3 consecutive datapoints are above the target, to
ceil(desired x metric / target), and in when 15 are below 90 % of it, to the same formula, at most
once per scale-in cooldown. A step policy applies while its alarm is in ALARM (N of M datapoints
breaching), once a minute: ChangeInCapacity adds nothing within its cooldown (the capacity its last
activity added counts), ExactCapacity scaling in waits out its cooldown.

The fleet: a task asked for runs `--task-start-minutes` (instance launch, image pull) then
`--model-load-minutes` (vLLM loads the model) before its worker receives; it then holds up to
WorkerConcurrency prompts generating (`--generation-seconds` each) plus a quarter as many claimed
ahead. ECS stops starting tasks first, then idle ones; a busy task is scale-in protected and stops
once idle. GPU time counts from a task asked for to its stop. During the outage every attempt
fails after `--fail-seconds` and its message waits out the consumer's own backoff
(promptsvc.domain.retry.backoff_seconds by receive count) before it is visible again; a prompt
past its retries is abandoned. The ideal is the generation time of the prompts answered divided by
one task's WorkerConcurrency.

The load, per day (prompts a minute, Poisson): a quiet night with a stray prompt or two, a ramp
from 07:00, a busy morning with a batch burst, a lunch lull with no prompts at all (the fleet goes
to zero), a busier afternoon with a larger burst, a falling evening. The engine outage is on the
first day at `--outage-at` for `--outage-minutes`. "First prompt after a quiet period": a prompt
that arrives while no task is asked for; its wait is until its generation starts.

Run from the repository root: `.venv/bin/python benchmarks/gpu_fleet.py` (`--help`). It takes no
AWS and a few seconds a simulated day.
"""

import argparse
import collections
import heapq
import itertools
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from promptsvc.domain.prompt import DEFAULT_MAX_RETRIES
from promptsvc.domain.retry import backoff_seconds
from promptsvc_dev.scaling_rules import Alarm, ScalingRules, StepPolicy, Value, load_scaling_rules

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "infra" / "ecs-gpu" / "stack.yaml"
TARGET_RATIO = 1.3
TICK = 5.0  # seconds
SQS_INACTIVE_SECONDS = 6 * 3600
TRACKING_OUT_POINTS, TRACKING_IN_POINTS, TRACKING_IN_SHARE = 3, 15, 0.9

# (from hour, prompts a minute) until the next entry; bursts: (hour, prompts, minutes).
PROFILE = [
    (0.0, 0.005),  # a stray prompt now and then
    (7.0, 40.0),
    (7.5, 120.0),
    (8.0, 230.0),
    (12.0, 0.0),  # lunch: nothing at all
    (12.75, 270.0),
    (17.0, 160.0),
    (19.0, 60.0),
    (21.0, 0.005),
]
BURSTS = [(10.5, 1500, 2), (15.5, 3000, 5)]


@dataclass
class Prompt:
    arrived: float
    attempts: int = 0
    first_started: float | None = None
    cold: bool = False  # arrived while no task was asked for


@dataclass
class Task:
    asked: float
    ready_at: float
    generating: list[tuple[float, int, Prompt, bool]] = field(default_factory=list)  # heap by end
    waiting: collections.deque[Prompt] = field(default_factory=collections.deque)
    samples: list[int] = field(default_factory=list)  # this minute's counts of prompts running

    @property
    def held(self) -> int:
        return len(self.generating) + len(self.waiting)


@dataclass
class Minute:
    """The samples of one minute, for its datapoints."""

    visible: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    desired: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    prompts_running: float | None = None
    sqs_published: bool = True


def stat(samples: list[int], name: str) -> Value:
    if not samples:
        return None
    if name == "Average":
        return sum(samples) / len(samples)
    if name == "Maximum":
        return float(max(samples))
    if name == "Minimum":
        return float(min(samples))
    if name == "Sum":
        return float(sum(samples))
    raise ValueError(f"statistic {name} is not simulated")


def datapoint(minute: Minute, namespace: str, name: str, statistic: str, queue: str = "") -> Value:
    if namespace == "AWS/SQS":
        if not minute.sqs_published:
            return None
        if queue == "PromptsBulkQueueArn":  # every simulated prompt is on the fast lane
            return 0.0
        series = {
            "ApproximateNumberOfMessagesVisible": minute.visible,
            "ApproximateNumberOfMessagesNotVisible": minute.hidden,
        }[name]
        return stat(series, statistic)
    if namespace == "ECS/ContainerInsights":
        return stat({"DesiredTaskCount": minute.desired, "RunningTaskCount": minute.running}[name], statistic)
    if name == "PromptsRunning":
        return minute.prompts_running  # already the Sum over tasks (one datapoint each)
    raise ValueError(f"the stack reads {namespace}/{name}, which the simulation does not produce")


def poisson(rng: random.Random, mean: float) -> int:
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def rate_at(hour: float) -> float:
    rate = 0.0
    for start, per_minute in PROFILE:
        if hour >= start:
            rate = per_minute
    return rate


@dataclass
class Options:
    days: int
    seed: int
    task_start: float
    model_load: float
    generation: float
    fail: float
    lag_minutes: int
    sqs_resume: float
    outage_at: float
    outage_minutes: float


class Fleet:
    def __init__(self, rules: ScalingRules, options: Options) -> None:
        self.rules = rules
        self.o = options
        self.rng = random.Random(options.seed)
        self.concurrency = rules.concurrency
        self.ahead = min(8, self.concurrency // 4)  # consumer/worker.py's prefetch
        self.visible: collections.deque[Prompt] = collections.deque()
        self.backoff: list[tuple[float, int, Prompt]] = []
        self.tasks: list[Task] = []
        self.desired = rules.min_tasks
        self.seq = itertools.count()
        self.minutes: list[Minute] = [Minute()]
        self.task_seconds = 0.0
        self.work_seconds = 0.0
        self.answered = self.abandoned = self.failed_attempts = 0
        self.cold_waits: list[float] = []
        self.waits: list[float] = []  # every prompt's, until its first attempt starts
        self.quiet = self.desired == 0  # at zero, and no prompt has arrived since
        self.hourly: collections.Counter[tuple[int, str]] = collections.Counter()
        self.added: list[tuple[float, int]] = []  # (time, tasks added)
        self.last_activity = 0.0
        self.sqs_back_at = 0.0  # SQS metrics resume then (after an inactive spell)
        self.tracking_out_at = self.tracking_in_at = -math.inf
        self.policy_at: dict[str, float] = {}
        self.outage = (options.outage_at * 3600, options.outage_at * 3600 + options.outage_minutes * 60)

    # ---------------------------------------------------------------------------- the fleet
    def arrive(self, now: float) -> None:
        day_hour = (now % 86400) / 3600
        count = poisson(self.rng, rate_at(day_hour) * TICK / 60)
        for hour, prompts, minutes in BURSTS:
            if hour * 3600 <= now % 86400 < hour * 3600 + minutes * 60:
                count += poisson(self.rng, prompts / (minutes * 60 / TICK))
        for _ in range(count):
            cold = self.desired == 0 and not self.tasks and self.quiet
            self.quiet = self.quiet and not cold
            self.visible.append(Prompt(now, cold=cold))

    def engine_down(self, now: float) -> bool:
        return self.outage[0] <= now < self.outage[1]

    def work_tasks(self, now: float) -> None:
        """Each ready task settles the attempts that ended by `now` and starts the next in the
        freed slot at once (a failing attempt frees its slot within the tick), then fills up."""
        order = self.tasks[:]
        self.rng.shuffle(order)  # the workers' long polls race for the messages
        for task in order:
            if now < task.ready_at:
                continue
            while task.generating and task.generating[0][0] <= now:
                end, _, prompt, ok = heapq.heappop(task.generating)
                self.settle(prompt, end, ok)
                self.fill(task, end)
            self.fill(task, now)

    def settle(self, prompt: Prompt, end: float, ok: bool) -> None:
        if ok:
            self.answered += 1
            self.work_seconds += self.o.generation
            self.hourly[(int(end // 3600), "work")] += self.o.generation
        elif prompt.attempts > DEFAULT_MAX_RETRIES:
            self.abandoned += 1
        else:
            ready = end + backoff_seconds(prompt.attempts, uniform=self.rng.uniform)
            heapq.heappush(self.backoff, (ready, next(self.seq), prompt))

    def fill(self, task: Task, at: float) -> None:
        """Receive up to the slots plus the prefetch, and start what the free slots take."""
        while len(task.waiting) < self.concurrency + self.ahead - len(task.generating) and self.visible:
            task.waiting.append(self.visible.popleft())
        while task.waiting and len(task.generating) < self.concurrency:
            prompt = task.waiting.popleft()
            prompt.attempts += 1
            if prompt.first_started is None:
                prompt.first_started = at
                self.waits.append(at - prompt.arrived)
                if prompt.cold:
                    self.cold_waits.append(at - prompt.arrived)
            down = self.engine_down(at)
            self.failed_attempts += down
            end = at + (self.o.fail if down else self.o.generation)
            heapq.heappush(task.generating, (end, next(self.seq), prompt, not down))

    def back_from_backoff(self, now: float) -> None:
        while self.backoff and self.backoff[0][0] <= now:
            self.visible.append(heapq.heappop(self.backoff)[2])

    def place(self, now: float) -> None:
        """ECS brings the running tasks to the desired count: starts tasks, or stops the starting
        ones first, then idle ones (a busy task is protected until it is idle)."""
        while len(self.tasks) < self.desired:
            self.tasks.append(Task(now, now + (self.o.task_start + self.o.model_load) * 60))
        surplus = len(self.tasks) - self.desired
        if surplus > 0:
            order = sorted(self.tasks, key=lambda t: (t.ready_at <= now, t.held))
            for task in order[:surplus]:
                if task.ready_at > now or task.held == 0:
                    self.tasks.remove(task)

    def sample(self, now: float) -> None:
        minute = self.minutes[-1]
        hidden = sum(t.held for t in self.tasks) + len(self.backoff)
        minute.visible.append(len(self.visible))
        minute.hidden.append(hidden)
        minute.desired.append(self.desired)
        minute.running.append(sum(1 for t in self.tasks if now >= t.ready_at - self.o.model_load * 60))
        for task in self.tasks:
            if now >= task.ready_at:
                task.samples.append(len(task.generating))
        active = bool(self.visible or hidden or any(now >= t.ready_at for t in self.tasks))
        if active:
            if now - self.last_activity > SQS_INACTIVE_SECONDS:
                self.sqs_back_at = now + self.o.sqs_resume * 60
            self.last_activity = now
        minute.sqs_published = now >= self.sqs_back_at and now - self.last_activity <= SQS_INACTIVE_SECONDS
        self.task_seconds += len(self.tasks) * TICK
        self.hourly[(int(now // 3600), "tasks")] += len(self.tasks) * TICK

    def close_minute(self) -> None:
        minute = self.minutes[-1]
        means = [sum(t.samples) / len(t.samples) for t in self.tasks if t.samples]
        minute.prompts_running = sum(means) if means else None
        for task in self.tasks:
            task.samples = []
        self.minutes.append(Minute())

    # ---------------------------------------------------------------------------- the rules
    def series(
        self, value: Callable[[Callable[[str, str, str, str], Value]], Value], count: int
    ) -> list[Value]:
        """The last `count` datapoints the alarms can see now, oldest first."""
        last = len(self.minutes) - 2 - self.o.lag_minutes  # minutes[-1] is still being sampled
        points = []
        for index in range(last - count + 1, last + 1):
            if index < 0:
                points.append(None)
                continue
            minute = self.minutes[index]
            points.append(value(lambda ns, name, st, q, m=minute: datapoint(m, ns, name, st, q)))
        return points

    def measured_capacity(self) -> int:
        """The desired count during the latest minute the alarms can see."""
        minute = self.minutes[max(0, len(self.minutes) - 2 - self.o.lag_minutes)]
        return max(minute.desired, default=self.desired)

    def set_desired(self, now: float, desired: int) -> bool:
        desired = max(self.rules.min_tasks, min(self.rules.max_tasks, desired))
        if desired == self.desired:
            return False
        if desired > self.desired:
            self.added.append((now, desired - self.desired))
        self.desired = desired
        self.quiet = self.quiet or desired == 0
        return True

    def scale(self, now: float) -> None:
        tracking = self.rules.target_tracking
        points = self.series(tracking.metric.value, TRACKING_IN_POINTS)
        latest = points[-1]
        if latest is not None and self.desired > 0:
            # Within the scale-out cooldown the tasks the last scale-out added count as there:
            # the capacity the datapoint saw is scaled, not the one asked for since.
            cooling = now - self.tracking_out_at < tracking.scale_out_cooldown
            capacity = self.measured_capacity() if cooling else self.desired
            wanted = math.ceil(capacity * latest / tracking.target - 1e-9)
            high = all(p is not None and p > tracking.target for p in points[-TRACKING_OUT_POINTS:])
            low = all(p is not None and p < TRACKING_IN_SHARE * tracking.target for p in points)
            if high and wanted > self.desired:
                if self.set_desired(now, wanted):
                    self.tracking_out_at = now
            elif (
                tracking.scale_in
                and low
                and wanted < self.desired
                and now - self.tracking_in_at >= tracking.scale_in_cooldown
                and self.set_desired(now, wanted)
            ):
                self.tracking_in_at = now
        for alarm in self.rules.alarms:
            self.evaluate(now, alarm)

    def evaluate(self, now: float, alarm: Alarm) -> None:
        points = self.series(alarm.metric.value, alarm.evaluation_periods)
        breaching = 0
        for point in points:
            if point is None:
                breaching += alarm.missing == "breaching"
            else:
                breaching += alarm.breaches(point)
        if breaching < alarm.datapoints_to_alarm or alarm.policy is None:
            return
        latest = points[-1]
        self.apply(now, alarm.policy, (alarm.threshold if latest is None else latest) - alarm.threshold)

    def apply(self, now: float, policy: StepPolicy, breach: float) -> None:
        step = policy.step_for(breach)
        if step is None:
            return
        within = now - self.policy_at.get(policy.name, -math.inf) < policy.cooldown
        if policy.adjustment_type == "ChangeInCapacity":
            wanted = self.desired + step.adjustment
        elif policy.adjustment_type == "ExactCapacity":
            wanted = step.adjustment
        else:
            raise ValueError(f"{policy.name}: {policy.adjustment_type} is not simulated")
        if within:  # scale-out: the last activity's tasks count; scale-in: blocked
            return
        if self.set_desired(now, wanted):
            self.policy_at[policy.name] = now

    # ---------------------------------------------------------------------------- the run
    def run(self) -> None:
        end = self.o.days * 86400
        now = 0.0
        while now < end or self.visible or self.backoff or any(t.held for t in self.tasks):
            if now < end:
                self.arrive(now)
            self.back_from_backoff(now)
            self.place(now)
            self.work_tasks(now)
            self.sample(now)
            now += TICK
            if now % 60 == 0:
                self.close_minute()
                self.scale(now)
        # after the last prompt: the tasks still running stop as the rules say (the quiet period)
        while self.tasks and now < end + 6 * 3600:
            self.place(now)
            self.sample(now)
            now += TICK
            if now % 60 == 0:
                self.close_minute()
                self.scale(now)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--task-start-minutes", type=float, default=4.0, help="instance launch, image pull")
    parser.add_argument("--model-load-minutes", type=float, default=3.0, help="vLLM loading the model")
    parser.add_argument("--generation-seconds", type=float, default=24.0, help="one prompt, in a full batch")
    parser.add_argument("--fail-seconds", type=float, default=2.0, help="a failing attempt during the outage")
    parser.add_argument("--metric-lag-minutes", type=int, default=1)
    parser.add_argument("--sqs-resume-minutes", type=float, default=15.0, help="after 6 h without activity")
    parser.add_argument("--outage-at", type=float, default=19.5, help="hour of the first day")
    parser.add_argument("--outage-minutes", type=float, default=10.0)
    parser.add_argument("--stack", type=Path, default=STACK, help="another version of the stack, to compare")
    parser.add_argument(
        "--set", action="append", default=[], metavar="PARAMETER=VALUE", help="a stack parameter"
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    rules = load_scaling_rules(args.stack, **overrides)
    options = Options(
        args.days,
        args.seed,
        args.task_start_minutes,
        args.model_load_minutes,
        args.generation_seconds,
        args.fail_seconds,
        args.metric_lag_minutes,
        args.sqs_resume_minutes,
        args.outage_at,
        args.outage_minutes,
    )
    fleet = Fleet(rules, options)
    fleet.run()

    ideal_hours = fleet.work_seconds / rules.concurrency / 3600
    task_hours = fleet.task_seconds / 3600
    ratio = task_hours / ideal_hours
    start, stop = fleet.outage
    # Added during the outage: by a decision whose datapoints (target tracking's last 3) include a
    # minute of the outage. Later ones answer the backlog the outage left, which can run by then.
    reaction_end = stop + (args.metric_lag_minutes + TRACKING_OUT_POINTS) * 60
    during = sum(n for t, n in fleet.added if start <= t < reaction_end)
    around = [f"{t % 86400 / 3600:.2f} h +{n}" for t, n in fleet.added if start - 1800 <= t < stop + 1800]
    tracking = rules.target_tracking
    print(
        f"stack: {args.stack}: MinTasks {rules.min_tasks}, MaxTasks {rules.max_tasks}, "
        f"WorkerConcurrency {rules.concurrency}, target {tracking.target:g} "
        f"(scale-out cooldown {tracking.scale_out_cooldown} s, scale-in "
        f"{f'cooldown {tracking.scale_in_cooldown} s' if tracking.scale_in else 'off'}), "
        f"step alarms: {', '.join(a.name for a in rules.alarms) or 'none'}"
    )
    result = tracking.metric.result
    print(f"  target tracking metric: {result.expression.expression if result.expression else result.id}")
    print(
        f"fleet: task start {args.task_start_minutes:g} min + model load {args.model_load_minutes:g} min, "
        f"{args.generation_seconds:g} s a prompt "
        f"({rules.concurrency / args.generation_seconds * 60:.0f} prompts/min a task), "
        f"metric lag {args.metric_lag_minutes} min, "
        f"SQS metrics back {args.sqs_resume_minutes:g} min after 6 h idle"
    )
    print(
        f"{args.days} day(s), seed {args.seed}: {fleet.answered} prompts answered, "
        f"{fleet.abandoned} abandoned, "
        f"{fleet.failed_attempts} failed attempts in the {args.outage_minutes:g}-minute outage"
    )
    print(f"GPU task-hours {task_hours:.1f}, ideal {ideal_hours:.1f} (work / one task's throughput)")
    print(
        f"first prompt after a quiet period ({len(fleet.cold_waits)}): wait p50 "
        f"{percentile(fleet.cold_waits, 0.5) / 60:.1f} min, "
        f"p99 {percentile(fleet.cold_waits, 0.99) / 60:.1f} min"
    )
    print(
        f"every prompt's wait for its first attempt: p50 {percentile(fleet.waits, 0.5):.0f} s, "
        f"p99 {percentile(fleet.waits, 0.99) / 60:.1f} min"
    )
    print(
        f"tasks asked for: {sum(n for _, n in fleet.added)} in all; "
        f"within 30 min of the outage: {', '.join(around) or 'none'}"
    )
    print(
        f"GPU task-hours / ideal {ratio:.2f} (target <= {TARGET_RATIO}), "
        f"tasks added during the outage: {during} (target 0)"
    )
    return 0 if ratio <= TARGET_RATIO and during == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
