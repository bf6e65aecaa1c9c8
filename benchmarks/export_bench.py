"""Export speed and memory on a Llama-3.1-8B-class EAGLE-3 head (a benchmark, not a test).

Builds the head (hidden 4096, intermediate 14336, 32/8 heads, 1 layer, draft vocab 32000, vocab 128256:
~425 M params + ~525 M embeddings, bf16) in the legacy `draft_model.pt` layout, in the NeMo consolidated
layout and as a SpecForge 0.2 training step (training_state.pt, frozen embeddings left out: 0.85 GB), then
times, each in a fresh process, the cases interleaved run by run (paired runs: each run of every case sees the
same machine state; median of --runs after one uncounted warm-up run; peak RSS from wait4):
  cp -r + sync   `cp -r` of the checkpoint directory, then `sync -f` of the copy (durable, as export is)
  eaglectl       `python -m eaglectl export SRC --output DST --force`
  specforge      `specforge export --to sglang` of the SpecForge step, where the `specforge` command is installed
                 or --specforge-path names its package (SpecForge exports only its own training checkpoints)
  naive          full `torch.load` + rename + `safetensors.torch.save_file` (--naive)
Targets: export <= 1.5x cp -r + sync, peak RSS <= 0.5 GB.

usage: python benchmarks/export_bench.py [--dir DIR] [--runs 5] [--json] [--cold] [--naive] [--phases]
                                        [--specforge-path DIR]

--cold evicts the source from the page cache before every run (each case then reads it from disk).
--phases prints, for one export of each layout, where its wall time goes (main thread; the early copy's thread
is shown as the time the main thread waited for it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

H, I, NH, KV, HD, DV, V = 4096, 14336, 32, 8, 128, 32000, 128256  # noqa: E741

NAIVE = r"""
import sys, torch
from pathlib import Path
from safetensors.torch import save_file, load_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
if (src / "draft_model.pt").exists():
    sd = torch.load(src / "draft_model.pt", map_location="cpu", weights_only=True)
else:
    sd = load_file(str(src / "model" / "model.safetensors"))
out = {}
for k, v in sd.items():
    for p in ("draft_model.", "model."):
        if k.startswith(p):
            k = k[len(p):]
    out[k.replace("layers.0.", "midlayer.")] = v.contiguous()
