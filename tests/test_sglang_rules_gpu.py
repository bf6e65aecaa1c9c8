"""GPU proof of SGLang config rules on real SGLang (marked gpu): a full-vocab EAGLE-3 head whose config has no
draft_vocab_size does not start as it is, and starts from eaglectl's export (which writes the key).

Needs CUDA, SGLang and the distilled fixture (EAGLECTL_DISTILL_FIXTURE, as tests/test_serve_gpu.py). Writes its
figures to `sglang_rules_report.json` beside EAGLECTL_GPU_REPORT when set.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import DISTILL_FIXTURE, gpu_requirements, raw_sglang_argv, serve_smoke, sglang_port

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
