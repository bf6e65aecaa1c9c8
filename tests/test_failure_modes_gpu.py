"""GPU proof for the silent failure modes (marked gpu): the distilled fixture head served by real SGLang as it
was trained, broken the way users' heads were (`tie_word_embeddings: true` beside a trained reduced-vocab
`lm_head`), and the broken head after `eaglectl serve` exported it.

Needs CUDA, SGLang and the distilled fixture (EAGLECTL_DISTILL_FIXTURE, as tests/test_serve_gpu.py). Writes the
accept lengths to `failure_modes_report.json` beside EAGLECTL_GPU_REPORT when set.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    DISTILL_FIXTURE,
    distilled_nemo_head,
    gpu_requirements,
    raw_accept_length,
    serve_smoke,
)

pytestmark = pytest.mark.gpu


def test_tied_lm_head_collapses_as_is_and_serves_after_eaglectl(tmp_path):
    reason = gpu_requirements()
    if reason:
        pytest.skip(reason)
    fixture = Path(DISTILL_FIXTURE)
    prompts = fixture / "prompts.json"
    tied = tmp_path / "tied"
    shutil.copytree(fixture / "specforge", tied)
    config = json.loads((tied / "config.json").read_text())
    config["tie_word_embeddings"] = True  # what SpecForge PR-era heads and hand-edited configs carried
    (tied / "config.json").write_text(json.dumps(config, indent=2))

    reference = raw_accept_length(fixture / "target", fixture / "specforge", prompts)
    as_is = raw_accept_length(fixture / "target", tied, prompts)
    doc, _ = serve_smoke(fixture / "target", tied, prompts)
    fixed = doc["result"]["smoke"]["mean_accept_length"]
    exported = Path(doc["result"]["draft_model_path"])
    report = {"reference_untied": reference, "tied_as_is": as_is, "tied_after_eaglectl": fixed,
              "exported_tie_word_embeddings": json.loads((exported / "config.json").read_text()).get(
                  "tie_word_embeddings")}
    if os.environ.get("EAGLECTL_GPU_REPORT"):
        Path(os.environ["EAGLECTL_GPU_REPORT"]).with_name("failure_modes_report.json").write_text(
            json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert report["exported_tie_word_embeddings"] is False, report
    assert reference is not None and fixed is not None, report
    assert abs(fixed - reference) <= 0.05, report
    assert as_is is None or as_is < reference - 0.5, report


def test_unpinned_nemo_head_on_a_deeper_target_and_pinned_by_eaglectl(tmp_path):
    """aux-ids-unpinned on real SGLang: the NeMo head (no aux ids recorded) on a 32-layer copy of its 8-layer target
    that computes the same function. Unpinned, SGLang captures that target's default layers and acceptance drops;
    with `--aux-layer-ids 1 3 4` it is the fixture's again."""
    import subprocess

    fixture, nemo = distilled_nemo_head(tmp_path)
    deep = tmp_path / "deep"
    subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "deepen_target.py"),
                    str(fixture / "target"), str(deep), "32"], check=True, capture_output=True)
    prompts = fixture / "prompts.json"
    unpinned, _ = serve_smoke(deep, nemo, prompts)
    pinned, _ = serve_smoke(deep, nemo, prompts, "--aux-layer-ids", "1", "3", "4")
    reference, _ = serve_smoke(fixture / "target", nemo, prompts)
    accept = {name: doc["result"]["smoke"]["mean_accept_length"]
              for name, doc in (("unpinned", unpinned), ("pinned", pinned), ("reference", reference))}
    print(json.dumps(accept, indent=2))
    assert any("records no aux layer ids" in w for w in unpinned["result"]["warnings"]), unpinned["result"]
    assert abs(accept["pinned"] - accept["reference"]) <= 0.05, accept
    assert accept["unpinned"] < accept["reference"] - 0.2, accept
