#!/usr/bin/env python3
"""Where the host time of one batched `forward_eagle3` goes, phase by phase (a diagnostic, not a test).

    python benchmarks/target_runner_host_phases.py [--shapes 4x4096,8x1024] [--iters 8] [--model DIR]
                                                   [--cprofile FILE]

Builds the same random Llama-3.2-1B-shaped model as target_runner_bench.py, wraps the runner's and SGLang's
stages with wall-clock marks (no synchronisation inside the call), and prints, per shape, the median time from
calling `forward_eagle3` (GPU idle) to entering each stage. Everything before `model.forward>` is host work
the GPU waits for; `gpu_event_ms` is the GPU time from the call to the end of its last kernel. `--cprofile`
also writes a cProfile listing (by cumulative time) of the calls of the first shape, for the functions the marks
do not separate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4x4096,8x1024")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--model", type=Path, help="an existing model directory instead of a new random one")
    ap.add_argument("--cprofile", type=Path, help="write a cProfile listing of the first shape's calls here")
    args = ap.parse_args()

    import torch
    from target_runner_bench import LLAMA_1B, build_model, rows

    from eaglectl.runner.sglang import engine as engine_mod
    from eaglectl.runner.sglang import runner as runner_mod

    model_dir = args.model
    if model_dir is None:
        model_dir = Path(tempfile.mkdtemp(prefix="eaglectl-phases-")) / "llama"
        build_model(model_dir, LLAMA_1B, "cuda")
    shapes = [tuple(int(x) for x in sh.split("x")) for sh in args.shapes.split(",")]
    runner = runner_mod.SGLangTargetRunner(str(model_dir), dtype="bfloat16", attention_backend="triton",
                                           sampling_backend="pytorch", disable_cuda_graph=True,
                                           max_total_tokens=max(b * s for b, s in shapes) + 1024)
    runner.set_aux_layers(None)
    engine = runner._engine
    sg, mr = engine._sg, engine.mr
    marks: dict[str, float] = {}

    def mark(label: str, fn):
        def wrapped(*a, **k):
            marks.setdefault(label + ">", time.perf_counter())
            out = fn(*a, **k)
            marks.setdefault(label + "<", time.perf_counter())
            return out
        return wrapped

    # Patched where they are looked up: the runner's row checks, the engine's sink and request building.
    for module, name in ((runner_mod, "row_lengths"), (runner_mod, "check_token_ids"), (runner_mod, "token_rows"),
                         (runner_mod, "plan_extends"), (engine_mod, "ExtendSink"), (engine_mod, "make_req")):
        setattr(module, name, mark(name, getattr(module, name)))
    for obj, name, label in ((engine, "forward", "engine.forward"), (engine, "_extend", "extend"),
                             (mr, "forward", "ModelRunner.forward"),
                             (mr.attn_backend, "init_forward_metadata", "attention metadata"),
                             (engine.model, "forward", "model.forward")):
        setattr(obj, name, mark(label, getattr(obj, name)))
    prepare = sg.ScheduleBatch.prepare_for_extend
    sg.ScheduleBatch.prepare_for_extend = lambda self: mark("prepare_for_extend", prepare)(self)
    init_new = sg.ForwardBatch.init_new.__func__
    sg.ForwardBatch.init_new = classmethod(lambda cls, *a, **k: mark("ForwardBatch.init_new", init_new)(cls, *a, **k))

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    try:
        for b, s in shapes:
            ids, mask = rows(b, s, engine.vocab_size)
            seen: dict[str, list[float]] = {}
            for i in range(args.iters + 2):
                torch.cuda.synchronize()
                marks.clear()
                t0 = time.perf_counter()
                start.record()
                out = runner.forward_eagle3(ids, mask)
                returned = time.perf_counter()
                end.record()
                torch.cuda.synchronize()
                wall = time.perf_counter() - t0
                del out
                if i < 2:
                    continue
                for k, v in marks.items():
                    seen.setdefault(k, []).append((v - t0) * 1e3)
                seen.setdefault("returned", []).append((returned - t0) * 1e3)
                seen.setdefault("gpu_event_ms", []).append(start.elapsed_time(end))
                seen.setdefault("wall_ms", []).append(wall * 1e3)
            if args.cprofile is not None and (b, s) == shapes[0]:
                import cProfile
                import io
                import pstats

                prof = cProfile.Profile()
                for _ in range(args.iters):
                    torch.cuda.synchronize()
                    prof.enable()
                    out = runner.forward_eagle3(ids, mask)
                    prof.disable()
                    torch.cuda.synchronize()
                    del out
                text = io.StringIO()
                pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(80)
                args.cprofile.write_text(f"{b}x{s}, {args.iters} calls\n{text.getvalue()}")
            print(f"== {b}x{s} (medians of {args.iters} calls, ms from the call)")
            for k, v in sorted(seen.items(), key=lambda kv: statistics.median(kv[1])):
                print(f"  {k:>26} {statistics.median(v):8.2f}")
    finally:
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
