"""Every failure mode users reported when serving EAGLE heads with SGLang: built the way the reporting users' heads
were built, run through inspect / export / serve, asserting the finding, the exit code and (for the fixes) what
the export wrote. Plus the published SpecForge EAGLE-3 configs at full size (sparse files), which must stay clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from eaglectl.demo import samples as s
from eaglectl.demo.samples import save_json, save_safetensors
from tests.helpers import read_all, run_json
from tests.sparse_heads import DATA, build_published, published_heads, write_sparse_safetensors

PUBLISHED = sorted(published_heads())


def codes(doc: dict) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in doc["result"]["findings"]}


def finding(doc: dict, code: str) -> dict:
    return next(f for f in doc["result"]["findings"] if f["code"] == code)


def specforge_head(d: Path, *, seed: int = 3, embeddings: bool = False, **config) -> Path:
    """A SpecForge-exported EAGLE-3 head (midlayer.*, d2t / t2d), as the samples build it, config overridable."""
    cfg = s.draft_config(architectures=["LlamaForCausalLMEagle3"], num_layers=1,
                         eagle_config={"eagle_aux_hidden_state_layer_ids": s.AUX_IDS})
    cfg.update(config)
    for key in [k for k, v in config.items() if v is None and k != "target_hidden_size"]:
        del cfg[key]
    save_json(d / "config.json", cfg)
    save_safetensors(d / "model.safetensors",
                     {**s.eagle3_tensors("midlayer.", "", seed=seed, embeddings=embeddings), **s.d2t_t2d()})
    return d


def edit_tensors(d: Path, edit) -> None:
    f = d / "model.safetensors"
    with safe_open(str(f), "pt") as fh:
        tensors = {k: fh.get_tensor(k).clone() for k in fh.keys()}  # noqa: SIM118
    edit(tensors)
    save_safetensors(f, tensors)


def expect_refusal(cli, args: list, text: str) -> None:
    result = cli(*args)
    assert result.exit_code == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], result.stderr
    assert "Traceback" not in result.stderr


# --- tied lm_head --------------------------------------------------------------------------------------------------
def test_tied_reduced_lm_head_is_not_ready_and_export_unties_it(cli, tmp_path, sample_root):
    """The issue's GPU case: a trained head (own 128-row lm_head, d2t) re-saved with tie_word_embeddings: true."""
    d = specforge_head(tmp_path / "tied", tie_word_embeddings=True)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and doc["result"]["sglang_ready"] is False
    f = finding(doc, "tied-lm-head")
    assert f["severity"] == "error" and "drops the stored lm_head" in f["message"]
    assert "tie_word_embeddings: false" in f["fix"]

    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0, doc
    r = doc["result"]
    assert any(c.startswith("tie_word_embeddings: True -> False") for c in r["config_changes"])
    assert all(v["ok"] for v in r["verification"])
    out_cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out_cfg["tie_word_embeddings"] is False and out_cfg["draft_vocab_size"] == s.DRAFT_VOCAB
    written, source = read_all(tmp_path / "out"), read_all(d)
    assert torch.equal(written["lm_head.weight"], source["lm_head.weight"])
    assert torch.equal(written["d2t"], source["d2t"])
    code, doc = run_json(cli, "inspect", tmp_path / "out")
    assert code == 0 and doc["result"]["sglang_ready"] is True

    code, doc = run_json(cli, "serve", "--target", sample_root / "target", "--draft", d, "--print-only")
    assert code == 0 and doc["result"]["exported"] == "would export"


def test_tied_reduced_vocab_without_lm_head_is_refused(cli, tmp_path, sample_root):
    d = specforge_head(tmp_path / "h", tie_word_embeddings=True)
    edit_tensors(d, lambda t: t.pop("lm_head.weight"))
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and codes(doc)["tied-reduced-vocab"] == "error"
    expect_refusal(cli, ["export", d], "tied-reduced-vocab")
    expect_refusal(cli, ["serve", "--target", sample_root / "target", "--draft", d, "--print-only"],
                   "tied-reduced-vocab")


def test_tied_full_vocab_lm_head_is_a_warning_not_a_rewrite(cli, tmp_path):
    d = specforge_head(tmp_path / "h", tie_word_embeddings=True, draft_vocab_size=None)
    edit_tensors(d, lambda t: (t.update({"lm_head.weight": torch.zeros(s.VOCAB, s.H, dtype=torch.bfloat16)}),
                               t.pop("d2t"), t.pop("t2d")))
    code, doc = run_json(cli, "inspect", d)
    assert codes(doc)["tied-lm-head"] == "warning"
    assert "draft_vocab_size: 512" in finding(doc, "tied-lm-head")["fix"]


