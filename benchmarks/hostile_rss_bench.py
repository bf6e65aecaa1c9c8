"""Peak memory and time of eaglectl on small hostile inputs (not a test: measurements, no assertions).

Each input is a healthy sample checkpoint broken in one way that used to cost gigabytes or minutes (a deflated
pickle bomb, a 90 MB safetensors header with 1.5 M entries, `num_aux_hidden_states: 10**9` with `fc_norm`,
stride-0 views, a 4 GiB unused tensor in a sparse file, ...). Every command runs in a fresh process; its peak
RSS comes from `wait4` and its wall time from the parent. Target: under 0.5 GB and a few seconds each.

usage: python benchmarks/hostile_rss_bench.py [--dir DIR] [--json] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile import (  # noqa: E402
    CASES,
    copy_base,
    edit_json,
    edit_pt,
    pickle_bomb_bytes,
    rewrite_zip,
)

# corpus cases measured as they are (small already)
FROM_CORPUS = ("config-int-5000-digits", "config-nested-100-deep", "config-millions-of-values",
               "config-num-aux-hidden-states-huge", "st-header-200k-entries", "meta-pickle-oversized",
               "pt-zip-150k-records", "weights-stride-zero-view", "meta-stride-zero-view",
               "pt-views-repeating-one-storage", "weights-sparse-tensor", "d2t-float-with-fractions")


def header_1_5m_entries(tmp: Path, bases) -> Path:
    """A 90 MB safetensors header (under safetensors' 100 MB cap) listing 1.5 M zero-size tensors."""
    ck = copy_base(bases, "st", tmp)
    entry = b'{"dtype":"U8","shape":[0],"data_offsets":[0,0]}'
    hb = b"{" + b",".join(b'"tensor.%07d":' % i + entry for i in range(1_500_000)) + b"}"
    hb += b" " * (-len(hb) % 8)
    (ck / "model.safetensors").write_bytes(struct.pack("<Q", len(hb)) + hb)
    return ck


def pickle_bomb_1gib(tmp: Path, bases) -> Path:
    """draft_model.pt whose data.pkl is a deflated 1 GiB bytes object (~1 MB on disk)."""
    ck = copy_base(bases, "pt", tmp)
    rewrite_zip(ck / "draft_model.pt", {"/data.pkl": pickle_bomb_bytes(1 << 30)}, compress=("/data.pkl",))
    return ck


def unused_tensor_4gib(tmp: Path, bases) -> Path:
    """A healthy head plus a 4 GiB tensor nothing takes, its bytes a hole in a sparse file (no disk used)."""
    ck = copy_base(bases, "st", tmp)
    f = ck / "model.safetensors"
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    big = 1 << 32
    header["optimizer.exp_avg"] = {"dtype": "F32", "shape": [big // 4 // 4096, 4096],
                                   "data_offsets": [len(data), len(data) + big]}
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(f, "wb") as fh:
        fh.write(struct.pack("<Q", len(hb)) + hb + data)
        fh.truncate(8 + len(hb) + len(data) + big)
    return ck


def aux_ids_in_meta_bomb(tmp: Path, bases) -> Path:
    """eagle3_meta.pt whose aux layer ids are a stride-0 view of 10**9 elements over one stored int."""
    import torch

    ck = copy_base(bases, "pt", tmp)
    edit_pt(ck / "eagle3_meta.pt", lambda m: m.__setitem__(
        "eagle_aux_hidden_state_layer_ids", torch.ones(1, dtype=torch.int64).as_strided((10**9,), (0,))))
    return ck


def aux_list_config(tmp: Path, bases) -> Path:
    ck = copy_base(bases, "st", tmp)
    edit_json(ck / "config.json", lambda c: c.update(
        eagle_config={"eagle_aux_hidden_state_layer_ids": list(range(500_000))}, fc_norm=True))
    return ck


EXTRA = {"st-header-1.5m-entries-90mb": header_1_5m_entries, "pt-deflated-pickle-bomb-1gib": pickle_bomb_1gib,
         "unused-tensor-4gib-sparse": unused_tensor_4gib, "meta-aux-ids-stride-zero-1e9": aux_ids_in_meta_bomb,
         "config-aux-ids-500k-fc-norm": aux_list_config}


def measure(argv: list[str]) -> dict:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "eaglectl", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    first = next((line for line in err.splitlines() if line.startswith("error:")), "")
    return {"exit": proc.returncode, "seconds": round(time.monotonic() - t0, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "error": first[:160], "traceback": "Traceback" in err}


def input_bytes(path: Path) -> int:
    """Bytes the input occupies on disk (sparse holes not counted), without the previous export beside it."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file() and "model" not in p.parts[-2:-1])


def builders() -> dict:
    found = {c.name: c.build for c in CASES if c.name in FROM_CORPUS} | EXTRA
    found["healthy (baseline)"] = lambda tmp, b: copy_base(b, "st", tmp)
    return found


BUILD = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from benchmarks.hostile_rss_bench import builders
from tests.hostile import build_bases
root, name = Path(sys.argv[2]), sys.argv[3]
if name == "--bases":
    build_bases(root / "bases")
else:
    import json
    bases = json.loads((root / "bases.json").read_text())
    bases = {k: Path(v) for k, v in bases.items()}
    work = root / "cases" / name.replace(" ", "_")
    work.mkdir(parents=True)
    print(builders()[name](work, bases))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="eaglectl-hostile-bench-"))
    # Inputs are built in child processes: Linux carries a process's peak RSS across fork + exec, so this
    # parent stays small (no torch) and each measured child starts from nothing.
    build = [sys.executable, "-c", BUILD, str(ROOT), str(root)]
    subprocess.run([*build, "--bases"], check=True)
    bases = {p.name: p for p in (root / "bases").iterdir()}
    bases["consolidated"] = bases["consolidated"] / "epoch_0_step_100"
    (root / "bases.json").write_text(json.dumps({k: str(v) for k, v in bases.items()}))
    results = []
    for name in builders():
        if args.only and args.only not in name:
            continue
        ck = Path(subprocess.run([*build, name], check=True, capture_output=True, text=True).stdout.strip())
        work = ck.parent
        row = {"case": name, "input_mb": round(input_bytes(ck) / 2**20, 1)}
        for command, argv in (("inspect", ["inspect", str(ck)]),
                              ("export", ["export", str(ck), "--dtype", "fp32", "--output", str(work / "out")])):
            row[command] = measure(argv)
        results.append(row)
        if not args.json:
            i, e = row["inspect"], row["export"]
            print(f"{name:36s} {row['input_mb']:7.1f} MB | inspect exit {i['exit']} {i['seconds']:5.2f} s "
                  f"{i['peak_rss_mb']:5d} MB | export exit {e['exit']} {e['seconds']:5.2f} s {e['peak_rss_mb']:5d} MB"
                  f"{' TRACEBACK' if i['traceback'] or e['traceback'] else ''}", flush=True)
        shutil.rmtree(work)
    if args.json:
        print(json.dumps(results, indent=2))
    if args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
