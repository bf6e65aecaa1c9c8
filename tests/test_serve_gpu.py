"""GPU proof for `serve` (marked gpu): a NeMo-layout EAGLE-3 head, exported and served by real SGLang.

Needs CUDA, SGLang and the distilled fixture of shared/fixtures/distill_eagle3.py, named by
EAGLECTL_DISTILL_FIXTURE (the directory holding target/, nemo/, prompts.json). Writes what it measured to
EAGLECTL_GPU_REPORT when set.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import DISTILL_FIXTURE, distilled_nemo_head, gpu_requirements, serve_smoke

pytestmark = pytest.mark.gpu

BF16_NOISE = 0.15  # logit gap (float32 target) below which a token is a bf16 near-tie, not an error


def _teacher_forcing(target_dir: Path, requests: list[dict]) -> dict:
    """Score every emitted token with the target itself (transformers, float32 compute)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(target_dir), dtype=torch.float32).eval()
    total = exact = 0
    worst_gap = 0.0
    greedy_match = 0
    with torch.no_grad():
        for r in requests:
            prompt, out = r["prompt"], r["output_ids"]
            ids = torch.tensor([prompt + out])
            logits = model(ids).logits[0].float()
            for i, tok in enumerate(out):
                row = logits[len(prompt) + i - 1]
                gap = float(row.max() - row[tok])
                worst_gap = max(worst_gap, gap)
                exact += int(gap == 0.0)
                total += 1
            plain = model.generate(torch.tensor([prompt]), max_new_tokens=len(out), do_sample=False)[0, len(prompt):]
            greedy_match += int(plain.tolist() == out)
    return {"tokens": total, "argmax_rate": exact / total, "worst_logit_gap": worst_gap,
            "plain_greedy_exact_match": f"{greedy_match}/{len(requests)}"}


def test_nemo_head_serves_with_full_acceptance_and_is_lossless(tmp_path):
    fixture, draft = distilled_nemo_head(tmp_path)
    doc, wall = serve_smoke(fixture / "target", draft, fixture / "prompts.json")
    r = doc["result"]
    assert r["exported"] == "written" and r["draft_model_path"] == str(draft / "sglang")
    from eaglectl.engines.sglang.rules import range_label

    assert r["sglang_version"] and r["sglang_rules"] == range_label(r["sglang_version"])  # checked, then served
    mean = r["smoke"]["mean_accept_length"]
    report = {"mean_accept_length": mean, "per_prompt": [q["spec_accept_length"] for q in r["smoke"]["requests"]],
              "startup_seconds": r["startup_seconds"], "wall_seconds": round(wall, 1),
              "smoke_seconds": r["smoke"]["total_seconds"], "tokens": r["smoke"]["total_tokens"]}
    report["lossless"] = _teacher_forcing(fixture / "target", r["smoke"]["requests"])
    if os.environ.get("EAGLECTL_GPU_REPORT"):
        Path(os.environ["EAGLECTL_GPU_REPORT"]).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert mean >= 1.9, report
    assert report["lossless"]["worst_logit_gap"] <= BF16_NOISE, report


def test_legacy_draft_model_pt_serves_with_full_acceptance(tmp_path):
    """The same distilled head re-saved in NeMo's legacy layout (`draft_model.pt`, `draft_model.` prefix, stale
    32-layer config, `eagle3_meta.pt`): the export kernel-copies the pickled storages out of the zip, and the
    acceptance length proves every weight arrived intact."""
    reason = gpu_requirements()
    if reason:
        pytest.skip(reason)
    import torch
    from safetensors.torch import load_file

    fixture = Path(DISTILL_FIXTURE)
    src = fixture / "nemo" / "epoch_0_step_100"
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    state = load_file(str(src / "model" / "model.safetensors"))
    torch.save({"draft_model." + (k[len("model."):] if k.startswith("model.") else k): v for k, v in state.items()},
               legacy / "draft_model.pt")
    config = json.loads((src / "model" / "config.json").read_text())
    config["num_hidden_layers"] = 32  # stale, as NeMo's legacy helper left it
    (legacy / "config.json").write_text(json.dumps(config))
    shutil.copy(src / "eagle_meta.pt", legacy / "eagle3_meta.pt")
    doc, wall = serve_smoke(fixture / "target", legacy, fixture / "prompts.json")
    r = doc["result"]
    assert r["exported"] == "written" and r["draft_model_path"] == str(legacy / "sglang")
    report = {"mean_accept_length": r["smoke"]["mean_accept_length"], "wall_seconds": round(wall, 1),
              "lossless": _teacher_forcing(fixture / "target", r["smoke"]["requests"])}
    if os.environ.get("EAGLECTL_GPU_REPORT"):
        Path(os.environ["EAGLECTL_GPU_REPORT"]).with_name("serve_legacy_report.json").write_text(
            json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert report["mean_accept_length"] >= 1.9, report
    assert report["lossless"]["worst_logit_gap"] <= BF16_NOISE, report


def test_tp2_serves_losslessly_like_tp1(tmp_path):
    """`serve --tp-size 2`: same head, two GPUs; greedy output scored against the target and compared with tp 1."""
    reason = gpu_requirements()
    if reason:
        pytest.skip(reason)
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    fixture = Path(DISTILL_FIXTURE)
    runs = {}
    for tp in (1, 2):
        work = tmp_path / f"tp{tp}"
        shutil.copytree(fixture / "nemo", work / "nemo")
        doc, wall = serve_smoke(fixture / "target", work / "nemo" / "epoch_0_step_100", fixture / "prompts.json",
                           "--tp-size", str(tp))
        runs[tp] = (doc["result"], wall)
    outs = {tp: [q["output_ids"] for q in r["smoke"]["requests"]] for tp, (r, _) in runs.items()}
    same = sum(a == b for a, b in zip(outs[1], outs[2], strict=True))
    report = {f"tp{tp}": {"mean_accept_length": r["smoke"]["mean_accept_length"], "startup_seconds":
                          r["startup_seconds"], "smoke_seconds": r["smoke"]["total_seconds"],
                          "wall_seconds": round(wall, 1)} for tp, (r, wall) in runs.items()}
    report["tp2_vs_tp1_exact_prompts"] = f"{same}/{len(outs[1])}"
    report["tp2_lossless"] = _teacher_forcing(fixture / "target", runs[2][0]["smoke"]["requests"])
    if os.environ.get("EAGLECTL_GPU_REPORT"):
        Path(os.environ["EAGLECTL_GPU_REPORT"]).with_name("serve_tp2_report.json").write_text(
            json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert runs[2][0]["smoke"]["mean_accept_length"] >= 1.9, report
    assert report["tp2_lossless"]["worst_logit_gap"] <= BF16_NOISE, report