def test_tied_eagle1_head_is_untied_by_export(cli, samples, tmp_path):
    d = samples["nemo-legacy-eagle"]
    cfg = json.loads((d / "config.json").read_text())
    save_json(d / "config.json", dict(cfg, tie_word_embeddings=True))
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and "AttributeError" in finding(doc, "tied-embeddings")["message"]
    code, doc = run_json(cli, "export", d)
    assert code == 0, doc
    assert json.loads((Path(doc["result"]["output"]) / "config.json").read_text())["tie_word_embeddings"] is False


# --- d2t -------------------------------------------------------------------------------------------------------------
def zero_d2t(t: dict) -> None:
    t["d2t"] = torch.zeros_like(t["d2t"])


def test_all_zero_d2t_is_refused_everywhere(cli, tmp_path, sample_root):
    """SpecForge / speculators initialise d2t with torch.zeros; a head saved before the map was filled."""
    d = specforge_head(tmp_path / "h")
    edit_tensors(d, zero_d2t)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and doc["result"]["sglang_ready"] is False
    assert "draft token i is proposed as target token i" in finding(doc, "d2t-all-zero")["message"]
    expect_refusal(cli, ["export", d], "d2t-all-zero")
    expect_refusal(cli, ["token-map", d], "d2t-all-zero")
    expect_refusal(cli, ["serve", "--target", sample_root / "target", "--draft", d, "--print-only"], "d2t-all-zero")
    assert not (d / "model").exists() and not (tmp_path / "speculative_token_map.pt").exists()


def test_full_vocab_zero_d2t_is_an_identity_map_and_fine(cli, tmp_path):
    d = specforge_head(tmp_path / "h", draft_vocab_size=s.VOCAB)
    edit_tensors(d, lambda t: t.update({"d2t": torch.zeros(s.VOCAB, dtype=torch.int64),
                                        "lm_head.weight": torch.zeros(s.VOCAB, s.H, dtype=torch.bfloat16)}))
    code, doc = run_json(cli, "inspect", d)
    assert code == 0 and "d2t-all-zero" not in codes(doc)


# --- draft narrower than the target ------------------------------------------------------------------------------
def narrow_head(d: Path, *, embeddings: bool) -> Path:
    """A 64-wide draft for a 128-wide target: fc [64, 3 x 128], target_hidden_size 128."""
    specforge_head(d, target_hidden_size=128, embeddings=embeddings)
    edit_tensors(d, lambda t: t.update({"fc.weight": torch.zeros(s.H, 3 * 128, dtype=torch.bfloat16)}))
    return d


def test_narrow_draft_without_embeddings_is_refused(cli, tmp_path):
    d = narrow_head(tmp_path / "h", embeddings=False)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and doc["result"]["sglang_ready"] is False
    f = finding(doc, "draft-embeddings-missing")
    assert "set_embed" in f["message"] and "--drop-embeddings" not in (f["fix"] or "")
    expect_refusal(cli, ["export", d], "draft-embeddings-missing")


def test_narrow_draft_keeps_its_embeddings(cli, tmp_path):
    d = narrow_head(tmp_path / "h", embeddings=True)
    code, doc = run_json(cli, "inspect", d)
    assert code == 0 and doc["result"]["sglang_ready"] is True
    emb = finding(doc, "embeddings")
    assert "SGLang uses them" in emb["message"] and not emb["fix"]
    expect_refusal(cli, ["export", d, "--drop-embeddings", "--output", tmp_path / "o"], "--drop-embeddings would")
    assert not (tmp_path / "o").exists()


# --- norm flags ----------------------------------------------------------------------------------------------------
def test_norm_before_residual_is_refused(cli, tmp_path, sample_root):
    d = specforge_head(tmp_path / "h", norm_before_residual=True)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and "no SGLang release reads this key" in finding(doc, "norm-before-residual")["message"]
    expect_refusal(cli, ["export", d], "norm-before-residual")
    expect_refusal(cli, ["serve", "--target", sample_root / "target", "--draft", d, "--print-only"],
                   "norm-before-residual")


