"""The invariants a chaos run (benchmarks/chaos.py, tests/e2e/test_chaos.py) must keep, checked
over what it observed: the prompts as stored after the drain, each thread's stored events, and
every attempt the mock engine recorded (engines/mock.py).

1. every accepted prompt that was not removed is terminal (`lost`: missing or never terminal);
2. nothing is `running` after the drain;
3. `runCount <= maxRetries + 1`;
4. a completed prompt has exactly one answer (`double answer`: more than one `completed` event),
   equal to what the engine produced in its last attempt, which finished;
5. each thread's events are gapless: seq 1..n, each once, and none a `gap` (the event log's filler
   for a seq whose write never landed: a lost event);
6. replaying a completed prompt's events (its deltas after its last `reset`) gives its answer;
7. a prompt's last event is a terminal status event (removed prompts included), the stored
   status for a prompt that was not removed.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from promptsvc.domain.template import render
from promptsvc.engines.mock import prompt_key

TERMINAL = frozenset({"completed", "abandoned", "canceled"})
# A removed prompt's last event may name its removal instead.
TERMINAL_EVENT = TERMINAL | {"removed"}


@dataclass(frozen=True)
class Submitted:
    """A prompt the run added (the API accepted it)."""

    id: str
    user: str
    thread: str
    removed: bool = False


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str  # a prompt id or a thread
    detail: str


@dataclass
class Observed:
    submitted: list[Submitted]
    stored: dict[str, dict[str, Any] | None]  # prompt id -> the prompt after the drain (None: 404)
    events: dict[tuple[str, str], list[dict[str, Any]]]  # (user, thread) -> its events, as paged
    attempts: list[dict[str, Any]]  # the mock engine's attempt records


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    lost: int = 0
    double_answers: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    def count(self) -> Counter[str]:
        return Counter(v.invariant for v in self.violations)

    def summary(self, examples: int = 3) -> list[str]:
        """One line per violated invariant with how often, then a few examples of each."""
        lines = []
        by_kind: dict[str, list[Violation]] = defaultdict(list)
        for violation in self.violations:
            by_kind[violation.invariant].append(violation)
        for kind, found in sorted(by_kind.items(), key=lambda item: -len(item[1])):
            lines.append(f"  {kind}: {len(found)}")
            lines.extend(f"    {v.subject}: {v.detail}" for v in found[:examples])
        return lines


def _attempts_by_key(attempts: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for attempt in attempts:
        by_key[attempt["key"]].append(attempt)
    for found in by_key.values():
        found.sort(key=lambda a: a["attempt"])
    return by_key


def _short(text: str | None, size: int = 60) -> str:
    text = text or ""
    return repr(text if len(text) <= size else text[:size] + f"...({len(text)} chars)")


def check(observed: Observed) -> Report:
    report = Report()
    add = report.violations.append
    by_key = _attempts_by_key(observed.attempts)
    per_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (_user, thread), events in sorted(observed.events.items()):
        seqs = [int(e.get("seq") or 0) for e in events]
        if seqs != list(range(1, len(seqs) + 1)):
            dupes = sorted(s for s, n in Counter(seqs).items() if n > 1)
            missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
            detail = f"{len(seqs)} events, missing {missing[:10]}" + (
                f", repeated {dupes[:10]}" if dupes else ""
            )
            add(Violation("events not gapless", thread, detail))
        for event in events:
            if event.get("type") == "gap":
                add(Violation("event lost (a gap filler)", thread, f"seq {event.get('seq')}"))
                continue
            per_prompt[event.get("promptId", "")].append(event)

    statuses: Counter[str] = Counter()
    for item in observed.submitted:
        prompt = observed.stored.get(item.id)
        events = per_prompt.get(item.id, [])
        completed_events = sum(
            1 for e in events if e.get("type") == "status" and e.get("status") == "completed"
        )
        if completed_events > 1:
            report.double_answers += 1
            add(Violation("double answer", item.id, f"{completed_events} completed events"))
        last = events[-1] if events else None
        last_status = last.get("status") if last and last.get("type") == "status" else None
        if item.removed:
            statuses["removed"] += 1
            if last_status not in TERMINAL_EVENT:
                seen = "no events" if last is None else f"last event {last.get('type')} {last_status or ''}"
                add(Violation("removed prompt's thread not ended", item.id, seen.strip()))
            continue
        if prompt is None:
            report.lost += 1
            add(Violation("lost", item.id, "accepted, then missing (404) after the drain"))
            continue
        status = prompt.get("status", "")
        statuses[status] += 1
        if status not in TERMINAL:
            report.lost += 1
            add(
                Violation(
                    "not terminal", item.id, f"{status} after the drain (runCount {prompt.get('runCount')})"
                )
            )
            if status == "running":
                add(Violation("running after the drain", item.id, f"runCount {prompt.get('runCount')}"))
        run_count, max_retries = int(prompt.get("runCount", 0)), int(prompt.get("maxRetries", 0))
        if run_count > max_retries + 1:
            add(
                Violation(
                    "runCount > maxRetries + 1", item.id, f"runCount {run_count}, maxRetries {max_retries}"
                )
            )
        if last_status != status:
            seen = "no events" if last is None else f"last event {last.get('type')} {last_status or ''}"
            add(Violation("last event is not the stored status", item.id, f"{status}; {seen.strip()}"))
        if status != "completed":
            continue
        answer = prompt.get("answer") or ""
        runs = by_key.get(prompt_key(render(prompt.get("template", ""), prompt.get("prompt", ""))), [])
        if not runs:
            add(Violation("answer is not the engine's last attempt", item.id, "the engine has no attempt"))
        elif not runs[-1]["finished"] or runs[-1]["produced"] != answer:
            final = runs[-1]
            detail = (
                f"stored {_short(answer)}; attempt {final['attempt']} ({final['fault']}, "
                f"finished={final['finished']}) produced {_short(final['produced'])}"
            )
            add(Violation("answer is not the engine's last attempt", item.id, detail))
        resets = [i for i, e in enumerate(events) if e.get("type") == "reset"]
        tail = events[resets[-1] + 1 :] if resets else events
        replayed = "".join(e.get("text") or "" for e in tail if e.get("type") == "delta")
        if replayed != answer:
            detail = f"stored {_short(answer)}, replayed {_short(replayed)}"
            add(Violation("replayed events are not the answer", item.id, detail))
    report.figures = {
        "statuses": dict(statuses),
        "engine attempts": len(observed.attempts),
        "engine faults": dict(Counter(a["fault"] for a in observed.attempts)),
        "events": sum(len(e) for e in observed.events.values()),
    }
    return report
