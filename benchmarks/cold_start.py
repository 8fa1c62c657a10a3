"""Cold start of each Lambda function, against its own dependency floor.

What it measures, for each function of the built artifacts (`.aws-sam/build`, made by
`scripts/sam-build` when missing or older than the source): a fresh Python 3.12 process (the
functions' runtime; `-S -I`, so only the function's code and its layer are importable, as Lambda
runs it) imports the handler's module, i.e. the whole init (settings checked, services wired, the
FastAPI app built). That process records which third-party modules the init imported; the floor is
a fresh process importing exactly those (the bare cost of the packages the function uses). Both are
measured RUNS times, interleaved, and compared by their medians: init / floor.

Each run imports from a different depth of Python calls (0 to RUNS - 1 frames under the probe's
own), the floor and the init of a run from the same one. Python 3.12 keeps its frames in chunks,
and a call that crosses from one chunk to the next allocates a chunk and frees it on return
(CPython issue gh-142183, fixed in 3.13 and 3.14, not in 3.12): an import that happens to loop at
a chunk's edge pays for it on every call. For the consumer's init at depth 0 that was urllib3's
IPv6 regexes, 20 ms instead of 4 (init 227 ms at depth 0, 189 to 211 ms at depths 1 to 11, one
machine, one session). Lambda's runtime imports the handler from a depth of its own, which this
project does not choose, so a figure taken at one depth measures where that edge falls, not the
code: the median over several depths does not.

The probes import with bytecode: the first one writes `__pycache__` beside the built sources and
the others read it. Lambda cannot: its code and layers are read-only, and `sam build` puts no
bytecode in them, so a deployed init also compiles every module it imports. Without bytecode
(`-B`, the caches removed) the consumer's init took 622 ms against a floor of 583 (1.07) and the
API's 927 against 807 (1.15), where with bytecode they took about 190 and 320 ms (one run, this
machine). Those seconds are the dependencies' as much as ours; the ratio is measured with bytecode.

Twice: with tracing off (`POWERTOOLS_TRACE_DISABLED=true`, as `promptsvc dev` and the tests run)
and on (inside Lambda with tracing active: the floor then includes the X-Ray SDK). It also prints
each function's peak memory at init and the layer's size unzipped.

Target (the last line): every function's init within 1.10x of its floor. The script exits 1 when
missed. Run from the repository root: `.venv/bin/python benchmarks/cold_start.py [--runs N]`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"
LAYER = BUILD / "PromptsvcLayer" / "python"
TARGET = 1.10

# A process that imports either the handler's module (`module`) or a list of modules (`floor`),
# `depth` Python calls deep, and prints the seconds it took, the third-party modules loaded, and its
# peak memory (KiB).
PROBE = r"""
import importlib, json, resource, sys, time
paths, module, floor, depth = json.loads(sys.argv[1])
sys.path[:0] = paths

def at_depth(frames):
    if frames:
        return at_depth(frames - 1)
    start = time.perf_counter()
    if floor is None:
        importlib.import_module(module)
    else:
        for name in floor:
            importlib.import_module(name)
    return time.perf_counter() - start

seconds = at_depth(depth)
layer = paths[-1]
third_party = [
    name for name, m in list(sys.modules.items())
    if (getattr(m, "__file__", None) or "").startswith(layer) and name.split(".")[0] != "promptsvc"
]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "third_party": third_party, "peak_kib": peak}))
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
    init: float
    floor: float
    peak_mib: float
    packages: list[str]

    @property
    def ratio(self) -> float:
        return self.init / self.floor


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
        [python, "-S", "-I", "-c", PROBE, argument], env=env, capture_output=True, text=True, check=False
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
        floors.append(probe(python, paths, module, floor_modules, env, depth)["seconds"])
        run = probe(python, paths, module, None, env, depth)
        inits.append(run["seconds"])
        peaks.append(run["peak_kib"])
    packages = sorted({name.split(".")[0] for name in floor_modules})
    return Figure(
        function, tracing, statistics.median(inits), statistics.median(floors), max(peaks) / 1024, packages
    )


def layer_size_mib() -> float:
    """What the layer's zip unpacks to: the bytecode the probes leave beside the sources is not in it."""
    files = (path for path in LAYER.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    return sum(path.stat().st_size for path in files) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", type=int, default=8, help="measured runs of each, interleaved, each from its own call depth"
    )
    args = parser.parse_args()
    ensure_build()
    python = python312()
    print(f"layer {layer_size_mib():.1f} MiB unzipped ({LAYER.relative_to(ROOT)})")
    figures = []
    for tracing in (False, True):
        for function, spec in functions().items():
            figure = measure(python, function, spec, tracing, args.runs)
            figures.append(figure)
            print(
                f"{function:<20} tracing {'on ' if tracing else 'off'}  init {figure.init * 1000:6.0f} ms"
                f"  floor {figure.floor * 1000:6.0f} ms  ratio {figure.ratio:.2f}"
                f"  peak {figure.peak_mib:5.1f} MiB  packages: {', '.join(figure.packages)}"
            )
    worst = max(figures, key=lambda f: f.ratio)
    where = f"{worst.function}, tracing {'on' if worst.tracing else 'off'}"
    print(f"cold start: worst init/floor ratio {worst.ratio:.2f} ({where}) (target <= {TARGET:.2f})")
    return 0 if worst.ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