def gpt_oss_style_head(d: Path, *, flag: bool = True, weight: bool = True) -> Path:
    """nvidia's gpt-oss EAGLE-3 heads: norm_before_fc in eagle_config and input_norm.weight [3 x target hidden]."""
    eagle_cfg = {"eagle_aux_hidden_state_layer_ids": s.AUX_IDS, **({"norm_before_fc": True} if flag else {})}
    specforge_head(d, eagle_config=eagle_cfg)
    if weight:
        edit_tensors(d, lambda t: t.update({"input_norm.weight": torch.full((3 * s.H,), 0.5, dtype=torch.bfloat16)}))
    return d


def test_norm_before_fc_keeps_input_norm(cli, tmp_path):
    d = gpt_oss_style_head(tmp_path / "h")
    code, doc = run_json(cli, "inspect", d)
    assert code == 0
    found = codes(doc)
    assert found["norm-before-fc"] == "warning" and "unused-tensors" not in found
    assert "0.5.17" in finding(doc, "norm-before-fc")["message"]
    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0, doc
    assert not doc["result"]["dropped"]
    written = read_all(tmp_path / "out")
    assert torch.equal(written["input_norm.weight"], read_all(d)["input_norm.weight"])
    assert json.loads((tmp_path / "out" / "config.json").read_text())["eagle_config"]["norm_before_fc"] is True


@pytest.mark.parametrize(("flag", "weight", "code"), [(True, False, "input-norm-missing"),
                                                      (False, True, "input-norm-unused")])
def test_norm_before_fc_and_its_weight_go_together(cli, tmp_path, flag, weight, code):
    d = gpt_oss_style_head(tmp_path / "h", flag=flag, weight=weight)
    rc, doc = run_json(cli, "inspect", d)
    assert rc == 1 and codes(doc)[code] == "error"
    expect_refusal(cli, ["export", d], code)


# --- config shape ----------------------------------------------------------------------------------------------------
def test_null_target_hidden_size_is_dropped_by_export(cli, tmp_path):
    d = specforge_head(tmp_path / "h", target_hidden_size=None)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and codes(doc)["target-hidden-size-null"] == "error"
    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0
    assert "target_hidden_size" not in json.loads((tmp_path / "out" / "config.json").read_text())


def test_top_level_aux_ids_are_moved_into_eagle_config(cli, tmp_path):
    d = specforge_head(tmp_path / "h", eagle_config=None, eagle_aux_hidden_state_layer_ids=[1, 3, 5])
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and codes(doc)["aux-ids-top-level"] == "error"
    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 3, 5]


# --- speculators format ------------------------------------------------------------------------------------------
def speculators_config(**changes) -> dict:
    cfg = json.loads((DATA / "speculators_eagle3_config.json").read_text())
    cfg.update(changes)
    return cfg


def speculators_tensors(cfg: dict) -> dict[str, tuple[str, list[int]]]:
    """The names and shapes speculators' Eagle3DraftModel saves (no `model.` prefix, layers.0.*)."""
    layer = cfg["transformer_layer_config"]
    h, vocab, inter = layer["hidden_size"], layer["vocab_size"], layer["intermediate_size"]
    heads, kv, hd = layer["num_attention_heads"], layer["num_key_value_heads"], layer["head_dim"]
    n_aux = len(cfg.get("eagle_aux_hidden_state_layer_ids") or [0, 0, 0])
    t = {"embed_tokens.weight": ("BF16", [vocab, h]), "fc.weight": ("BF16", [h, n_aux * h]),
         "layers.0.self_attn.q_proj.weight": ("BF16", [heads * hd, 2 * h]),
         "layers.0.self_attn.k_proj.weight": ("BF16", [kv * hd, 2 * h]),
         "layers.0.self_attn.v_proj.weight": ("BF16", [kv * hd, 2 * h]),
         "layers.0.self_attn.o_proj.weight": ("BF16", [h, heads * hd]),
         "layers.0.mlp.gate_proj.weight": ("BF16", [inter, h]), "layers.0.mlp.up_proj.weight": ("BF16", [inter, h]),
         "layers.0.mlp.down_proj.weight": ("BF16", [h, inter]),
         "layers.0.input_layernorm.weight": ("BF16", [h]), "layers.0.hidden_norm.weight": ("BF16", [h]),
         "layers.0.post_attention_layernorm.weight": ("BF16", [h]), "norm.weight": ("BF16", [h]),
         "lm_head.weight": ("BF16", [cfg["draft_vocab_size"], h]),
         "d2t": ("I64", [cfg["draft_vocab_size"]]), "t2d": ("BOOL", [vocab])}
    if cfg.get("norm_before_fc"):
        t["input_norm.weight"] = ("BF16", [n_aux * h])
    return t


