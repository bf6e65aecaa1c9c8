"""GPU proof for `bench` (marked gpu): the distilled fixture's NeMo-layout head through a real SGLang sweep.

Needs CUDA, SGLang and the fixture of shared/fixtures/distill_eagle3.py, named by EAGLECTL_DISTILL_FIXTURE. Writes
what it measured to bench_report.json beside EAGLECTL_GPU_REPORT when set.

Budget (< 9 min on an H200, one SGLang start ~50 s): one `serve --smoke-only` (the reference accept length) and a
sweep of baseline + 4 configurations = 6 starts, ~5 min; 8 prompts x 64 tokens at batch sizes 1 and 8 add well
under a minute per configuration. CUDA graphs stay off, as in the serve proof: the accept length is then compared
with `serve --smoke` under the same flags, and each start skips graph capture (the fixture's 8-layer, hidden-64
target is launch-bound either way, so its speedup says little about real models; the speedup proof needs a target
whose forward costs more than the drafter's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import SGLANG_FLAGS, distilled_nemo_head, serve_smoke, sglang_port

pytestmark = pytest.mark.gpu

# EAGLECTL_BENCH_CONFIGS ("S,K,N;S,K,N") trims the sweep and EAGLECTL_SMOKE_ACCEPT (a `serve --smoke` mean accept
# length measured on the same fixture, prompts and flags) replaces the reference run, where device time is short.
CONFIGS = os.environ.get("EAGLECTL_BENCH_CONFIGS", "1,1,2;3,1,4;5,1,6;3,4,8").split(";")
ACCEPT_TOLERANCE = 0.05


def test_bench_sweep_on_the_distilled_fixture(tmp_path):
    fixture, draft = distilled_nemo_head(tmp_path)
    prompts = fixture / "prompts.json"
    if os.environ.get("EAGLECTL_SMOKE_ACCEPT"):
        smoke_accepts, smoke_wall = [float(os.environ["EAGLECTL_SMOKE_ACCEPT"])], 0.0
    else:
        smoke, smoke_wall = serve_smoke(fixture / "target", draft, prompts)
        smoke_accepts = [q["spec_accept_length"] for q in smoke["result"]["smoke"]["requests"]][:8]

    results = tmp_path / "bench.jsonl"
    cmd = [sys.executable, "-m", "eaglectl", "bench", "--json", "--target", str(fixture / "target"), "--draft",
           str(draft), "--port", str(sglang_port()), *[a for c in CONFIGS for a in ("--config", c)],
           "--batch-size", "1,8", "--prompts", str(prompts), "--num-prompts", "8", "--max-new-tokens", "64",
           "--min-seconds", "3", "--min-tokens", "1000", "--repeats", "3",  # a bounded window: the sweep fits 420 s
           "--results", str(results), "--timeout", "300", "--mem-fraction-static", "0.5", "--", *SGLANG_FLAGS]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout)["result"]
    ms = {(m["config"], m["batch_size"]): m for m in r["measurements"]}
    bench_accepts = ms[("3,1,4", 1)]["per_request_accept_length"]
    report = {
        "wall_seconds": round(wall, 1), "smoke_wall_seconds": round(smoke_wall, 1),
        "smoke_mean_accept_length": round(sum(smoke_accepts) / len(smoke_accepts), 4),
        "bench_mean_accept_length_3_1_4_bs1": round(sum(bench_accepts) / len(bench_accepts), 4),
        "sglang_version": r["sglang_version"],
        "configs": {run["config"]: {k: run[k] for k in ("status", "startup_seconds", "gpu_memory_gb", "error")}
                    for run in r["configs"]},
        "measurements": [{k: m[k] for k in ("config", "batch_size", "tokens_per_s", "tokens_per_s_min",
                                            "tokens_per_s_max", "speedup", "speedup_min", "speedup_max",
                                            "beats_baseline", "repeats", "passes", "wall_s", "output_tokens",
                                            "per_request_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms",
                                            "itl_p99_ms", "accept_length_mean", "accept_length_p50",
                                            "accept_length_p90", "accept_histogram")}
                         | {"agreement": m["agreement"] and {k: m["agreement"][k] for k in (
                             "exact", "compared", "median_first_divergence")}}
                         for m in r["measurements"]],
        "recommended": r["recommended"] and {k: r["recommended"][k] for k in ("config", "score", "beats_baseline",
                                                                            "command")},
        "speculation_pays": r["speculation_pays"],
        "findings": [f["code"] for f in r["findings"]],
        "results_lines": len(results.read_text().splitlines()),
    }
    if os.environ.get("EAGLECTL_GPU_REPORT"):
        Path(os.environ["EAGLECTL_GPU_REPORT"]).with_name("bench_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert [run["status"] for run in r["configs"]] == ["measured"] * (1 + len(CONFIGS)), report
    assert set(ms) == {(c, b) for c in ["baseline", *CONFIGS] for b in (1, 8)}, report
    assert abs(report["bench_mean_accept_length_3_1_4_bs1"] - report["smoke_mean_accept_length"]) <= ACCEPT_TOLERANCE
    assert all(m["agreement"] is not None for m in r["measurements"] if m["config"] != "baseline"), report
    assert report["results_lines"] == 1 + 2 * (1 + len(CONFIGS)), report  # the header and one line per measurement
    assert r["recommended"] is not None and r["recommended"]["command"].startswith("eaglectl serve"), report
    assert all(m["repeats"] == 3 and min(m["repeat_wall_s"]) >= 3 and min(m["repeat_tokens"]) >= 1000
               for m in r["measurements"]), report
