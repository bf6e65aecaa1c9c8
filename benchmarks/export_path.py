"""Which way the export's data flows through the house: a trace of every call between eaglectl modules while
`export_checkpoint` runs on a demo checkpoint (a measurement for docs/benchmarks.md, not a test).

usage: python benchmarks/export_path.py [--sample nemo-consolidated] [--json]

Reports, from a `sys.setprofile` trace of Python calls (callee module per call, consecutive repeats merged):
  rooms      the eaglectl modules the export enters
  stays      calls that stay inside the caller's module
  climbs     calls from a module to one on a *higher* floor (tests/test_architecture.py FLOORS): control going
             back up, through a callback or an upward import
  returns    calls into a module the export had already entered and left, at the floor of export/exporter.py's
             own calls (its top-level steps): how often the pipeline goes back to a step it finished
  entries    per module, how many separate times the exporter's own steps enter it
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_architecture import floor_of  # noqa: E402  (the one table of floors)


def module_of(frame) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name.startswith("eaglectl") else None


def trace_export(src: Path, out: Path) -> dict:
    from eaglectl.export.exporter import export_checkpoint

    calls: list[tuple[str, str]] = []

    def prof(frame, event, arg):
        if event != "call":
            return
        callee = module_of(frame)
        caller = module_of(frame.f_back) if frame.f_back is not None else None
        if callee and caller:
            calls.append((caller, callee))

    sys.setprofile(prof)
    try:
        export_checkpoint(str(src), output=out, force=True)
    finally:
        sys.setprofile(None)
    stays = sum(1 for a, b in calls if a == b)
    climbs = [(a, b) for a, b in calls if a != b and floor_of(b) > floor_of(a)]
    top = "eaglectl.export.exporter"
    steps = [b for a, b in calls if a == top and b != top]
    merged = [m for i, m in enumerate(steps) if i == 0 or steps[i - 1] != m]
    entries = Counter(merged)
    returns = sum(n - 1 for n in entries.values())
    return {"rooms": len({b for _, b in calls} | {a for a, _ in calls}), "calls": len(calls), "stays": stays,
            "climbs": len(climbs), "climbs_by_edge": Counter(f"{a} -> {b}" for a, b in climbs).most_common(),
            "returns": returns, "steps": merged, "entries": dict(entries.most_common())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", default="nemo-consolidated")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from eaglectl.demo.samples import build_samples, sample_paths

    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        build_samples(demo)
        report = trace_export(sample_paths(demo)[args.sample], Path(tmp) / "out")
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key in ("rooms", "calls", "stays", "climbs", "returns"):
        print(f"{key:8} {report[key]}")
    print("exporter steps:", " -> ".join(s.removeprefix("eaglectl.") for s in report["steps"]))
    for edge, n in report["climbs_by_edge"]:
        print(f"climb    {n:4}  {edge}")


if __name__ == "__main__":
    main()