def speculators_head(d: Path, cfg: dict) -> Path:
    from tests.sparse_heads import token_map

    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    d2t, t2d = token_map(cfg["transformer_layer_config"]["vocab_size"], cfg["draft_vocab_size"])
    write_sparse_safetensors(d / "model.safetensors", speculators_tensors(cfg), {"d2t": d2t, "t2d": t2d})
    return d


@pytest.fixture
def no_value_scan(monkeypatch):
    """Full-size sparse heads: the NaN / Inf scan would read gigabytes of holes; it is tested elsewhere."""
    monkeypatch.setattr("eaglectl.inspection.report.scan_non_finite", lambda *a, **k: [])


def test_speculators_head_as_published_is_refused_for_norm_before_residual(cli, tmp_path, no_value_scan):
    """The config speculators 0.8 wrote for a Qwen3-MoE verifier, verbatim, at full size."""
    d = speculators_head(tmp_path / "h", speculators_config())
    code, doc = run_json(cli, "inspect", d)
    assert code == 1
    found = codes(doc)
    assert found["speculators-format"] == "error" and found["norm-before-residual"] == "error"
    assert found["norm-before-fc"] == "warning" and found["sliding-window-ignored"] == "warning"
    assert "[1, 45, 90, 92]" in finding(doc, "speculators-format")["fix"]
    expect_refusal(cli, ["export", d], "norm-before-residual")


def test_speculators_head_is_flattened_with_converted_aux_ids(cli, tmp_path, no_value_scan):
    d = speculators_head(tmp_path / "h", speculators_config(norm_before_residual=False))
    code, doc = run_json(cli, "export", d, "--dry-run")
    assert code == 0, doc
    r = doc["result"]
    assert not r["dropped"] and any("vLLM numbering" in c for c in r["config_changes"])
    from eaglectl.checkpoint.resolve import resolve
    from eaglectl.export.plan import build_plan

    plan = build_plan(resolve(d))
    cfg = plan.config
    assert cfg["architectures"] == ["LlamaForCausalLMEagle3"] and cfg["hidden_size"] == 4096
    assert cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 45, 90, 92]
    assert "target_hidden_size" not in cfg and "transformer_layer_config" not in cfg
    assert cfg["norm_before_fc"] is True
    # the top-level ids vLLM reads come back in its numbering (those the speculators config had), with their count
    assert cfg["eagle_aux_hidden_state_layer_ids"] == [2, 46, 91, 93] and cfg["num_aux_hidden_states"] == 4
    assert plan.shapes["input_norm.weight"] == (4 * 4096,) and plan.shapes["fc.weight"] == (4096, 4 * 4096)
    # four aux states (SGLang 0.5.12+) on the 94-layer Qwen3-MoE verifier: accepted
    target = tmp_path / "t"
    save_json(target / "config.json", {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
                                       "hidden_size": 4096, "num_hidden_layers": 94, "vocab_size": 151936})
    code, doc = run_json(cli, "inspect", d, "--target", target)
    assert "aux-layer-ids" not in codes(doc)


def test_speculators_small_head_exports_its_tensors(cli, tmp_path):
    cfg = speculators_config(norm_before_residual=False, eagle_aux_hidden_state_layer_ids=[2, 4, 6],
                             norm_before_fc=False, draft_vocab_size=s.DRAFT_VOCAB)
    cfg["transformer_layer_config"] = dict(cfg["transformer_layer_config"], hidden_size=s.H, intermediate_size=s.INTER,
                                           num_attention_heads=s.HEADS, num_key_value_heads=s.KV, head_dim=s.HEAD_DIM,
                                           vocab_size=s.VOCAB, layer_types=["full_attention"], use_sliding_window=False)
    d = tmp_path / "h"
    save_json(d / "config.json", cfg)
    save_safetensors(d / "model.safetensors", {**s.eagle3_tensors("layers.0.", "", seed=9), **s.d2t_t2d()})
    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0, doc
    out_cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out_cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 3, 5]
    written, source = read_all(tmp_path / "out"), read_all(d)
    assert torch.equal(written["midlayer.self_attn.q_proj.weight"], source["layers.0.self_attn.q_proj.weight"])
    code, doc = run_json(cli, "inspect", tmp_path / "out")
    assert code == 0 and doc["result"]["sglang_ready"] is True


