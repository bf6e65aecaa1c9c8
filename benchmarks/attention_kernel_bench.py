#!/usr/bin/env python3
"""The attention kernel alone: SGLang's triton extend kernel vs torch SDPA, at the target-runner bench shapes.

    python benchmarks/attention_kernel_bench.py [--shapes 8x1024,4x4096] [--iters 20]

A benchmark, not a test. Why it exists: at 4x4096 the batched SGLang extend spends most of its non-GEMM GPU time
in `extend_attention_fwd` (the `triton` attention backend the runner benchmark pins), while the Hugging Face
reference uses torch SDPA (cuDNN / flash). This measures that one kernel in isolation, per shape, with the
Llama-3.2-1B attention geometry (32 query heads, 8 KV heads, head dim 64, bf16, causal, no prefix), times 16
layers, so the gap can be set beside the end-to-end numbers. CUDA-event timing, median of `--iters`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

HEADS, KV_HEADS, HEAD_DIM, LAYERS = 32, 8, 64, 16


def cuda_ms(fn, iters: int) -> float:
    import torch

    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench_shape(batch: int, seq_len: int, iters: int) -> dict:
    import torch
    import torch.nn.functional as F
    from sglang.srt.layers.attention.triton_ops.extend_attention import extend_attention_fwd

    dev, dt = "cuda", torch.bfloat16
    tokens = batch * seq_len
    gen = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(tokens, HEADS, HEAD_DIM, device=dev, dtype=dt, generator=gen)
    k = torch.randn(tokens, KV_HEADS, HEAD_DIM, device=dev, dtype=dt, generator=gen)
    v = torch.randn(tokens, KV_HEADS, HEAD_DIM, device=dev, dtype=dt, generator=gen)
    o = torch.empty_like(q)
    qo_indptr = torch.arange(0, tokens + 1, seq_len, device=dev, dtype=torch.int32)
    kv_indptr = torch.zeros(batch + 1, device=dev, dtype=torch.int32)  # no prefix: every row is new
    kv_indices = torch.empty(0, device=dev, dtype=torch.int64)

    def triton_extend():
        extend_attention_fwd(q, k, v, o, k, v, qo_indptr, kv_indptr, kv_indices, None, True, None, seq_len,
                             1.0, 1.0, sm_scale=HEAD_DIM ** -0.5)

    qb = q.view(batch, seq_len, HEADS, HEAD_DIM).transpose(1, 2)
    kb = k.view(batch, seq_len, KV_HEADS, HEAD_DIM).transpose(1, 2)
    vb = v.view(batch, seq_len, KV_HEADS, HEAD_DIM).transpose(1, 2)
    group = HEADS // KV_HEADS
    kr, vr = kb.repeat_interleave(group, dim=1), vb.repeat_interleave(group, dim=1)  # what HF's repeat_kv does

    def sdpa():
        return F.scaled_dot_product_attention(qb, kr, vr, is_causal=True)

    # Same maths: check before timing, so a wrong call cannot produce a fast number.
    triton_extend()
    ref = sdpa().transpose(1, 2).reshape(tokens, HEADS, HEAD_DIM)
    max_diff = float((o.float() - ref.float()).abs().max())
    if not max_diff < 0.05:
        raise SystemExit(f"{batch}x{seq_len}: triton and SDPA disagree (max abs {max_diff}); not timing them")
    t_triton, t_sdpa = cuda_ms(triton_extend, iters), cuda_ms(sdpa, iters)
    flops = 4 * batch * HEADS * HEAD_DIM * seq_len * (seq_len + 1) / 2  # causal QK^T and PV
    return {"shape": f"{batch}x{seq_len}", "triton_ms": t_triton, "sdpa_ms": t_sdpa,
            "triton_x16_layers_ms": t_triton * LAYERS, "sdpa_x16_layers_ms": t_sdpa * LAYERS,
            "triton_tflops": flops / t_triton / 1e9, "sdpa_tflops": flops / t_sdpa / 1e9,
            "triton_over_sdpa": t_triton / t_sdpa, "max_abs_diff": max_diff}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="8x1024,4x4096")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    import torch

    shapes = [tuple(int(x) for x in sh.lower().split("x")) for sh in args.shapes.split(",")]
    rows = [bench_shape(b, s, args.iters) for b, s in shapes]
    doc = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": rows}
    print(json.dumps(doc, indent=2))
    for r in rows:
        print(f"{r['shape']:>8}: triton {r['triton_ms']:.3f} ms ({r['triton_tflops']:.0f} TFLOP/s), sdpa "
              f"{r['sdpa_ms']:.3f} ms ({r['sdpa_tflops']:.0f} TFLOP/s), x{r['triton_over_sdpa']:.2f}; "
              f"16 layers: {r['triton_x16_layers_ms']:.1f} vs {r['sdpa_x16_layers_ms']:.1f} ms")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
