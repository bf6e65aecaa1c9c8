"""GPU proofs of SGLang config rules on real SGLang (marked gpu): a full-vocab EAGLE-3 head whose config has no
draft_vocab_size does not start as it is, and starts from eaglectl's export (which writes the key); a head saved by
transformers 5 (RoPE base only in `rope_parameters`) keeps its base after eaglectl's export, both in what SGLang's
own config parsing builds and in the acceptance it serves with.

Needs CUDA, SGLang and the distilled fixture (EAGLECTL_DISTILL_FIXTURE, as tests/test_serve_gpu.py). Writes its
figures to `sglang_rules_report.json` / `sglang_rope_report.json` beside EAGLECTL_GPU_REPORT when set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    DISTILL_FIXTURE,
    gpu_requirements,
    raw_accept_length,
    raw_sglang_argv,
    serve_smoke,
    sglang_port,
)
from tests.oracle.driver import run_harness

pytestmark = pytest.mark.gpu


def full_vocab_head(src: Path, dst: Path) -> None:
    """The fixture's reduced-vocab head as a full-vocab one: lm_head rows scattered to their target ids (the other
    rows zero), no d2t / t2d, and no draft_vocab_size in the config (as hand-made full-vocab configs are)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    d2t = tensors.pop("d2t")
    tensors.pop("t2d", None)
    config = json.loads((dst / "config.json").read_text())
    head = tensors["lm_head.weight"]
    full = torch.zeros(config["vocab_size"], head.shape[1], dtype=head.dtype)
    full[d2t + torch.arange(d2t.numel())] = head
    tensors["lm_head.weight"] = full
    save_file(tensors, str(dst / "model.safetensors"))
    config.pop("draft_vocab_size")
    (dst / "config.json").write_text(json.dumps(config, indent=2))


def _starts_as_is(target: Path, draft: Path) -> tuple[bool, str]:
    """SGLang launched directly on the head: whether /health answered, and the end of its log."""
    from eaglectl.errors import EaglectlError
    from eaglectl.serving import launcher

    port = sglang_port()
    server = launcher.ServerProcess(raw_sglang_argv(target, draft, port), dict(os.environ))
    server.start()
    try:
        server.wait_healthy(f"http://127.0.0.1:{port}", timeout=300)
        return True, ""
    except EaglectlError:
        return False, server.log_tail(200)
    finally:
        server.stop()


def test_full_vocab_head_without_draft_vocab_size_starts_only_after_export(tmp_path):
    reason = gpu_requirements()
    if reason:
        pytest.skip(reason)
    fixture = Path(DISTILL_FIXTURE)
    head = tmp_path / "full-vocab"
    full_vocab_head(fixture / "specforge", head)
    started, log = _starts_as_is(fixture / "target", head)
    doc, wall = serve_smoke(fixture / "target", head, fixture / "prompts.json")
    exported = Path(doc["result"]["draft_model_path"])
    cause = next((line for line in log.splitlines() if "Error" in line and "draft_vocab_size" in line), "")
    report = {"starts_as_is": started, "as_is_error": cause,
              "exported_draft_vocab_size": json.loads((exported / "config.json").read_text()).get("draft_vocab_size"),
              "after_export_accept_length": doc["result"]["smoke"]["mean_accept_length"], "serve_seconds": wall}
    if os.environ.get("EAGLECTL_GPU_REPORT"):
        Path(os.environ["EAGLECTL_GPU_REPORT"]).with_name("sglang_rules_report.json").write_text(
            json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert not started and "AttributeError" in cause, report
    assert report["exported_draft_vocab_size"] == json.loads((head / "config.json").read_text())["vocab_size"]
    assert report["after_export_accept_length"] >= 1.0, report


def _with_config(src: Path, dst: Path, edit) -> Path:
    """A copy of the head at `src` whose config.json is `edit(config)`."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    edit(config)
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    return dst


def _rope_base_sglang_builds(heads: dict[str, Path]) -> dict[str, float | None]:
    """The RoPE base of the draft layer SGLang builds for each head: the installed release's own config parsing
    and draft model class (tests/oracle/harness.py --installed, on the GPU)."""
    doc = run_harness(list(heads.values()), python=sys.executable, src=None, installed=True, device="cuda",
                      timeout=300)
    assert not doc.get("error"), doc
    by_dir = {str(Path(r["draft_dir"]).resolve()): r for r in doc["results"]}
    bases = {}
    for name, path in heads.items():
        record = by_dir[str(path.resolve())]
        assert not record.get("error"), (name, record)
        bases[name] = record["values"]["rope_base"]
    return bases


def test_transformers5_head_keeps_its_rope_base_after_export(tmp_path):
    """The fixture's SpecForge head was saved by transformers 5: its RoPE base (500000) is only in
    `rope_parameters`. Releases that pin transformers 4 (SGLang 0.5.9) read the top-level `rope_theta` and fall back
    to 10000 without it; eaglectl's export mirrors the base there. Shown on the installed release: the base SGLang
    builds for the export, for the export as transformers 4 sees it (no `rope_parameters`) and for the head as
    transformers 4 sees it; then the acceptance of the export, of the head as trained, and of the head run with
    base 10000 (what a transformers-4 release does to the unexported head)."""
    reason = gpu_requirements()
    if reason:
        pytest.skip(reason)
    fixture = Path(DISTILL_FIXTURE)
    head = fixture / "specforge"
    trained = json.loads((head / "config.json").read_text())
    assert "rope_theta" not in trained and trained["rope_parameters"]["rope_theta"] == 500000.0, trained

    exported = tmp_path / "exported"
    proc = subprocess.run([sys.executable, "-m", "eaglectl", "export", str(head), "-o", str(exported), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    exported_config = json.loads((exported / "config.json").read_text())
    bases = _rope_base_sglang_builds({
        "head as trained": head,
        "export": exported,
        "export, transformers-4 view": _with_config(exported, tmp_path / "export-t4",
                                                    lambda c: c.pop("rope_parameters")),
        "head, transformers-4 view": _with_config(head, tmp_path / "head-t4", lambda c: c.pop("rope_parameters")),
    })
    base_10000 = _with_config(head, tmp_path / "base-10000",
                              lambda c: c.update(rope_parameters={"rope_theta": 10000.0, "rope_type": "default"}))
    prompts = fixture / "prompts.json"
    accept = {"head as trained": raw_accept_length(fixture / "target", head, prompts),
              "export": raw_accept_length(fixture / "target", exported, prompts),
              "head with base 10000": raw_accept_length(fixture / "target", base_10000, prompts)}
    report = {"exported_rope_theta": exported_config.get("rope_theta"), "rope_base_sglang_builds": bases,
              "accept_length": accept}
    if os.environ.get("EAGLECTL_GPU_REPORT"):
        Path(os.environ["EAGLECTL_GPU_REPORT"]).with_name("sglang_rope_report.json").write_text(
            json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert exported_config.get("rope_theta") == 500000.0, report
    assert bases["export"] == 500000.0 and bases["export, transformers-4 view"] == 500000.0, report
    assert bases["head as trained"] == 500000.0 and bases["head, transformers-4 view"] == 10000.0, report
    assert None not in accept.values(), report
    assert abs(accept["export"] - accept["head as trained"]) <= 0.05, report
