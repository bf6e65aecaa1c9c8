#!/usr/bin/env python3
"""CLI start-up: wall time of `eaglectl --help` and of one simulated TAB press, against `python -c pass`.

    python benchmarks/cli_startup_bench.py [--runs 20] [--json] [--check]

Each case runs in a fresh process, as the shell starts it; the cases are interleaved run by run so that a
noisy neighbour hurts all of them alike, after two warm-up runs each (disk cache). Reports medians (and
min / max) and the median minus the bare-interpreter median, i.e. what eaglectl itself costs.
A TAB press is what the bash completion script does: `_EAGLECTL_COMPLETE=complete_bash COMP_WORDS=...
COMP_CWORD=... eaglectl`; checkpoint paths are completed in a small temporary tree.
Targets (2-core CPU machine): `--help` <= 0.20 s, TAB <= 0.15 s. `--check` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

TARGETS = {"help": 0.20, "tab-command": 0.15, "tab-checkpoint": 0.15}
# What the installed console script does, for when there is none beside this interpreter.
_ENTRY = "import sys; sys.argv[0] = 'eaglectl'; from eaglectl.cli.entry import main; sys.exit(main())"


@dataclass
class Case:
    name: str
    what: str
    argv: list[str]
    env: dict[str, str]
    expect: str | None = None  # a substring stdout must contain, checked once before timing


@dataclass
class Timing:
    name: str
    what: str
    runs: int
    median_s: float
    min_s: float
    max_s: float
    net_median_s: float | None
    target_s: float | None
    met: bool | None


def eaglectl_argv() -> list[str]:
    script = Path(sys.executable).parent / ("eaglectl.exe" if os.name == "nt" else "eaglectl")
    if script.is_file():
        return [str(script)]
    found = shutil.which("eaglectl")
    return [found] if found else [sys.executable, "-c", _ENTRY]


def make_tree(root: Path) -> None:
    """A few checkpoint-like and plain directories, as in a training-output folder."""
    for d in ("runs/nemo/epoch_0_step_100/model", "runs/nemo/epoch_1_step_200/model", "runs/specforge",
              "runs/legacy", "runs/logs/tb", "data/shards"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ("runs/nemo/epoch_0_step_100/model/config.json", "runs/nemo/epoch_1_step_200/model/config.json",
              "runs/specforge/config.json", "runs/legacy/draft_model.pt"):
        (root / f).write_text("{}")
    for i in range(200):
        (root / "data/shards" / f"part-{i:05d}.bin").write_bytes(b"")


def cases(tree: Path) -> list[Case]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("_EAGLECTL") and k != "_TYPER_COMPLETE_ARGS"}
    base.update(COLUMNS="80", TERM="dumb")
    prog = eaglectl_argv()

    def tab(words: str, cword: int) -> dict[str, str]:
        return {**base, "_EAGLECTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}

    return [
        Case("python", "python -c pass", [sys.executable, "-c", "pass"], base),
        Case("help", "eaglectl --help", [*prog, "--help"], base, expect="Usage"),
        Case("tab-command", "TAB: eaglectl in<TAB>", prog, tab("eaglectl in", 1), expect="inspect"),
        Case("tab-checkpoint", "TAB: eaglectl inspect runs/<TAB>", prog, tab(f"eaglectl inspect {tree}/runs/", 2),
             expect=f"{tree}/runs/specforge"),
    ]


def run_once(case: Case) -> float:
    start = time.perf_counter()
    proc = subprocess.run(case.argv, env=case.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{case.what}: exit {proc.returncode}")
    return elapsed


def verify(case: Case) -> None:
    proc = subprocess.run(case.argv, env=case.env, capture_output=True, text=True)
    if proc.returncode != 0 or (case.expect and case.expect not in proc.stdout):
        raise SystemExit(f"{case.what} did not do what is measured (exit {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def measure(runs: int, warmup: int = 2) -> list[Timing]:
    with tempfile.TemporaryDirectory(prefix="eaglectl-bench-") as tmp:
        tree = Path(tmp)
        make_tree(tree)
        todo = cases(tree)
        for case in todo:
            verify(case)
            for _ in range(warmup):
                run_once(case)
        samples: dict[str, list[float]] = {c.name: [] for c in todo}
        for _ in range(runs):
            for case in todo:
                samples[case.name].append(run_once(case))
    baseline = statistics.median(samples["python"])
    out = []
    for case in todo:
        s = samples[case.name]
        med = statistics.median(s)
        target = TARGETS.get(case.name)
        out.append(Timing(case.name, case.what, len(s), med, min(s), max(s),
                          None if case.name == "python" else med - baseline,
                          target, None if target is None else med <= target))
    return out


def machine() -> dict[str, str]:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    return {
        "cpus": str(cpus),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def markdown(timings: list[Timing]) -> str:
    rows = ["| case | median | min | max | minus `python -c pass` | target | met |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for t in timings:
        net = "" if t.net_median_s is None else f"{t.net_median_s:.3f} s"
        target = "" if t.target_s is None else f"≤ {t.target_s:.2f} s"
        met = "" if t.met is None else ("yes" if t.met else "**no**")
        rows.append(f"| `{t.what}` | {t.median_s:.3f} s | {t.min_s:.3f} s | {t.max_s:.3f} s | {net} | {target} "
                    f"| {met} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per case (at least 10; default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.runs < 10:
        parser.error("--runs must be at least 10")
    timings = measure(args.runs)
    info = machine()
    if args.json:
        print(json.dumps({"machine": info, "timings": [asdict(t) for t in timings]}, indent=2))
    else:
        print(f"{info['cpus']} CPUs, Python {info['python']}, {info['platform']}, {info['date']}; "
              f"{args.runs} runs per case, medians\n")
        print(markdown(timings))
    return 1 if args.check and any(t.met is False for t in timings) else 0


if __name__ == "__main__":
    sys.exit(main())
