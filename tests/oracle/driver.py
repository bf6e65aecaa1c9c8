"""Run the oracle: the harness over the corpus for each SGLang release, compared with eaglectl's replay.

Used by tests/test_oracle_sglang.py (through `run_release` and `check_head`), by scripts/oracle/run.sh and by the
GPU driver scripts/gpu/oracle.sh (through `main`):

    python -m tests.oracle.driver --corpus DIR --release 0.5.15=SRC [--release ...] [--python PY] [--json OUT]
    python -m tests.oracle.driver --corpus DIR --installed [--json OUT]     # the SGLang of this interpreter

The harness runs once per release over every head (SGLang's import costs 10-20 s; a head well under a second),
in a subprocess of the interpreter that can import SGLang. Exit 1 when a head disagrees in a way not listed in
tests/oracle/known.py, 2 when a release could not run at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eaglectl.enums import Algorithm
from tests.oracle.compare import Disagreement, compare
from tests.oracle.corpus import Entry, ensure_corpus
from tests.oracle.known import KNOWN

HARNESS = Path(__file__).with_name("harness.py")
RELEASES_ENV, PYTHON_ENV, STUB_ENV = "EAGLECTL_ORACLE_RELEASES", "EAGLECTL_ORACLE_PYTHON", "EAGLECTL_ORACLE_TRITON_STUB"


def parse_releases(spec: str) -> list[tuple[str, str]]:
    """"0.5.15=/dir,0.5.9=/dir2" -> [("0.5.15", "/dir"), ("0.5.9", "/dir2")]."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        label, sep, src = item.partition("=")
        if not sep or not label or not src:
            raise ValueError(f"{RELEASES_ENV}: {item!r} is not RELEASE=DIR")
        out.append((label.strip(), src.strip()))
    return out