save_file(out, str(dst / "model.safetensors"))
"""


def build(root: Path) -> None:
    import torch

    from eaglectl.demo.samples import save_json, save_safetensors, target_config

    def w(*shape):
        return torch.empty(*shape, dtype=torch.bfloat16).normal_(0, 0.02)

    t = {"fc.weight": w(H, 3 * H), "layers.0.self_attn.q_proj.weight": w(NH * HD, 2 * H),
         "layers.0.self_attn.k_proj.weight": w(KV * HD, 2 * H), "layers.0.self_attn.v_proj.weight": w(KV * HD, 2 * H),
         "layers.0.self_attn.o_proj.weight": w(H, NH * HD), "layers.0.mlp.gate_proj.weight": w(I, H),
         "layers.0.mlp.up_proj.weight": w(I, H), "layers.0.mlp.down_proj.weight": w(H, I),
         "layers.0.input_layernorm.weight": torch.ones(H, dtype=torch.bfloat16),
         "layers.0.hidden_norm.weight": torch.ones(H, dtype=torch.bfloat16),
         "layers.0.post_attention_layernorm.weight": torch.ones(H, dtype=torch.bfloat16),
         "norm.weight": torch.ones(H, dtype=torch.bfloat16), "lm_head.weight": w(DV, H),
         "embed_tokens.weight": w(V, H)}
    cfg = dict(target_config(), hidden_size=H, intermediate_size=I, num_attention_heads=NH, num_key_value_heads=KV,
               head_dim=HD, vocab_size=V, num_hidden_layers=32, architectures=["LlamaEagle3DraftModel"],
               draft_vocab_size=DV, target_hidden_size=H, max_position_embeddings=131072)
    sel = torch.randperm(V)[:DV].sort().values
    mask = torch.zeros(V, dtype=torch.bool)
    mask[sel] = True
    meta = {"selected_token_ids": sel, "selected_token_mask": mask}
    legacy = root / "legacy"
    legacy.mkdir(parents=True)
    torch.save({"draft_model." + k: v for k, v in t.items()}, legacy / "draft_model.pt")
    save_json(legacy / "config.json", cfg)
    torch.save(meta, legacy / "eagle3_meta.pt")
    # A SpecForge 0.2 training step of the same head: its draft_state_dict in SpecForge's names, the frozen
    # embeddings left out as SpecForge leaves them (0.85 GB), the run's draft config beside the run.
    sf = root / "specforge"
    step = sf / "output" / "bench-step1000"
    step.mkdir(parents=True)
    d2t = sel - torch.arange(DV)
    names = {k.replace("layers.0.", "midlayer."): v for k, v in t.items() if k != "embed_tokens.weight"}
    torch.save({"draft_state_dict": {"t2d": mask, "d2t": d2t, **names}, "global_step": 1000, "epoch": 0,
                "strategy": "eagle3", "run_id": "bench"}, step / "training_state.pt")
    save_json(sf / "config.json", dict(cfg, architectures=["LlamaForCausalLMEagle3"]))  # eaglectl finds it there
    cons = root / "consolidated" / "epoch_0_step_1000"
    save_safetensors(cons / "model" / "model.safetensors", {"model." + k if k != "lm_head.weight" else k: v
                                                              for k, v in t.items()})
    save_json(cons / "model" / "config.json", cfg)
    torch.save(meta, cons / "eagle_meta.pt")
    params = sum(v.numel() for v in t.values())
    print(f"built head: {params / 1e6:.0f} M params ({t['embed_tokens.weight'].numel() / 1e6:.0f} M embeddings)",
          file=sys.stderr)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024 / 1024


def _python_start() -> float:
    """Seconds a bare interpreter takes to start and exit (added to the phases' import time)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def _specforge_command(path: Path | None) -> list[str] | None:
    """How to run SpecForge's CLI: the installed `specforge` command, or this interpreter with `path` on
    PYTHONPATH (SpecForge 0.2.0's exporter runs on CPU with any torch 2.x); None when neither is there."""
    if path is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))
        return [sys.executable, "-m", "specforge.cli"]
    found = shutil.which("specforge")
    return [found] if found else None


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (`--cold`): written back first, then POSIX_FADV_DONTNEED,
    which needs no privileges for clean pages."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# One export with timers around each step (main thread), in a fresh process: interpreter start and imports are
# what the process spent before the first step.
PHASES = r"""
import json, sys, time
t_start = time.monotonic()
from eaglectl.export import exporter, writer
from eaglectl.checkpoint import weights
spent = {}
def timed(mod, name, label):
    real = getattr(mod, name)
    def wrapper(*a, **k):
        t = time.monotonic()
        try:
            return real(*a, **k)
        finally:
            spent[label] = spent.get(label, 0.0) + time.monotonic() - t
    setattr(mod, name, wrapper)
timed(exporter, "resolve", "resolve (config, headers)")
timed(exporter, "load_meta", "read meta (torch-free reader; else torch.load)")
timed(exporter, "build_plan", "plan")
timed(exporter, "require_servable", "checks + loader replay")
timed(exporter, "verify_output", "verify (read-back + replay)")
timed(exporter, "commit_dir", "swap")
timed(exporter.EarlyCopy, "wait_copied", "wait for the early copy")
timed(exporter, "_write_all", "write (copy, generated tensors, fsync)")
timed(exporter._Background, "result", "wait for the NaN / Inf scan")
t0 = time.monotonic()
exporter.export_checkpoint(sys.argv[1], output=sys.argv[2], force=True)
total = time.monotonic() - t0
spent = {"python start + imports": t0 - t_start + float(sys.argv[3]), **spent}
spent["other"] = total - sum(v for k, v in spent.items() if k not in ("python start + imports",
                                                                       "wait for the early copy"))
print(json.dumps(spent))
"""


