#!/usr/bin/env python3
"""SGLang target runner throughput: one extend per row vs one batched extend vs the Hugging Face forward.

    python benchmarks/target_runner_bench.py [--shapes 8x1024,4x4096] [--iters 5] [--json OUT] [--model DIR]
                                             [--attention-backend triton]
                                             [--profile TABLES.txt]

A benchmark, not a test: it prints a table and (with --json) writes the numbers. By default it builds a random
Llama-3.2-1B-shaped model (hidden 2048, 16 layers, 32 heads / 8 KV heads, intermediate 8192, vocab 128256, tied
embeddings) in bf16 and measures, for each B x S shape of full-length rows, the `forward_eagle3` wall time of:

* per-row: the SGLang runner called once per row (one extend each, outputs stacked), the pre-eaglectl way;
* batched: the SGLang runner called once for the whole batch (one extend);
* hf: eaglectl's Hugging Face reference runner (transformers, sdpa attention), same dtype, same aux layers.

SGLang uses the triton attention backend (what the targets are stated for) unless `--attention-backend` says
otherwise.

Each case: 2 warm-up calls, then `--iters` timed calls (CUDA-synchronised), median reported; tokens/s counts real
tokens. Then `--iters` calls back to back with one synchronisation at the end ("pipelined": the host prepares a
call while the GPU still runs the previous one), mean reported as a second number, never in place of the first.
Peak GPU memory is torch's allocator peak during the timed calls, in total and above what was allocated
before them (SGLang's KV pool and weights are in the total). SGLang runs first and is closed before the HF model
is loaded, so the two never share the GPU. Top-1 agreement of batched SGLang vs HF over all positions is reported.
Targets: batched >= 3x per-row at 8x1024, batched >= 1.0x HF at every shape.

`--tiny --skip-sglang` runs the HF part on a small model (CPU smoke test of the script itself).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
                max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, vocab_size=512, tie_word_embeddings=True, max_position_embeddings=1024)
TARGET_VS_PER_ROW = 3.0  # at 8x1024
TARGET_VS_HF = 1.0


def build_model(path: Path, shape: dict, device: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**shape, initializer_range=0.02, bos_token_id=1, eos_token_id=2)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    model.to(torch.bfloat16).save_pretrained(str(path))
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, iters: int) -> tuple[float, dict]:
    """Median seconds of `fn()` after 2 warm-ups, and the allocator peak during the timed calls."""
    import torch

    for _ in range(2):
        out = fn()
        del out
    sync()
    cuda = torch.cuda.is_available()
    if cuda:
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
        del out
    mem = {}
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        mem = {"peak_bytes": peak, "peak_above_start_bytes": peak - before}
    # Back to back, one synchronisation at the end: the host prepares call n+1 while the GPU still runs call n
    # (what a data-generation loop sees). Reported beside the per-call number, never instead of it.
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        out = fn()
        del out
    sync()
    mem["pipelined_s"] = (time.perf_counter() - t0) / iters
    return statistics.median(times), mem


PROFILE: Path | None = None  # --profile: where the per-kernel tables go


def _kernel_kind(name: str) -> str:
    n = name.lower()
    if "norm" not in n and any(k in n for k in ("attention", "sdpa", "fmha", "flash_fprop", "flash_fwd",
                                                  "_fwd_kernel")):
        return "attention"
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "sm90_xmma", "cublas", "matmul")):
        return "gemm"
    return "other"


def profile_once(fn, label: str) -> dict:
    """One call under torch.profiler: GPU busy time by kernel kind (the rest of the wall time is the GPU
    waiting for the CPU); the per-kernel table is appended to the --profile file."""
    try:
        return _profile_once(fn, label)
    except Exception as exc:  # the profiler is a diagnostic: never fail the benchmark over it
        return {"error": f"{type(exc).__name__}: {exc}"}


def _profile_once(fn, label: str) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        out = fn()
        sync()
    del out
    kinds: dict[str, float] = {}
    averages = prof.key_averages()
    for evt in averages:
        us = getattr(evt, "self_device_time_total", None)
        if us is None:
            us = getattr(evt, "self_cuda_time_total", 0.0)
        # GPU-side user ranges (SGLang's "step[EXTEND ...]") span kernels already counted: skip them.
        if getattr(evt, "is_user_annotation", False) or evt.key.startswith("step["):
            continue
        if us and evt.device_type == torch.autograd.DeviceType.CUDA:
            kinds[_kernel_kind(evt.key)] = kinds.get(_kernel_kind(evt.key), 0.0) + us / 1e3
    key = "self_device_time_total" if hasattr(averages[0], "self_device_time_total") else \
        "self_cuda_time_total"
    with open(PROFILE, "a", encoding="utf-8") as fh:
        fh.write(f"\n===== {label} =====\n{averages.table(sort_by=key, row_limit=25)}\n")
    return {"gpu_busy_ms": round(sum(kinds.values()), 2), **{f"{k}_ms": round(v, 2) for k, v in kinds.items()}}


def cpu_prep_ms(runner, ids, mask) -> float:
    """Milliseconds from calling forward_eagle3 (GPU idle) to SGLang's ModelRunner.forward: host-side work
    (row checks, requests, ScheduleBatch / ForwardBatch) the GPU waits for."""
    mr = runner._engine.mr
    inner = mr.forward
    marks = []

    def forward(*a, **k):
        marks.append(time.perf_counter())
        return inner(*a, **k)

    mr.forward = forward
    try:
        sync()
        t0 = time.perf_counter()
        out = runner.forward_eagle3(ids, mask)
        sync()
        del out
    finally:
        mr.forward = inner
    return round((marks[0] - t0) * 1e3, 2) if marks else -1.0


def rows(batch: int, seq_len: int, vocab: int, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq_len), generator=gen)
    return ids, torch.ones_like(ids)


def per_row(runner, ids, mask):
    import torch

    outs = [runner.forward_eagle3(ids[i:i + 1], mask[i:i + 1]) for i in range(ids.shape[0])]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def run_sglang(model_dir: Path, shapes, vocab: int, iters: int, results: dict, attention_backend: str) -> dict:
    import torch

    from eaglectl.runner.sglang import SGLangTargetRunner

    max_tokens = max(b * s for b, s in shapes)
    t0 = time.perf_counter()
    runner = SGLangTargetRunner(str(model_dir), dtype="bfloat16", attention_backend=attention_backend,
                                sampling_backend="pytorch", disable_cuda_graph=True,
                                max_total_tokens=max_tokens + 1024)
    load_s = time.perf_counter() - t0
    top1 = {}
    try:
        runner.set_aux_layers(None)
        info = {"load_s": round(load_s, 1), "api": runner.api.shape if runner.api else None,
                "settings": runner.engine_settings,
                "aux_layer_ids": runner.aux_layer_ids, "limits": vars(runner.limits)}
        for b, s in shapes:
            ids, mask = rows(b, s, vocab)
            r = results.setdefault(f"{b}x{s}", {"batch": b, "seq_len": s, "tokens": b * s})
            sec, mem = timed(lambda ids=ids, mask=mask: runner.forward_eagle3(ids, mask), iters)
            r["batched"] = {"s": sec, "tok_s": b * s / sec, "extends": runner.last_extend_count, **mem}
            if PROFILE is not None:
                r["batched"]["cpu_before_forward_ms"] = cpu_prep_ms(runner, ids, mask)
                r["batched"]["profile"] = profile_once(lambda ids=ids, mask=mask: runner.forward_eagle3(ids, mask),
                                                       f"sglang batched {b}x{s}")
            sec, mem = timed(lambda ids=ids, mask=mask: per_row(runner, ids, mask), iters)
            r["per_row"] = {"s": sec, "tok_s": b * s / sec, "extends": b, **mem}
            logits, _ = runner.forward_eagle3(ids, mask)
            top1[f"{b}x{s}"] = logits.argmax(-1).cpu()
            del logits
            gc.collect()
    finally:
        runner.close()
    torch.cuda.empty_cache()
    info["top1"] = top1
    return info


def run_hf(model_dir: Path, shapes, vocab: int, iters: int, results: dict, device: str) -> dict:
    import torch

    from eaglectl.runner.hf import HFTargetRunner

    t0 = time.perf_counter()
    runner = HFTargetRunner(str(model_dir), dtype="bfloat16", device=device)
    load_s = time.perf_counter() - t0
    top1 = {}
    try:
        runner.set_aux_layers(None)
        for b, s in shapes:
            ids, mask = rows(b, s, vocab)
            r = results.setdefault(f"{b}x{s}", {"batch": b, "seq_len": s, "tokens": b * s})
            sec, mem = timed(lambda ids=ids, mask=mask: runner.forward_eagle3(ids, mask), iters)
            r["hf"] = {"s": sec, "tok_s": b * s / sec, **mem}
            if PROFILE is not None:
                r["hf"]["profile"] = profile_once(lambda ids=ids, mask=mask: runner.forward_eagle3(ids, mask),
                                                  f"hf {b}x{s}")
            logits, _ = runner.forward_eagle3(ids, mask)
            top1[f"{b}x{s}"] = logits.argmax(-1).cpu()
            del logits
    finally:
        runner.close()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"load_s": round(load_s, 1), "top1": top1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="8x1024,4x4096", help="comma-separated BxS shapes")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--model", type=Path, help="an existing model directory instead of the random 1B-shaped one")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model (smoke test)")
    ap.add_argument("--skip-sglang", action="store_true", help="HF only (no GPU / SGLang needed)")
    ap.add_argument("--attention-backend", default="triton",
                    help="SGLang attention backend (the targets are stated for triton)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--profile", type=Path, help="profile one batched SGLang call and one HF call per shape "
                    "(after the timed ones); per-kernel tables go to this file, GPU busy time into the results")
    args = ap.parse_args()
    global PROFILE
    PROFILE = args.profile

    import torch

    shapes = [tuple(int(x) for x in sh.lower().split("x")) for sh in args.shapes.split(",")]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_shape = TINY if args.tiny else LLAMA_1B
    tmp = None
    if args.model is None:
        tmp = tempfile.TemporaryDirectory(prefix="eaglectl-bench-")
        model_dir = Path(tmp.name) / "llama"
        t0 = time.perf_counter()
        build_model(model_dir, model_shape, device)
        print(f"built random model in {time.perf_counter() - t0:.1f} s: {model_dir}", file=sys.stderr)
        vocab = model_shape["vocab_size"]
    else:
        model_dir = args.model
        vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]

    results: dict = {}
    sgl = None
    if not args.skip_sglang:
        sgl = run_sglang(model_dir, shapes, vocab, args.iters, results, args.attention_backend)
    hf = run_hf(model_dir, shapes, vocab, args.iters, results, device)

    for key, r in results.items():
        if sgl is not None:
            r["top1_agreement_batched_vs_hf"] = float((sgl["top1"][key] == hf["top1"][key]).float().mean())
            r["batched_vs_per_row"] = r["batched"]["tok_s"] / r["per_row"]["tok_s"]
            r["batched_vs_hf"] = r["batched"]["tok_s"] / r["hf"]["tok_s"]
            r["pipelined_batched_vs_hf"] = r["hf"]["pipelined_s"] / r["batched"]["pipelined_s"]
            r["met"] = {"vs_hf": r["batched_vs_hf"] >= TARGET_VS_HF}
            if (r["batch"], r["seq_len"]) == (8, 1024):
                r["met"]["vs_per_row"] = r["batched_vs_per_row"] >= TARGET_VS_PER_ROW
    for info in (sgl, hf):
        if info is not None:
            info.pop("top1", None)

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("transformers", "sglang", "triton"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # a version string is informative only
            versions[mod] = None
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           "versions": versions, "model": model_shape if args.model is None else str(args.model),
           "dtype": "bfloat16", "iters": args.iters, "sglang": sgl, "hf": hf, "results": results}
    print(json.dumps(doc, indent=2, default=str))
    print(f"\n{'shape':>8} {'per-row tok/s':>14} {'batched tok/s':>14} {'hf tok/s':>10} {'b/per-row':>10} "
          f"{'b/hf':>6} {'peak GiB (b / hf)':>18} {'top-1':>6}")
    for key, r in results.items():
        gib = lambda d: d.get("peak_bytes", 0) / 2**30  # noqa: E731
        if sgl is None:
            print(f"{key:>8} {'-':>14} {'-':>14} {r['hf']['tok_s']:>10.0f}")
            continue
        print(f"{key:>8} {r['per_row']['tok_s']:>14.0f} {r['batched']['tok_s']:>14.0f} {r['hf']['tok_s']:>10.0f} "
              f"{r['batched_vs_per_row']:>10.2f} {r['batched_vs_hf']:>6.2f} "
              f"{gib(r['batched']):>8.2f} / {gib(r['hf']):<7.2f} {r['top1_agreement_batched_vs_hf']:>6.3f}"
              f"   pipelined b/hf {r['pipelined_batched_vs_hf']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