def read_head(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The head as eaglectl reads it: config.json and the stored tensor shapes (the verdict's inputs)."""
    from eaglectl.checkpoint.resolve import resolve

    cfg = json.loads((Path(path) / "config.json").read_text())
    ckpt = resolve(path, load_meta=False)
    assert ckpt.weights is not None
    return cfg, {n: tuple(t.shape) for n, t in ckpt.weights.tensors.items()}


def run_harness(heads: list[Path], *, python: str, src: str | None, installed: bool = False,
                device: str = "auto", log: Path | None = None, timeout: float = 900) -> dict[str, Any]:
    """The harness's JSON for `heads` (one process). Never raises for SGLang's failures: they are in the JSON."""
    with tempfile.TemporaryDirectory(prefix="eaglectl-oracle-") as tmp:
        out = Path(tmp) / "harness.json"
        cmd = [python, str(HARNESS), "--device", device, "--out", str(out)]
        cmd += ["--installed"] if installed else ["--sglang-src", str(src)]
        cmd += [str(h) for h in heads]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            return {"error": f"harness still running after {timeout:.0f} s", "traceback": stderr.splitlines()[-20:],
                    "results": []}
        if log is not None:
            log.write_text(proc.stderr)
        if not out.exists():
            return {"error": f"harness exited {proc.returncode} without output", "traceback":
                    proc.stderr.splitlines()[-20:], "results": []}
        doc: dict[str, Any] = json.loads(out.read_text())
        doc["returncode"] = proc.returncode
        if proc.returncode not in (0, 1) and "error" not in doc:  # died part-way: `doc` is what it had written
            doc["died"] = f"harness exited {proc.returncode}: " + " | ".join(proc.stderr.splitlines()[-3:])
        return doc


def by_head(doc: dict[str, Any], entries: list[Entry], root: Path) -> dict[str, dict[str, Any]]:
    paths = {str((root / e.path).resolve()): e.name for e in entries}
    return {paths[str(Path(r["draft_dir"]).resolve())]: r for r in doc.get("results", [])
            if str(Path(r["draft_dir"]).resolve()) in paths}


def check_head(entry: Entry, root: Path, release: str, result: dict[str, Any] | None) -> list[Disagreement]:
    if result is None:
        return [Disagreement(entry.name, release, "harness", "produced no record for this head", "-")]
    cfg, shapes = read_head(root / entry.path)
    return compare(entry.name, release, result, cfg, shapes, Algorithm(entry.algorithm))


def outcome(result: dict[str, Any] | None) -> str:
    """One word for the table: how SGLang's start-up ended for the head."""
    if result is None:
        return "no record"
    if result.get("error"):
        return f"fails at {result.get('stage')}"
    if result.get("load_errors"):
        return "load error"
    return "loads"


def run_release(label: str, src: str | None, entries: list[Entry], root: Path, *, python: str,
                installed: bool = False, device: str = "auto", log_dir: Path | None = None,
                timeout: float = 900, budget: float = 1800) -> dict[str, Any]:
    """Harness over the whole corpus for one release, each head compared: a JSON-ready record. `timeout` bounds
    one harness process, `budget` the release as a whole (reruns after a crash stop when it is spent)."""
    t0 = time.time()
    log = (log_dir / f"harness-{label}.log") if log_dir else None
    doc = run_harness([root / e.path for e in entries], python=python, src=src, installed=installed, device=device,
                      log=log, timeout=timeout)
    release = label if label != "installed" else str(doc.get("versions", {}).get("sglang") or label)
    results = by_head(doc, entries, root)
    missing = [e for e in entries if e.name not in results]
    if missing and "t_import" in doc:
        # SGLang imported but the shared process died part-way (a crash no exception catches). The first head it
        # did not finish is the likely cause: it runs alone, the rest again together, until none is left or the
        # time is up (a head still missing then has no record and fails as such).
        notes = [doc.get("died", "no record")]
        while missing and time.time() + 2 * float(doc.get("t_import") or 30) < t0 + budget:
            culprit, rest = missing[0], missing[1:]
            left = max(1.0, t0 + budget - time.time())
            alone = run_harness([root / culprit.path], python=python, src=src, installed=installed, device=device,
                                timeout=min(timeout, left))
            results.update(by_head(alone, entries, root))
            notes.append(f"{culprit.name} alone: {alone.get('died') or alone.get('error') or 'ran'}")
            if rest:
                left = max(1.0, t0 + budget - time.time())
                again = run_harness([root / e.path for e in rest], python=python, src=src, installed=installed,
                                    device=device, timeout=min(timeout, left))
                results.update(by_head(again, entries, root))
            missing = [e for e in rest if e.name not in results]
        doc.setdefault("setup", {})["fallback"] = "; ".join(notes) + (
            f"; {len(missing)} head(s) left without a record (time budget)" if missing else "")
        doc.pop("error", None)
    heads = {}
    for e in entries:
        r = results.get(e.name)
        found = check_head(e, root, release, r) if not doc.get("error") else []
        heads[e.name] = {"kind": e.kind, "rule": e.rule, "sglang": outcome(r),
                         "disagreements": [str(d) for d in found] if not doc.get("error") else ["harness did not run"],
                         "subjects": [d.subject for d in found],
                         "known": [str(d) for d in found if (e.name, d.subject) in KNOWN], "result": r}
    return {"release": release, "source": src or "installed", "device": doc.get("device"),
            "versions": doc.get("versions"), "stubs": doc.get("stubs"), "setup": doc.get("setup"),
            "error": doc.get("error"), "traceback": doc.get("traceback"), "t_import": doc.get("t_import"),
            "seconds": round(time.time() - t0, 1), "heads": heads}


def summary(runs: list[dict[str, Any]], entries: list[Entry]) -> str:
    """The agreement table in Markdown: one row per head, one column per release; each cell is what SGLang did
    and whether eaglectl's replay agreed."""
    lines = ["| head | " + " | ".join(r["release"] for r in runs) + " |", "|---|" + "---|" * len(runs)]
    for e in entries:
        cells = []
        for r in runs:
            if r.get("error"):
                cells.append("did not run")
                continue
            h = r["heads"][e.name]
            new = [d for d in h["disagreements"] if d not in h.get("known", [])]
            cells.append(f"{h['sglang']}, " + ("DISAGREES" if new else "disagrees (known)" if h["disagreements"]
                                               else "agrees"))
        lines.append(f"| {e.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus directory (built there unless already built)")
    ap.add_argument("--release", action="append", default=[], metavar="LABEL=DIR",
                    help=f"an unpacked SGLang release (default: ${RELEASES_ENV})")
    ap.add_argument("--installed", action="store_true", help="the SGLang installed in --python's interpreter")
    ap.add_argument("--python", default=os.environ.get(PYTHON_ENV, sys.executable),
                    help=f"the interpreter that runs the harness (default: ${PYTHON_ENV}, else this one)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None, help="write every record (harness output included) here")
    ap.add_argument("--logs", default=None, help="folder for the harness's stderr, one file per release")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one harness process may take")
    ap.add_argument("--budget", type=float, default=1800,
                    help="seconds for one release, reruns after a crash included")
    args = ap.parse_args(argv)
    root = Path(args.corpus)
    t0 = time.time()
    entries = ensure_corpus(root)
    t_corpus = round(time.time() - t0, 1)
    releases: list[tuple[str, str | None]] = [("installed", None)] if args.installed else \
        list(parse_releases(",".join(args.release) or os.environ.get(RELEASES_ENV, "")))
    if not releases:
        ap.error(f"no release: pass --release LABEL=DIR, --installed, or set {RELEASES_ENV}")
    logs = Path(args.logs) if args.logs else None
    if logs:
        logs.mkdir(parents=True, exist_ok=True)
    runs = [run_release(label, src, entries, root, python=args.python, installed=args.installed,
                        device=args.device, log_dir=logs, timeout=args.timeout, budget=args.budget)
            for label, src in releases]
    table = summary(runs, entries)
    print(table)
    bad = [d for r in runs for h in r["heads"].values() for d in h["disagreements"]]
    known = {d for r in runs for h in r["heads"].values() for d in h.get("known", [])}
    for d in bad:
        print(f"{'KNOWN DISAGREEMENT' if d in known else 'DISAGREEMENT'} {d}")
    for r in runs:
        print(f"SGLang {r['release']} ({r['source']}, {r['device']}): {r['seconds']} s" +
              (f"; did not run: {r['error']}" if r.get("error") else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "corpus_seconds": t_corpus,
                                               "table": table, "disagreements": bad, "runs": runs},
                                              indent=1, default=str) + "\n")
    if any(r.get("error") for r in runs):
        return 2
    return 1 if set(bad) - known else 0


if __name__ == "__main__":
    sys.exit(main())
