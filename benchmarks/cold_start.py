"""Cold start of each Lambda function, against its own dependency floor.

What it measures, for each function of the built artifacts (`.aws-sam/build`, made by
`scripts/sam-build` when missing or older than the source): a fresh Python 3.12 process (the
functions' runtime; `-S -I`, so only the function's code and its layer are importable, as Lambda
runs it) imports the handler's module, i.e. the whole init (settings checked, services wired, the
FastAPI app built). That process records which third-party modules the init imported; the floor is
a fresh process importing exactly those (the bare cost of the packages the function uses). Both are
measured RUNS times, interleaved, and compared by their CPU time (the process's
`time.process_time()`): each run's init over the floor measured just before it, and the median of
those ratios. On this shared 2-core machine a probe descheduled for 50 ms reads 50 ms slower on the
wall, not in CPU; but the CPU's own speed drifts too (other tenants' load: one run read a floor of
340 ms, another an hour later 524 ms), and a ratio of two probes a second apart drifts less than
a ratio of medians taken over two minutes. The medians of each are printed beside it, CPU and wall.
RUNS is 20: one run's init reads from 60 ms under its floor's excess to 50 ms over it (the queue
API, whose median excess is about 30 ms), and the median of 12 such runs moved by about 0.05
between two runs of the script an hour apart; the median of 20 moves about a quarter less
(1/sqrt(n)) and the script takes about 4 minutes on this machine (session 12).

`--instructions` adds, for each function, the ratio of the instructions the init and the floor
execute, counted by valgrind's callgrind (the interpreter's own start, a probe importing nothing,
taken from both): the same count whatever else the machine runs, so a change in our init shows in
it where the seconds are noise (about 7 minutes more; needs valgrind).

Each run imports from a different depth of Python calls (0 to RUNS - 1 frames under the probe's
own), the floor and the init of a run from the same one. Python 3.12 keeps its frames in chunks,
and a call that crosses from one chunk to the next allocates a chunk and frees it on return
(CPython issue gh-142183, fixed in 3.13 and 3.14, not in 3.12): an import that happens to loop at
a chunk's edge pays for it on every call. For the consumer's init at depth 0 that was urllib3's
IPv6 regexes, 20 ms instead of 4 (init 227 ms at depth 0, 189 to 211 ms at depths 1 to 11, one
machine, one session). Lambda's runtime imports the handler from a depth of its own, which this
project does not choose, so a figure taken at one depth measures where that edge falls, not the
code: the median over several depths does not.

The probes import as a deployed function does: with the bytecode `scripts/sam-build` ships in the
artifacts (checked-hash .pyc files beside the sources), writing none (`-B`: Lambda's code and
layers are read-only). Without that bytecode a deployed init would compile every module it
imports: the consumer's init took 622 ms against a floor of 583 (1.07) and the API's 927 against
807 (1.15), where with bytecode they took about 190 and 320 ms (session 7, one run, this machine);
after the console's split, the queue API's took 1,267 ms without and 456 with (session 11, five
runs each, a slower hour).

The floor is imported as the handlers import it: each handler module pauses Python's garbage
collector for its init and freezes what the init allocated (promptsvc/collector.py), so the floor
probe does the same. A floor taken with the collector running would count collections the init
does not run, and, before that change, whether one full collection of the heap (about 20 ms)
fell in the init or in the floor depended on how many objects the dependencies allocated, not
on the init: the consumer with tracing on read 1.19 for it, 1.07 with tracing off.

Twice: with tracing off (`POWERTOOLS_TRACE_DISABLED=true`, as `promptsvc dev` and the tests run)
and on (inside Lambda with tracing active: the floor then includes the X-Ray SDK). It also prints
each function's peak memory at init and the layer's size unzipped.

Target (the last line): every function's init within 1.10x of its floor. The script exits 1 when
missed. Run from the repository root: `.venv/bin/python benchmarks/cold_start.py [--runs N]`.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"
LAYER = BUILD / "PromptsvcLayer" / "python"
TARGET = 1.10

# A process that imports either the handler's module (`module`) or a list of modules (`floor`),
# `depth` Python calls deep, and prints the seconds it took (wall and CPU), the third-party modules
# loaded, and its peak memory (KiB).
PROBE = r"""
import gc, importlib, json, resource, sys, time
paths, module, floor, depth = json.loads(sys.argv[1])
sys.path[:0] = paths