def weight_files(src: Path) -> list[Path]:
    for name in ("draft_model.pt", "training_state.pt"):
        if (src / name).exists():
            return [src / name]
    return [src / "model" / "model.safetensors"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--naive", action="store_true", help="also time a full torch.load + save_file")
    ap.add_argument("--phases", action="store_true", help="where one export's time goes, per layout")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the built checkpoints")
    ap.add_argument("--specforge-path", type=Path, default=None,
                    help="a directory holding the specforge package (e.g. its wheel unpacked), run with this "
                         "interpreter, when no `specforge` command is installed")
    ap.add_argument("--cold", action="store_true",
                    help="evict the source files from the page cache before every run (a checkpoint not read lately)")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="eaglectl-export-bench-"))
    if args.build_only:
        build(root / "src")
        return
    # Build in a child: a forked child's peak RSS counts the parent's pages until exec, so the parent stays
    # small (no torch) and each measured process reports only its own peak.
    paths = {"legacy draft_model.pt": root / "src" / "legacy",
             "consolidated safetensors": root / "src" / "consolidated" / "epoch_0_step_1000",
             "SpecForge 0.2 training step": root / "src" / "specforge" / "output" / "bench-step1000"}
    if not all(p.exists() for p in paths.values()):  # a --keep'd dir from an older version: built again
        shutil.rmtree(root / "src", ignore_errors=True)
        subprocess.run([sys.executable, __file__, "--dir", str(root), "--build-only"], check=True)
    specforge = _specforge_command(args.specforge_path)
    rows = []
    for name, src in paths.items():
        size = sum(f.stat().st_size for f in weight_files(src))
        cases = {
            "cp -r + sync": lambda d, src=src: ["sh", "-c", f"cp -r {src} {d} && sync -f {d}"],
            "eaglectl export": lambda d, src=src: [sys.executable, "-m", "eaglectl", "export", str(src), "--output",
                                                   str(d), "--force"],
        }
        if specforge and name.startswith("SpecForge"):  # it exports its own training checkpoints only
            cases["specforge export --to sglang"] = lambda d, src=src: [
                *specforge, "export", "--to", "sglang", "--checkpoint", str(src), "--draft-config",
                str(src.parent.parent / "config.json"), "--output-dir", str(d)]
        if args.naive:
            cases["naive torch.load + save_file"] = lambda d, src=src: [sys.executable, "-c", NAIVE, str(src), str(d)]
        walls: dict[str, list[float]] = {c: [] for c in cases}
        rss: dict[str, list[float]] = {c: [] for c in cases}
        for i in range(args.runs + 1):  # the first run warms the page cache (and is not counted)
            for case, make in cases.items():
                dst = root / "out" / f"{case.split()[0]}-{i}"
                shutil.rmtree(dst, ignore_errors=True)
                dst.parent.mkdir(parents=True, exist_ok=True)
                if args.cold:
                    evict([f for f in src.rglob("*") if f.is_file()])
                wall, peak = timed(make(dst))
                shutil.rmtree(dst, ignore_errors=True)
                if i:
                    walls[case].append(wall)
                    rss[case].append(peak)
        ref = statistics.median(walls["cp -r + sync"])
        for case in cases:
            med = statistics.median(walls[case])
            rows.append({"layout": name, "bytes": size, "case": case, "cache": "cold" if args.cold else "warm",
                         "runs": len(walls[case]), "seconds": med, "min": min(walls[case]), "max": max(walls[case]),
                         "peak_rss_gb": max(rss[case]), "vs_cp_sync": med / ref,
                         "paired_ratios": [w / r for w, r in zip(walls[case], walls["cp -r + sync"], strict=True)]})
        if args.phases:
            start = _python_start()
            dst = root / "out" / "phases"
            out = subprocess.run([sys.executable, "-c", PHASES, str(src), str(dst), str(start)], check=True,
                                 capture_output=True, text=True).stdout
            shutil.rmtree(dst, ignore_errors=True)
            rows.append({"layout": name, "case": "phases", "phases": json.loads(out.splitlines()[-1])})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| layout | case | median s (min–max) | × cp -r + sync (median of paired) | peak RSS |")
        print("|---|---|---:|---:|---:|")
        for r in rows:
            if r["case"] == "phases":
                continue
            print(f"| {r['layout']} ({r['bytes'] / 1e9:.2f} GB) | {r['case']} | {r['seconds']:.2f} "
                  f"({r['min']:.2f}–{r['max']:.2f}) | {r['vs_cp_sync']:.2f} "
                  f"({statistics.median(r['paired_ratios']):.2f}) | {r['peak_rss_gb']:.2f} GB |")
        for r in rows:
            if r["case"] == "phases":
                print(f"\nwhere one export of {r['layout']} goes:")
                for k, v in r["phases"].items():
                    print(f"  {k:45} {v:6.2f} s")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
