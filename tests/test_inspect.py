"""`eaglectl inspect`: every layout and every finding, through the CLI."""

from __future__ import annotations

import json

import pytest

from eaglectl.demo.samples import save_json, save_safetensors
from tests.helpers import run_json


def codes(doc: dict) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in doc["result"]["findings"]}


@pytest.mark.parametrize("key", ["nemo-consolidated", "nemo-sharded", "nemo-legacy-eagle3", "nemo-legacy-eagle",
                                 "specforge", "eagle-research"])
def test_inspect_every_layout_json(cli, samples, key):
    code, doc = run_json(cli, "inspect", samples[key])
    assert code == 0, doc
    assert doc["schema_version"] == 1 and doc["command"] == "inspect" and doc["ok"] is True
    assert doc["result"]["tensors"]


def test_nemo_consolidated_findings(cli, samples):
    code, doc = run_json(cli, "inspect", samples["nemo-consolidated"])
    found = codes(doc)
    assert found["architectures"] == "warning"
    assert found["num-hidden-layers"] == "warning"
    assert found["skipped-tensors"] == "warning"  # model.layers.0.* is skipped by SGLang 0.5.9
    assert found["token-map-ignored"] == "info"
    assert doc["result"]["layout"] == "nemo-consolidated"
    assert doc["result"]["sglang_ready"] is False
    views = {v["version"]: v for v in doc["result"]["loader_as_is"]}
    assert views["0.5.9"]["skipped"] and not views["0.5.15"]["skipped"]
    assert any("layers.1" in p for p in views["0.5.15"]["uninitialized"])  # 8 layers built, 7 never loaded


def test_legacy_prefix_is_reported_as_skipped(cli, samples):
    _, doc = run_json(cli, "inspect", samples["nemo-legacy-eagle3"])
    finding = next(f for f in doc["result"]["findings"] if f["code"] == "skipped-tensors")
    assert "draft_model.fc.weight" in finding["message"]
    assert codes(doc)["missing-d2t"] == "warning"  # buildable from eagle3_meta.pt


def test_specforge_is_sglang_ready(cli, samples):
    code, doc = run_json(cli, "inspect", samples["specforge"])
    assert code == 0
    assert doc["result"]["layout"] == "sglang-ready" and doc["result"]["sglang_ready"] is True
    assert {f["severity"] for f in doc["result"]["findings"]} <= {"info"}


def test_p_eagle_is_an_error_naming_vllm(cli, samples):
    result = cli("inspect", samples["p-eagle"])
    assert result.exit_code == 1
    assert "P-EAGLE" in result.stdout and "vLLM >= 0.16" in result.stdout


def test_missing_d2t_without_meta_is_an_error(cli, samples):
    d = samples["nemo-consolidated"]
    (d / "eagle_meta.pt").unlink()
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and codes(doc)["missing-d2t"] == "error"


def test_missing_required_tensor_is_an_error(cli, samples):
    from safetensors import safe_open

    d = samples["specforge"]
    with safe_open(str(d / "model.safetensors"), "pt") as fh:
        tensors = {k: fh.get_tensor(k).clone() for k in fh.keys() if k != "midlayer.self_attn.o_proj.weight"}  # noqa: SIM118
    save_safetensors(d / "model.safetensors", tensors)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1
    assert "o_proj" in next(f["message"] for f in doc["result"]["findings"] if f["severity"] == "error")


def test_shape_contradicting_config_is_an_error(cli, samples):
    d = samples["specforge"]
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 256
    save_json(d / "config.json", cfg)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and "shape" in codes(doc)


def test_dtype_mix_warning(cli, samples):
    import torch
    from safetensors import safe_open

    d = samples["specforge"]
    with safe_open(str(d / "model.safetensors"), "pt") as fh:
        tensors = {k: fh.get_tensor(k).clone() for k in fh.keys()}  # noqa: SIM118
    tensors["fc.weight"] = tensors["fc.weight"].to(torch.float32)
    save_safetensors(d / "model.safetensors", tensors)
    _, doc = run_json(cli, "inspect", d)
    assert codes(doc)["dtype-mix"] == "warning"


def test_embeddings_reported(cli, samples):
    _, doc = run_json(cli, "inspect", samples["eagle-research"])
    assert codes(doc)["embeddings"] == "info"


def test_target_checks(cli, samples, tmp_path):
    from eaglectl.demo.samples import target_config

    target = tmp_path / "t"
    cfg = dict(target_config(), hidden_size=128, vocab_size=1024, num_hidden_layers=5, torch_dtype="float16",
               max_position_embeddings=8192)
    save_json(target / "config.json", cfg)
    d = samples["specforge"]
    code, doc = run_json(cli, "inspect", d, "--target", target)
    found = codes(doc)
    assert code == 1
    assert found["target-hidden"] == "error" and found["target-vocab"] == "error"
    assert found["aux-layer-ids"] == "error"  # [1, 3, 4]: 4 is the last layer of a 5-layer target
    assert found["target-dtype"] == "warning" and found["context-length"] == "warning"


def test_target_matching_passes(cli, samples):
    code, doc = run_json(cli, "inspect", samples["specforge"], "--target", samples["target"])
    assert code == 0
    assert not {"target-hidden", "target-vocab", "aux-layer-ids"} & set(codes(doc))


def test_hub_id_inspect(cli):
    code, doc = run_json(cli, "inspect", "org/eagle3-head")
    assert code == 0 and doc["result"]["layout"] == "hub"


def test_table_output_goes_to_stdout_and_is_not_json(cli, samples):
    result = cli("inspect", samples["nemo-consolidated"])
    assert result.exit_code == 0
    assert "Findings" in result.stdout and "architectures" in result.stdout
    assert result.stderr == ""