def test_speculators_ids_on_a_deepseek_verifier(tmp_path):
    from eaglectl.checkpoint.speculators import normalise

    raw = speculators_config()
    raw["speculators_config"]["verifier"]["architectures"] = ["DeepseekV3ForCausalLM"]
    raw["eagle_aux_hidden_state_layer_ids"] = [2, 30, 58]
    assert normalise(raw, "x").config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [2, 30, 58]
    raw["eagle_aux_hidden_state_layer_ids"] = [1, 30, 58]
    norm = normalise(raw, "x")
    assert "eagle_config" not in norm.config and "start at 1" in norm.problem
    del raw["speculators_config"]["verifier"]
    assert "names no verifier" in normalise(raw, "x").problem


def test_a_million_speculators_aux_ids_make_a_short_message():
    """A config may list a million ids (within its 8 MB): the message names a few and the count, not 7 MB."""
    from eaglectl.checkpoint.speculators import normalise

    raw = speculators_config()
    del raw["speculators_config"]["verifier"]
    raw["eagle_aux_hidden_state_layer_ids"] = list(range(1, 1_000_001))
    problem = normalise(raw, "x").problem
    assert "names no verifier" in problem and len(problem) < 600
    assert "[1, 2, 3, 4, 5, 6, 7, 8, ... (1000000 ids)]" in problem
    raw["speculators_config"]["verifier"] = {"architectures": ["LlamaForCausalLM"]}
    raw["eagle_aux_hidden_state_layer_ids"] = [0, *range(1, 1_000_001)]
    assert len(normalise(raw, "x").problem) < 600


# --- serve passthrough -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "option"), [
    (["--speculative-algorithm", "EAGLE"], "--algorithm"),
    (["--speculative-algorithm=EAGLE"], "--algorithm"),
    (["--speculative-algo", "EAGLE"], "--algorithm"),  # argparse accepts an unambiguous prefix
    (["--speculative-draft-model-path", "/x"], "--draft"),
    (["--speculative-draft-model", "/x"], "--draft"),  # SGLang's alias
    (["--speculative-num-steps", "5"], "--num-steps"),
    (["--speculative-eagle-topk=4"], "--topk"),
    (["--speculative-num-draft-tokens", "8"], "--num-draft-tokens"),
    (["--speculative-token-map", "/m.pt"], "--draft"),
    (["--model-path", "/other"], "--target"),
    (["--model", "/other"], "--target"),
    (["--attention-backend", "triton", "--model-p=/other"], "--target"),
])
def test_serve_refuses_passthrough_that_overrides_its_own_flags(cli, samples, args, option):
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--print-only", "--", *args)
    assert result.exit_code == 2 and result.stdout == ""  # a usage error
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error:") and "would override" in lines[0]
    assert any(line.startswith("hint:") and f"eaglectl serve {option}" in line for line in lines)


@pytest.mark.parametrize("args", [["--speculative-draft-model-revision", "main"], ["--port", "9"],
                                  ["--speculative-draft-window-size", "128"], ["--", "--model", "x"]])
def test_serve_passes_other_flags_through(cli, samples, args):
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--print-only", "--json",
                 "--", *args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"]["argv"][-len(args):] == args


def test_context_length_is_owned_only_when_eaglectl_sets_it(cli, samples):
    base = ["serve", "--target", samples["target"], "--draft", samples["specforge"], "--print-only"]
    assert cli(*base, "--", "--context-length", "1024").exit_code == 0
    result = cli(*base, "--context-length", "2048", "--", "--context-length", "1024")
    assert result.exit_code == 2 and "eaglectl serve --context-length" in result.stderr  # a usage error


def test_overridden_flag_rules():
    from eaglectl.serving.passthrough import SERVE_OWNED, overridden_flag

    assert overridden_flag("--speculative-draft=x", SERVE_OWNED) == "--speculative-draft-model-path"
    assert overridden_flag("--speculative-draft-model-revision", SERVE_OWNED) is None
    assert overridden_flag("--mem-fraction-static", SERVE_OWNED) is None
    assert overridden_flag("-m", SERVE_OWNED) is None and overridden_flag("value", SERVE_OWNED) is None


# --- aux-layer ids per target family ------------------------------------------------------------------------------
def target_dir(d: Path, **cfg) -> Path:
    base = {"hidden_size": s.H, "vocab_size": s.VOCAB, "num_hidden_layers": 36, "model_type": "llama",
            "architectures": ["LlamaForCausalLM"]}
    save_json(d / "config.json", {**base, **cfg})
    return d


def aux_codes(cli, d: Path, target: Path) -> dict[str, dict]:
    _, doc = run_json(cli, "inspect", d, "--target", target)
    return {f["code"]: f for f in doc["result"]["findings"] if f["code"].startswith("aux")}


