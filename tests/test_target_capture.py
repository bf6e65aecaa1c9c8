"""Targets on which an EAGLE-3 draft fails, or gets other hidden states than its ids ask for, in some SGLang releases
(rules.CAPTURE_RULES, CAPTURE_ORDER): `target-capture` in `inspect --target`, and `serve` refusing the release it
would run with (fake interpreters name the release)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eaglectl.demo import samples as s
from eaglectl.demo.samples import save_json, target_config
from tests.helpers import run_json
from tests.synthetic_heads import head, write
from tests.test_sglang_installed import serve, with_version

IDS = [1, 3, 6]  # on a 16-layer target: the inputs of layers [2, 4, 7]; the default is [2, 8, 13]
LAYERS = 16


def target(d: Path, arch: str, model_type: str, *, text_type: str | None = None, layers: int = LAYERS) -> Path:
    """A target config; `text_type`: a multimodal one, its language model under text_config."""
    text = dict(target_config(), architectures=[arch], model_type=text_type or model_type, num_hidden_layers=layers)
    cfg = text if text_type is None else {"architectures": [arch], "model_type": model_type,
                                          "text_config": {k: v for k, v in text.items() if k != "architectures"}}
    save_json(d / "config.json", cfg)
    return d


@pytest.fixture
def draft(tmp_path) -> Path:
    return write(tmp_path / "h", *head(eagle_config={"eagle_aux_hidden_state_layer_ids": IDS}))


@pytest.fixture
def exec_server(mocker):
    return mocker.patch("eaglectl.serving.launcher.exec_server")


def capture_finding(cli, draft: Path, t: Path) -> dict | None:
    code, doc = run_json(cli, "inspect", draft, "--target", t)
    return next((f for f in doc["result"]["findings"] if f["code"] == "target-capture"), None)


# --- Qwen2-MoE / Qwen3-MoE / Qwen3-Next: the default capture stays flagged through 0.5.10.post1 -------------------
@pytest.mark.parametrize(("arch", "model_type"), [("Qwen3MoeForCausalLM", "qwen3_moe"),
                                                  ("Qwen2MoeForCausalLM", "qwen2_moe"),
                                                  ("Qwen3NextForCausalLM", "qwen3_next")])
def test_qwen_moe_targets_capture_the_union_before_0_5_11(cli, draft, tmp_path, arch, model_type):
    f = capture_finding(cli, draft, target(tmp_path / "t", arch, model_type))
    assert f is not None and f["severity"] == "warning", f
    assert f["message"].startswith(f"aux layer ids {IDS} on this 16-layer qwen-moe target ({arch}): "
                                   f"SGLang 0.5.9-0.5.10.post1: eager batches capture the inputs of layers "
                                   f"[2, 4, 7, 8, 13] instead of [2, 4, 7]")
    assert "5 states where fc takes 3: a shape error at the first request" in f["message"]
    assert "CUDA-graph-replayed batches capture the default layers' inputs [2, 8, 13]" in f["message"]
    assert "cuda_graph_runner.py: CudaGraphRunner.__init__ l.360-365" in f["message"]
    assert f["fix"].startswith("serve with SGLang >= 0.5.11, or with --disable-cuda-graph")


def test_the_default_ids_on_a_qwen_moe_target_are_no_finding(cli, tmp_path):
    d = write(tmp_path / "h", *head(eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 7, 12]}))
    assert capture_finding(cli, d, target(tmp_path / "t", "Qwen3MoeForCausalLM", "qwen3_moe")) is None


def test_a_llama_target_gets_the_default_layers_in_graph_replays_before_0_5_11(cli, draft, tmp_path):
    f = capture_finding(cli, draft, target(tmp_path / "t", "LlamaForCausalLM", "llama"))
    assert f is not None and f["severity"] == "info" and "eager batches" not in f["message"]
    assert "SGLang 0.5.9-0.5.10.post1: CUDA-graph-replayed batches capture the default layers' inputs" in f["message"]


@pytest.mark.parametrize(("version", "extra", "refused"), [
    ("0.5.10", [], True), ("0.5.10", ["--disable-cuda-graph"], False), ("0.5.11", [], False)])
def test_serve_refuses_the_union_where_it_runs(cli, draft, tmp_path, exec_server, version, extra, refused):
    t = target(tmp_path / "t", "Qwen3MoeForCausalLM", "qwen3_moe")
    result = serve(cli, t, draft, with_version(tmp_path, version), *extra)
    if refused:
        assert result.exit_code == 1 and f"SGLang {version}: eager batches capture" in result.stderr
        assert "serve with SGLang >= 0.5.11, or with --disable-cuda-graph" in result.stderr
        exec_server.assert_not_called()
    else:
        assert result.exit_code == 0, result.stderr
        assert not [w for w in json.loads(result.stdout)["result"]["warnings"]
                    if "eager batches" in w or "graph-replayed" in w]


def test_serve_warns_of_graph_replays_on_the_release_it_runs(cli, draft, tmp_path, exec_server):
    result = serve(cli, target(tmp_path / "t", "LlamaForCausalLM", "llama"), draft, with_version(tmp_path, "0.5.9"))
    assert result.exit_code == 0, result.stderr
    [w] = [w for w in json.loads(result.stdout)["result"]["warnings"] if "graph-replayed" in w]
    assert w.startswith(f"aux layer ids {IDS} on this 16-layer llama-style target (LlamaForCausalLM): SGLang 0.5.9:")


# --- families that fail in some releases ----------------------------------------------------------------------
FAILING = [  # arch, model_type, text model_type (multimodal), the failing spans in the message, the fix
    ("MiniMaxM3SparseForCausalLM", "minimax_m3", None,
     ["0.5.9-0.5.15.post1: no SGLang model class", "0.5.16-0.5.17: set_eagle3_layers_to_capture sets only"], "0.5.18"),
    ("MiniMaxM3SparseForConditionalGeneration", "minimax_m3_vl", "minimax_m2",
     ["0.5.9-0.5.15.post1: no SGLang model class", "0.5.16-0.5.17: MiniMaxM3SparseForConditionalGeneration has no "
                                                    "set_eagle3_layers_to_capture: AttributeError"], "0.5.18"),
    ("Qwen3_5ForConditionalGeneration", "qwen3_5", "qwen3_5_text",
     ["0.5.9-0.5.10.post1: Qwen3_5(Moe)ForConditionalGeneration has no set_eagle3_layers_to_capture",
      "0.5.11-0.5.21: it inherits Qwen3-VL's set_eagle3_layers_to_capture"], "0.5.22"),
    ("Qwen3_5MoeForCausalLM", "qwen3_5_moe_text", None,
     ["0.5.9-0.5.16: no SGLang model class", "0.5.17-0.5.21: Qwen3_5(Moe)ForCausalLM has no"], "0.5.22"),
    ("Qwen3VLForConditionalGeneration", "qwen3_vl", "qwen3_vl_text",
     ["0.5.9-0.5.10.post1: Qwen3VLForConditionalGeneration has no set_eagle3_layers_to_capture"], "0.5.11"),
    ("KimiK25ForConditionalGeneration", "kimi_k25", "deepseek_v3",
     ["0.5.9: KimiK25ForConditionalGeneration has no set_eagle3_layers_to_capture: AttributeError at start-up"],
     "0.5.11"),  # 0.5.10: the graph replays (as on every target)
]


@pytest.mark.parametrize(("arch", "model_type", "text_type", "spans", "fixed"), FAILING)
def test_targets_that_fail_in_some_releases(cli, draft, tmp_path, arch, model_type, text_type, spans, fixed):
    f = capture_finding(cli, draft, target(tmp_path / "t", arch, model_type, text_type=text_type))
    assert f is not None and f["severity"] == "warning", f
    for span in spans:
        assert f"SGLang {span}" in f["message"], f["message"]
    assert f["fix"] == f"serve with SGLang >= {fixed}"


@pytest.mark.parametrize(("arch", "model_type", "text_type", "bad", "good"), [
    ("MiniMaxM3SparseForCausalLM", "minimax_m3", None, "0.5.17", "0.5.18"),
    ("MiniMaxM3SparseForConditionalGeneration", "minimax_m3_vl", "minimax_m2", "0.5.16", "0.5.18"),
    ("Qwen3_5MoeForConditionalGeneration", "qwen3_5_moe", "qwen3_5_moe_text", "0.5.21", "0.5.22"),
    ("Qwen3_5ForConditionalGeneration", "qwen3_5", "qwen3_5_text", "0.5.10.post1", "0.5.22"),
    ("KimiK25ForConditionalGeneration", "kimi_k25", "deepseek_v3", "0.5.9", "0.5.12"),
])
def test_serve_refuses_a_release_on_which_the_target_fails(cli, draft, tmp_path, exec_server, arch, model_type,
                                                           text_type, bad, good):
    t = target(tmp_path / "t", arch, model_type, text_type=text_type)
    result = serve(cli, t, draft, with_version(tmp_path, bad), "--disable-cuda-graph")  # graphs change nothing
    assert result.exit_code == 1 and f"SGLang {bad}: " in result.stderr and "(SGLang 0." in result.stderr
    exec_server.assert_not_called()
    result = serve(cli, t, draft, with_version(tmp_path, good))
    assert result.exit_code == 0, result.stderr


# --- MiniMax-M3-VL: the default capture is one layer later -------------------------------------------------------
def test_an_unpinned_head_on_minimax_m3_vl_gets_the_default_plus_one(cli, samples, tmp_path):
    t = target(tmp_path / "t", "MiniMaxM3SparseForConditionalGeneration", "minimax_m3_vl", text_type="minimax_m2")
    code, doc = run_json(cli, "inspect", samples["nemo-consolidated"], "--target", t)  # no ids, config names 8 layers
    [f] = [f for f in doc["result"]["findings"] if f["code"] == "aux-ids-unpinned"]
    assert "16-layer target (the inputs of layers [3, 9, 14])" in f["message"]
    assert "trained on layers [3, 5, 6]" in f["message"] and "--aux-layer-ids 2 4 5" in f["fix"]
    assert s.TARGET_LAYERS == 8