def at_depth(frames):
    if frames:
        return at_depth(frames - 1)
    start, cpu_start = time.perf_counter(), time.process_time()
    if floor is None:
        importlib.import_module(module)
    else:
        gc.disable()  # as the handler's init does (promptsvc/collector.py)
        for name in floor:
            importlib.import_module(name)
        gc.freeze()
        gc.enable()
    return time.perf_counter() - start, time.process_time() - cpu_start

seconds, cpu = at_depth(depth)
layer = paths[-1]
third_party = [
    name for name, m in list(sys.modules.items())
    if (getattr(m, "__file__", None) or "").startswith(layer) and name.split(".")[0] != "promptsvc"
]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "cpu": cpu, "third_party": third_party, "peak_kib": peak}))
"""

# Placeholder values of the resource settings a function's template environment sets: init reads
# them (and checks those it needs) but calls no AWS.
PLACEHOLDERS = {
    "_TABLE": "placeholder-table",
    "_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/placeholder",
    "_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/placeholder-dlq",
    "_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:placeholder",
    "_ENDPOINT": "https://placeholder.execute-api.us-east-1.amazonaws.com/prod",
    "_BUCKET": "placeholder-bucket",
}


@dataclass
class Figure:
    function: str
    tracing: bool
    ratio: float  # the median over the runs of init / floor, each run's init over its own floor
    init: float  # CPU seconds (the median over the runs), printed beside it
    floor: float
    init_wall: float  # wall-clock seconds
    floor_wall: float
    peak_mib: float
    packages: list[str]


def python312() -> str:
    return subprocess.run(
        [str(ROOT / "scripts" / "python312")], check=True, capture_output=True, text=True
    ).stdout.strip()


def ensure_build() -> None:
    """`scripts/sam-build` when the build is missing or older than a source file it is made from."""
    sources = [*ROOT.glob("functions/**/*.py"), *ROOT.glob("layers/promptsvc/**/*.py")]
    sources.append(ROOT / "template.yaml")
    built = BUILD / "template.yaml"
    newest = max(path.stat().st_mtime for path in sources)
    if not built.exists() or built.stat().st_mtime < newest or not LAYER.exists():
        subprocess.run([str(ROOT / "scripts" / "sam-build")], check=True, cwd=ROOT, stdout=sys.stderr)


def functions() -> dict[str, tuple[Path, str, list[str]]]:
    """Each function: its code folder, its handler's module and the variables its template sets."""
    sys.path.insert(0, str(ROOT / "dev"))
    from promptsvc_dev.template import load_template

    template = load_template(BUILD / "template.yaml")
    glob = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    found = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            props = resource["Properties"]
            variables = [*glob, *props.get("Environment", {}).get("Variables", {})]
            found[name] = (BUILD / props["CodeUri"], props["Handler"].rsplit(".", 1)[0], variables)
    return found


