"""`export --format speculators`: the speculators 0.9 layout (vLLM's native drafter format) from every layout eaglectl
reads, through the same pipeline as SGLang's export (plan -> write -> verify -> swap); P-EAGLE and
norm_before_residual heads, which the SGLang export refuses; `--verifier`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eaglectl.demo.samples import DRAFT_VOCAB, VOCAB, H, draft_config, save_json, save_safetensors
from tests.helpers import read_all

EAGLE3_SAMPLES = ["nemo-consolidated", "nemo-legacy-eagle3", "specforge", "eagle-research", "nemo-sharded",
                  "specforge-training"]


def export(cli, path, *extra) -> tuple[int, dict]:
    result = cli("export", path, "--format", "speculators", "--json", *extra)
    return result.exit_code, json.loads(result.stdout)


def source_tensors(path: Path) -> dict:
    from eaglectl.checkpoint.resolve import resolve

    ckpt = resolve(path)
    return {n: ckpt.weights.load(n) for n in ckpt.weights.tensors}


@pytest.mark.parametrize("sample", EAGLE3_SAMPLES)
def test_every_eagle3_layout_exports_to_speculators(cli, samples, tmp_path, sample):
    import torch

    from eaglectl.checkpoint.names import parse_name

    code, doc = export(cli, samples[sample], "-o", tmp_path / "out", "--verifier", "meta-llama/Llama-3.1-8B-Instruct")
    assert code == 0, doc
    r = doc["result"]
    assert r["format"] == "speculators" and r["sglang_releases"] == []
    assert [v["engine"] for v in r["verification"]] == ["sglang", "vllm", "speculators"]  # read back, then both
    assert all(v["ok"] for v in r["verification"]) and r["vllm"].startswith("loads completely in vLLM 0.33.0")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["speculators_model_type"] == "eagle3" and cfg["architectures"] == ["Eagle3Speculator"]
    assert "model_type" not in cfg and cfg["speculators_version"] == "0.9.0"
    spec = cfg["speculators_config"]
    assert spec["algorithm"] == "eagle3" and spec["default_proposal_method"] == "greedy"
    assert spec["proposal_methods"] == [{"proposal_type": "greedy", "speculative_tokens": 3, "verifier_accept_k": 1,
                                         "accept_tolerance": 0.0}]
    assert spec["verifier"] == {"name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
                                "architectures": ["LlamaForCausalLM"]}
    assert {k: cfg[k] for k in ("norm_before_residual", "norm_before_fc", "fc_norm", "norm_output")} == dict.fromkeys(
        ("norm_before_residual", "norm_before_fc", "fc_norm", "norm_output"), False)
    layer = cfg["transformer_layer_config"]
    assert layer["model_type"] == "llama" and layer["num_hidden_layers"] == 1 and layer["hidden_size"] == H
    assert "architectures" not in layer and "eagle_config" not in layer and cfg["draft_vocab_size"] == DRAFT_VOCAB
    recorded = {"specforge": [1, 3, 4], "specforge-training": [1, 3, 4]}.get(sample)  # SGLang's numbering
    assert cfg["eagle_aux_hidden_state_layer_ids"] == ([i + 1 for i in recorded] if recorded else None)
    got = read_all(tmp_path / "out")
    src = {parse_name(n).base: t for n, t in source_tensors(samples[sample]).items()}
    assert all(n.startswith("layers.0.") or "." not in n or n.split(".")[0] in ("fc", "norm", "lm_head",
                                                                                "embed_tokens") for n in got)
    assert ("embed_tokens.weight" in got) == ("embed_tokens.weight" in src)  # kept exactly when stored
    assert "d2t" in got and "t2d" in got and got["d2t"].dtype == torch.int64 and got["t2d"].dtype == torch.bool
    assert torch.equal(torch.arange(DRAFT_VOCAB) + got["d2t"], got["t2d"].nonzero().flatten())  # consistent
    for name, tensor in src.items():
        if name in ("d2t", "t2d"):
            continue
        assert torch.equal(got[name], tensor), name


def test_the_default_output_and_an_unchanged_re_export(cli, samples):
    code, doc = export(cli, samples["specforge"])
    assert code == 0 and doc["result"]["output"] == str(samples["specforge"] / "speculators")
    code, doc = export(cli, samples["specforge"])
    assert code == 0 and doc["result"]["action"] == "unchanged"
    # the source stays SGLang-ready, and its SGLang export goes elsewhere
    assert json.loads(cli("inspect", samples["specforge"], "--json").stdout)["result"]["layout"] == "sglang-ready"


def test_p_eagle_exports_as_peagle(cli, samples, tmp_path):
    import torch

    result = cli("export", samples["p-eagle"])
    assert result.exit_code == 1 and "--format speculators" in result.stderr  # the SGLang export's hint
    code, doc = export(cli, samples["p-eagle"], "-o", tmp_path / "out")
    assert code == 0, doc
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["speculators_model_type"] == "peagle" and cfg["architectures"] == ["PEagleSpeculator"]
    assert cfg["mask_token_id"] == VOCAB - 1 and cfg["embed_requires_grad"] is True
    got = read_all(tmp_path / "out")
    assert got["mask_hidden"].shape == (1, 1, 3 * H)
    src = source_tensors(samples["p-eagle"])
    assert torch.equal(got["mask_hidden"].flatten(), src["model.mask_hidden"].flatten())
    assert "vLLM 0.33.0" in doc["result"]["vllm"]


def write_head(d: Path, **config) -> Path:
    from eaglectl.demo.samples import d2t_t2d, eagle3_tensors

    save_json(d / "config.json", draft_config(architectures=["LlamaForCausalLMEagle3"], num_layers=1,
                                              eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 4]}, **config))
    save_safetensors(d / "model.safetensors", {**eagle3_tensors("midlayer.", ""), **d2t_t2d()})
    return d


def test_a_norm_before_residual_head(cli, tmp_path):
    d = write_head(tmp_path / "h", norm_before_residual=True)
    result = cli("export", d, "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and "norm-before-residual" in doc["error"]["message"]
    assert f"eaglectl export {d} --format speculators" in doc["error"]["hint"]
    code, doc = export(cli, d, "-o", tmp_path / "out")
    assert code == 0, doc
    assert json.loads((tmp_path / "out" / "config.json").read_text())["norm_before_residual"] is True


def test_a_full_vocabulary_head_has_neither_d2t_nor_t2d(cli, tmp_path):
    from eaglectl.demo.samples import eagle3_tensors

    d = tmp_path / "h"
    save_json(d / "config.json", draft_config(architectures=["LlamaForCausalLMEagle3"], num_layers=1,
                                              draft_vocab_size=VOCAB))
    tensors = eagle3_tensors("midlayer.", "")
    tensors["lm_head.weight"] = tensors["lm_head.weight"].repeat(VOCAB // DRAFT_VOCAB, 1)
    save_safetensors(d / "model.safetensors", tensors)
    code, doc = export(cli, d, "-o", tmp_path / "out")
    assert code == 0, doc
    got = read_all(tmp_path / "out")
    assert "d2t" not in got and "t2d" not in got
    assert json.loads((tmp_path / "out" / "config.json").read_text())["draft_vocab_size"] == VOCAB


def test_eagle1_is_refused(cli, samples, tmp_path):
    code, doc = export(cli, samples["nemo-legacy-eagle"], "-o", tmp_path / "out")
    assert code == 1 and "writes Llama-style EAGLE-3 heads; this is an EAGLE head" in doc["error"]["message"]


def test_verifier_architectures_come_from_a_local_verifier(cli, samples, tmp_path):
    code, doc = export(cli, samples["specforge"], "-o", tmp_path / "a", "--verifier", samples["target"])
    assert code == 0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["speculators_config"]["verifier"] == {"name_or_path": str(samples["target"]),
                                                     "architectures": ["LlamaForCausalLM"]}
    code, doc = export(cli, samples["specforge"], "-o", tmp_path / "b")
    assert code == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["speculators_config"]["verifier"][
        "name_or_path"] is None
    assert any("no --verifier given" in c for c in doc["result"]["config_changes"])


def test_format_and_verifier_in_text_and_bad_input(cli, samples, tmp_path):
    result = cli("export", samples["specforge"], "--format", "speculators", "-o", tmp_path / "t")
    assert result.exit_code == 0, result.stderr
    assert "speculators 0.9.0 loader: ok" in result.stdout and "vLLM 0.33.0 loader: ok" in result.stdout
    assert "not SGLang's layout" in result.stdout
    result = cli("export", samples["specforge"], "--format", "onnx")
    assert result.exit_code == 2 and "onnx" in result.stderr
    result = cli("export", samples["specforge"], "--verifier", "org/model", "-o", tmp_path / "v")
    assert result.exit_code == 2 and "pass it with --format speculators" in result.stderr
    doc = json.loads(cli("export", samples["specforge"], "--verifier", "org/model", "--json").stdout)
    assert doc["ok"] is False and doc["error"]["exit_code"] == 2


def test_the_speculators_output_reads_back(cli, samples, tmp_path):
    code, _ = export(cli, samples["specforge"], "-o", tmp_path / "out", "--verifier", samples["target"])
    assert code == 0
    doc = json.loads(cli("inspect", tmp_path / "out", "--json", "--target", samples["target"]).stdout)["result"]
    assert doc["vllm"]["as_stored"]["ok"] is True and doc["vllm"]["as_stored"]["capture"] == [2, 4, 5]
    # and back to SGLang's layout: the ids return to SGLang's numbering
    code = cli("export", tmp_path / "out", "-o", tmp_path / "back").exit_code
    assert code == 0
    cfg = json.loads((tmp_path / "back" / "config.json").read_text())
    assert cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 3, 4]


def test_inspect_points_heads_sglang_cannot_serve_at_the_speculators_export(cli, samples, tmp_path):
    for path in (samples["p-eagle"], write_head(tmp_path / "h", norm_before_residual=True)):
        doc = json.loads(cli("inspect", path, "--json").stdout)["result"]["vllm"]
        assert doc["export_format"] == "speculators" and doc["after_export"]["ok"] is True, doc
        assert "loads after export --format speculators" in cli("inspect", path).stdout


def test_a_verifier_whose_config_is_a_fifo_is_refused_not_waited_on(cli, samples, tmp_path):
    """`--verifier DIR` whose config.json is a FIFO: read only as a regular file. (A writer opens the FIFO after a
    few seconds, so that a regression fails here instead of blocking the suite.)"""
    import contextlib
    import os
    import threading

    verifier = tmp_path / "verifier"
    verifier.mkdir()
    os.mkfifo(verifier / "config.json")
    done = threading.Event()

    def unblock() -> None:
        while not done.wait(5):
            with contextlib.suppress(OSError):  # no reader: nothing is blocked
                os.close(os.open(verifier / "config.json", os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    try:
        result = cli("export", samples["specforge"], "--format", "speculators", "--verifier", verifier,
                     "-o", tmp_path / "out")
    finally:
        done.set()
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {verifier / 'config.json'}: not a regular file"), result.stderr
    assert not (tmp_path / "out").exists()