def test_gpt_oss_final_boundary_id_needs_sglang_0_5_17(cli, tmp_path):
    """nvidia/gpt-oss-120b-Eagle3-v3 asks for boundaries [24, 30, 36] of a 36-layer target (SGLang PR #32334)."""
    d = specforge_head(tmp_path / "h", eagle_config={"eagle_aux_hidden_state_layer_ids": [24, 30, 36]})
    gpt_oss = target_dir(tmp_path / "gpt-oss", model_type="gpt_oss", architectures=["GptOssForCausalLM"])
    f = aux_codes(cli, d, gpt_oss)["aux-layer-ids"]
    assert f["severity"] == "warning" and "0.5.9-0.5.16 never" in f["message"] and "0.5.17" in f["fix"]
    llama = target_dir(tmp_path / "llama")
    f = aux_codes(cli, d, llama)["aux-layer-ids"]
    assert f["severity"] == "error" and "at most 34" in f["fix"]  # a Llama target has no final-boundary capture


def test_deepseek_first_id_rule(cli, tmp_path):
    d = specforge_head(tmp_path / "h", eagle_config={"eagle_aux_hidden_state_layer_ids": [2, 30, 60]})
    ds = target_dir(tmp_path / "ds", num_hidden_layers=61, model_type="deepseek_v3",
                    architectures=["DeepseekV3ForCausalLM"])
    f = aux_codes(cli, d, ds)["aux-layer-ids"]  # 0.5.13+ take [2, 30, 60] as they are; before, 61 is never reached
    assert f["severity"] == "warning" and "0.5.9-0.5.12" in f["message"] and "0.5.13-0.5.16" not in f["message"]
    assert "SGLang >= 0.5.13" in f["fix"]
    llama = target_dir(tmp_path / "llama", num_hidden_layers=61)
    f = aux_codes(cli, d, llama)["aux-layer-ids"]
    assert f["severity"] == "error" and "[1, 29, 59]" in f["fix"]


def test_vllm_default_ids_are_flagged(cli, tmp_path):
    d = specforge_head(tmp_path / "h", eagle_config={"eagle_aux_hidden_state_layer_ids": [2, 16, 29]})
    f = aux_codes(cli, d, target_dir(tmp_path / "t", num_hidden_layers=32))["aux-ids-numbering"]
    assert f["severity"] == "warning" and "[1, 15, 28]" in f["fix"]


def test_four_aux_ids_are_accepted(cli, tmp_path, sample_root):
    d = specforge_head(tmp_path / "h", eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 2, 3, 4]})
    edit_tensors(d, lambda t: t.update({"fc.weight": torch.zeros(s.H, 4 * s.H, dtype=torch.bfloat16)}))
    code, doc = run_json(cli, "inspect", d, "--target", sample_root / "target")
    assert code == 0, doc["result"]["findings"]
    assert "aux-layer-ids" not in codes(doc) and "shape" not in codes(doc)
    assert codes(doc)["sglang-minimum"] == "warning"  # 0.5.9-0.5.11 build fc for exactly 3
    assert doc["result"]["sglang"]["minimum"] == "0.5.15"  # 0.5.12-0.5.14 fail at CUDA-graph capture
    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0, doc
    assert any("needs SGLang >= 0.5.15 (4 aux hidden states with CUDA graphs on)" in p
               for v in doc["result"]["verification"] for p in v["problems"])


# --- non-Llama EAGLE architectures --------------------------------------------------------------------------------
def test_qwen2_eagle_head_is_recognised_and_kept(cli, tmp_path):
    d = tmp_path / "qwen2"
    cfg = s.draft_config(architectures=["Qwen2ForCausalLMEagle"], num_layers=1, eagle3=False, model_type="qwen2")
    save_json(d / "config.json", cfg)
    t = s.eagle1_tensors()
    q, kv = s.HEADS * s.HEAD_DIM, s.KV * s.HEAD_DIM
    t.update({"layers.0.self_attn.q_proj.bias": torch.zeros(q, dtype=torch.bfloat16),
              "layers.0.self_attn.k_proj.bias": torch.zeros(kv, dtype=torch.bfloat16),
              "layers.0.self_attn.v_proj.bias": torch.zeros(kv, dtype=torch.bfloat16)})
    save_safetensors(d / "model.safetensors", t)
    code, doc = run_json(cli, "inspect", d)
    assert code == 0, doc["result"]["findings"]
    found = codes(doc)
    assert found["sglang-architecture"] == "info" and "architectures" not in found
    assert "not verified" in finding(doc, "sglang-architecture")["message"]
    assert doc["result"]["algorithm"] == "EAGLE" and doc["result"]["sglang_ready"] is False
    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0, doc
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLMEagle"]
    assert set(read_all(tmp_path / "out")) == set(t)