def environment(variables: list[str], tracing: bool, function: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    env |= {"AWS_ACCESS_KEY_ID": "placeholder", "AWS_SECRET_ACCESS_KEY": "placeholder"}
    env |= {"AWS_LAMBDA_FUNCTION_NAME": function, "LAMBDA_TASK_ROOT": "/var/task"}
    env["POWERTOOLS_TRACE_DISABLED"] = "false" if tracing else "true"
    env["POWERTOOLS_METRICS_NAMESPACE"] = "promptsvc"
    for variable in variables:
        for suffix, value in PLACEHOLDERS.items():
            if variable.endswith(suffix):
                env[variable] = value
    return env


def probe(
    python: str, paths: list[str], module: str, floor: list[str] | None, env: dict[str, str], depth: int = 0
) -> Any:
    argument = json.dumps([paths, module, floor, depth])
    done = subprocess.run(
        [python, "-S", "-I", "-B", "-c", PROBE, argument],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{module}: init failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    python: str, function: str, spec: tuple[Path, str, list[str]], tracing: bool, runs: int
) -> Figure:
    code, module, variables = spec
    env = environment(variables, tracing, function)
    paths = [str(code), str(LAYER)]
    first = probe(python, paths, module, None, env)
    floor_modules = first["third_party"]
    inits, floors, peaks = [], [], [first["peak_kib"]]
    for depth in range(runs):
        floors.append(probe(python, paths, module, floor_modules, env, depth))
        run = probe(python, paths, module, None, env, depth)
        inits.append(run)
        peaks.append(run["peak_kib"])
    packages = sorted({name.split(".")[0] for name in floor_modules})

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    return Figure(
        function,
        tracing,
        ratio=statistics.median(run["cpu"] / floor["cpu"] for run, floor in zip(inits, floors, strict=True)),
        init=median(inits, "cpu"),
        floor=median(floors, "cpu"),
        init_wall=median(inits, "seconds"),
        floor_wall=median(floors, "seconds"),
        peak_mib=max(peaks) / 1024,
        packages=packages,
    )


def instructions(
    python: str, paths: list[str], module: str, floor: list[str] | None, env: dict[str, str]
) -> int:
    """The instructions one probe executes, counted by valgrind's callgrind: the same count for the
    same code whatever else the machine runs (a cross-check of the seconds on a busy machine)."""
    with tempfile.TemporaryDirectory() as scratch:
        argument = json.dumps([paths, module, floor, 0])
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/out"]
        done = subprocess.run(
            [*command, python, "-S", "-I", "-B", "-c", PROBE, argument],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{module}: callgrind failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def instruction_ratio(python: str, function: str, spec: tuple[Path, str, list[str]], tracing: bool) -> float:
    """init / floor in instructions, the interpreter's own start (a probe importing nothing)
    taken from both."""
    code, module, variables = spec
    env = environment(variables, tracing, function)
    paths = [str(code), str(LAYER)]
    floor_modules = probe(python, paths, module, None, env)["third_party"]
    start = instructions(python, paths, module, [], env)
    init = instructions(python, paths, module, None, env) - start
    floor = instructions(python, paths, module, floor_modules, env) - start
    return init / floor


def layer_size_mib() -> float:
    """What the layer's zip unpacks to, its bytecode included."""
    return sum(path.stat().st_size for path in LAYER.rglob("*") if path.is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", type=int, default=20, help="measured runs of each, interleaved, each at its own call depth"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each init's and floor's instructions with valgrind (minutes; valgrind needed)",
    )
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    ensure_build()
    python = python312()
    print(f"layer {layer_size_mib():.1f} MiB unzipped ({LAYER.relative_to(ROOT)})")
    figures = []
    for tracing in (False, True):
        for function, spec in functions().items():
            figure = measure(python, function, spec, tracing, args.runs)
            figures.append(figure)
            print(
                f"{function:<20} tracing {'on ' if tracing else 'off'}  init {figure.init * 1000:4.0f} ms CPU"
                f" ({figure.init_wall * 1000:4.0f} wall)  floor {figure.floor * 1000:4.0f} ms CPU"
                f" ({figure.floor_wall * 1000:4.0f} wall)  ratio {figure.ratio:.3f}"
                f"  peak {figure.peak_mib:5.1f} MiB  packages: {', '.join(figure.packages)}"
            )
            if args.instructions:
                ratio = instruction_ratio(python, function, spec, tracing)
                print(f"{function:<20} tracing {'on ' if tracing else 'off'}  instructions ratio {ratio:.3f}")
    worst = max(figures, key=lambda f: f.ratio)
    where = f"{worst.function}, tracing {'on' if worst.tracing else 'off'}"
    print(f"cold start: worst init/floor ratio {worst.ratio:.3f} ({where}) (target <= {TARGET:.2f})")
    return 0 if worst.ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