def mla_head(d: Path, **config) -> Path:
    """lightseekorg's kimi-k2.5-eagle3-mla style: EAGLE-3 with DeepSeek-V2 multi-latent attention."""
    cfg = s.draft_config(architectures=["Eagle3DeepseekV2ForCausalLM"], num_layers=1, model_type="deepseek_v3",
                         q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)
    cfg.update(config)
    save_json(d / "config.json", {k: v for k, v in cfg.items() if v is not None})
    z = lambda *shape: torch.zeros(*shape, dtype=torch.bfloat16)  # noqa: E731
    save_safetensors(d / "model.safetensors", {
        "fc.weight": z(s.H, 3 * s.H), "layers.0.self_attn.q_a_proj.weight": z(32, 2 * s.H),
        "layers.0.self_attn.kv_a_proj_with_mqa.weight": z(24, 2 * s.H), "layers.0.self_attn.o_proj.weight": z(s.H, 32),
        "layers.0.mlp.gate_proj.weight": z(s.INTER, s.H), "layers.0.mlp.up_proj.weight": z(s.INTER, s.H),
        "layers.0.mlp.down_proj.weight": z(s.H, s.INTER), "norm.weight": z(s.H),
        "lm_head.weight": z(s.DRAFT_VOCAB, s.H), **s.d2t_t2d()})
    return d


def test_mla_eagle3_head_is_recognised(cli, tmp_path):
    d = mla_head(tmp_path / "mla")
    code, doc = run_json(cli, "inspect", d)
    assert code == 0, doc["result"]["findings"]
    assert codes(doc)["sglang-architecture"] == "info" and "missing-tensors" not in codes(doc)
    d = mla_head(tmp_path / "bad", q_lora_rank=None)
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and "q_lora_rank" in finding(doc, "architecture-config")["message"]
    expect_refusal(cli, ["export", d], "architecture-config")


# --- published SpecForge configs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def published_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    out = {}
    for name in PUBLISHED:
        out[name] = build_published(name, root / name)
        out[name + ":no-embed"] = build_published(name, root / (name + "-no-embed"), embeddings=False)
        t = root / (name + "-target")
        save_json(t / "config.json", published_heads()[name]["target"])
        out[name + ":target"] = t
    return out


@pytest.mark.parametrize("name", PUBLISHED)
@pytest.mark.parametrize("embeddings", [True, False], ids=["as-trained", "specforge-export"])
def test_published_head_inspects_clean(cli, published_dirs, no_value_scan, name, embeddings):
    d = published_dirs[name if embeddings else name + ":no-embed"]
    code, doc = run_json(cli, "inspect", d, "--target", published_dirs[name + ":target"])
    assert code == 0, doc
    r = doc["result"]
    assert r["sglang_ready"] is True and r["layout"] == "sglang-ready"
    # SpecForge's drafts state a 2048-token context; a target whose config class gives it a longer one (Qwen3-MoE
    # 32768, Llama-4 131072) is refused by SGLang without SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN: a launch matter
    # (serve --allow-longer-context), not the head's
    assert {f["severity"] for f in r["findings"] if f["code"] != "context-length"} <= {"info"}, r["findings"]


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_head_exports(cli, published_dirs, no_value_scan, name):
    code, doc = run_json(cli, "export", published_dirs[name + ":no-embed"])
    assert code == 0, doc
    r = doc["result"]
    assert r["action"] == "unchanged" and all(v["ok"] for v in r["verification"])


def test_published_head_written_copy_verifies(cli, published_dirs, no_value_scan, tmp_path):
    d = published_dirs["qwen3-30B-A3B-eagle3:no-embed"]
    code, doc = run_json(cli, "export", d, "--output", tmp_path / "out")
    assert code == 0, doc
    r = doc["result"]
    assert r["action"] == "written" and all(v["ok"] for v in r["verification"]) and not r["dropped"]
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as fh:
        shapes = {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    head = published_heads()["qwen3-30B-A3B-eagle3"]["tensors"]
    assert shapes == {k: v[1] for k, v in head.items() if "embed" not in k}


def test_published_heads_cover_the_issue_list():
    assert set(PUBLISHED) == {"llama3-8B-eagle3", "qwen3-8b-eagle3", "qwen3-30B-A3B-eagle3",
                              "llama4-scout-17B-16E-eagle3", "gpt-oss-120B-eagle3", "deepseek-v3-671b-eagle3"}


def test_every_mode_is_documented():
    from eaglectl.checks.failure_modes import MODES

    doc = (Path(__file__).resolve().parent.parent / "docs" / "failure-modes.md").read_text()
    missing = [code for code in MODES if f"`{code}`" not in doc]
    assert not missing


# --- t2d against d2t and the vocab sizes ----------------------------------------------------------------------------
def _shift_t2d(t):  # one token out, another in: still DRAFT_VOCAB marked, no longer what d2t names
    t2d = t["t2d"].clone()
    first_in, first_out = int(t2d.nonzero()[0]), int((~t2d).nonzero()[0])
    t2d[first_in], t2d[first_out] = False, True
    t["t2d"] = t2d


@pytest.mark.parametrize(("edit", "said"), [
    (lambda t: t.update({"t2d": torch.cat([t["t2d"], torch.zeros(5, dtype=torch.bool)])}),
     f"t2d has {s.VOCAB + 5} entries for a {s.VOCAB}-token vocab"),
    (lambda t: t["t2d"].__setitem__(int((~t["t2d"]).nonzero()[0]), True),
     f"t2d marks {s.DRAFT_VOCAB + 1} tokens as in the draft vocab, which has {s.DRAFT_VOCAB}"),
    (_shift_t2d, "t2d marks 1 target tokens d2t does not name and misses 1 it names"),
])
def test_a_t2d_that_disagrees_is_flagged_by_inspect_and_export(cli, tmp_path, edit, said):
    d = specforge_head(tmp_path / "h")
    code, doc = run_json(cli, "inspect", d)
    assert "t2d-mismatch" not in codes(doc)  # the sample's own maps agree
    edit_tensors(d, edit)
    code, doc = run_json(cli, "inspect", d)
    assert codes(doc).get("t2d-mismatch") == "warning", doc["result"]["findings"]
    assert said in finding(doc, "t2d-mismatch")["message"]
    result = cli("export", d, "-o", tmp_path / "out")
    assert result.exit_code == 0 and "t2d-mismatch" in result.stderr and said in result.stderr


# --- weights SGLang builds no parameter for -------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "fix"), [
    ("eagle1-qkv-bias", "set attention_bias: true"), ("eagle1-layer0-input-norm", "no SGLang release applies it"),
    ("eagle3-fc-bias", "set bias: true"), ("eagle3-o-bias", "set attention_bias: true"),
    ("eagle3-qkv-bias", "no SGLang release applies these biases"),
    ("eagle1-mlp-bias", "no SGLang release applies these biases"),
])
def test_weights_sglang_builds_no_parameter_for_are_refused(cli, tmp_path, kind, fix):
    """SGLang's loaders skip these without a word (its own load_weights: they reach no parameter); export used to
    write them and then fail its own verification, after inspect had promised that export fixes them."""
    from tests.synthetic_heads import eagle1_head, head, write

    built = {
        "eagle1-qkv-bias": lambda: eagle1_head(qkv_bias=True),
        "eagle1-layer0-input-norm": lambda: eagle1_head(extra={"layers.0.input_layernorm.weight": (s.H,)}),
        # the plan drops these as names no parameter takes: still trained weights
        "eagle1-mlp-bias": lambda: eagle1_head(extra={"layers.0.mlp.gate_proj.bias": (s.INTER,),
                                                      "layers.0.mlp.up_proj.bias": (s.INTER,),
                                                      "layers.0.mlp.down_proj.bias": (s.H,)}),
        "eagle3-fc-bias": lambda: head(fc_bias=True),
        "eagle3-o-bias": lambda: head(o_bias=True),
        "eagle3-qkv-bias": lambda: head(qkv_bias=True, attention_bias=True),
    }
    d = write(tmp_path / "h", *built[kind]())
    code, doc = run_json(cli, "inspect", d)
    assert code == 1 and codes(doc)["weight-not-loaded"] == "error"
    assert fix in finding(doc, "weight-not-loaded")["fix"]
    assert not {"skipped-tensors", "unused-tensors"} & set(codes(doc))
    expect_refusal(cli, ["export", d, "--output", tmp_path / "out"], "weight-not-loaded")
    assert not (tmp_path / "out").exists()

