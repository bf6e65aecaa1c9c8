"""SGLang's rules about the draft config (engines/sglang): draft_vocab_size read without a default, null
replacing the trained lm_head, RoPE read from rope_parameters only from 0.5.10, fc skipped when the aux width
equals the draft width, aux states concatenated in layer order, norm_output and aux counts with CUDA graphs per
release; and what inspect and export do with each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eaglectl.demo.samples import DRAFT_VOCAB, VOCAB, H
from eaglectl.engines.sglang import rules
from eaglectl.engines.sglang.loader import (
    fc_bypassed,
    minimum_release,
    replay_releases,
    rope_only_in_parameters,
    serving_spans,
    simulate_load,
    unsorted_aux_ids,
)
from eaglectl.enums import Algorithm
from tests.helpers import run_json
from tests.synthetic_heads import head, write

E3 = Algorithm.EAGLE3
ROPE5 = {"rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}}


def codes(doc: dict) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in doc["result"]["findings"]}


def test_loader_ranges_split_where_a_config_rule_changes():
    assert [r.label for r in rules.EAGLE3_LOADERS] == ["0.5.9", "0.5.10–0.5.11", "0.5.12–0.5.14", "0.5.15–0.5.16",
                                                       "0.5.17–0.5.23"]
    assert [r.rope_parameters.value for r in rules.EAGLE3_LOADERS] == [False, True, True, True, True]
    assert [r.norm_output.value for r in rules.EAGLE3_LOADERS] == [False, False, True, True, True]
    assert [r.aux_count_with_cuda_graph.value for r in rules.EAGLE3_LOADERS] == [True, True, False, True, True]


# --- draft_vocab_size -----------------------------------------------------------------------------------------
def test_absent_draft_vocab_size_fails_to_start_on_every_release():
    cfg, shapes = head()
    del cfg["draft_vocab_size"]
    for rng in rules.EAGLE3_LOADERS:
        sim = simulate_load(cfg, shapes, E3, rng.first)
        assert not sim.ok and any("no draft_vocab_size" in p and "AttributeError" in p for p in sim.problems)
    assert serving_spans(replay_releases(cfg, shapes, E3)) == []
    cfg["draft_vocab_size"] = None  # present and null: no start-up failure from the key itself
    assert not any("no draft_vocab_size" in p for p in simulate_load(cfg, shapes, E3, "0.5.23").problems)


def test_export_always_writes_draft_vocab_size(cli, tmp_path):
    # A full-vocab head without the key: export keeps its trained lm_head by writing its rows.
    cfg, shapes = head()
    del cfg["draft_vocab_size"]
    shapes["lm_head.weight"] = (VOCAB, H)
    del shapes["d2t"], shapes["t2d"]
    src = write(tmp_path / "full", cfg, shapes)
    code, doc = run_json(cli, "inspect", src)
    assert code == 1 and codes(doc)["draft-vocab-size-missing"] == "error"
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0, doc
    assert json.loads((tmp_path / "out" / "config.json").read_text())["draft_vocab_size"] == VOCAB
    code, doc = run_json(cli, "inspect", tmp_path / "out")
    assert "draft-vocab-size-missing" not in codes(doc) and doc["result"]["layout"] == "sglang-ready"


def test_export_writes_null_for_a_head_without_lm_head(cli, tmp_path):
    cfg, shapes = head()
    del cfg["draft_vocab_size"], shapes["lm_head.weight"], shapes["d2t"], shapes["t2d"]
    code, doc = run_json(cli, "export", write(tmp_path / "h", cfg, shapes), "--output", tmp_path / "out")
    assert code == 0, doc
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "draft_vocab_size" in written and written["draft_vocab_size"] is None
    assert any(c.startswith("draft_vocab_size: absent -> None") for c in doc["result"]["config_changes"])


def test_null_draft_vocab_size_with_a_full_lm_head_is_replaced_and_export_keeps_it(cli, tmp_path):
    cfg, shapes = head(draft_vocab_size=None)
    shapes["lm_head.weight"] = (VOCAB, H)
    del shapes["d2t"], shapes["t2d"]
    src = write(tmp_path / "h", cfg, shapes)
    code, doc = run_json(cli, "inspect", src)
    assert codes(doc)["lm-head-replaced"] == "warning"
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0 and json.loads((tmp_path / "out" / "config.json").read_text())["draft_vocab_size"] == VOCAB


def test_null_draft_vocab_size_with_a_pruned_lm_head_fails_to_start_and_export_fixes_it(cli, tmp_path):
    cfg, shapes = head(draft_vocab_size=None)
    src = write(tmp_path / "h", cfg, shapes)
    code, doc = run_json(cli, "inspect", src)
    assert code == 1 and codes(doc)["draft-vocab-size-null"] == "error"
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0 and json.loads((tmp_path / "out" / "config.json").read_text())["draft_vocab_size"] == DRAFT_VOCAB


# --- RoPE -------------------------------------------------------------------------------------------------------
def test_rope_only_in_rope_parameters_is_lost_on_0_5_9():
    cfg, shapes = head(**ROPE5)
    cfg.pop("rope_theta", None)
    assert "base 500000.0" in rope_only_in_parameters(cfg)
    minimum, needs = minimum_release(cfg, list(shapes), E3)
    assert minimum == "0.5.10" and any("rope_parameters" in n for n in needs)
    assert serving_spans(replay_releases(cfg, shapes, E3)) == ["0.5.10–0.5.23"]  # 0.5.9 ignores rope_parameters
    cfg["rope_theta"] = 500000.0  # mirrored at the top level: every release reads the same base
    assert rope_only_in_parameters(cfg) is None
    assert minimum_release(cfg, list(shapes), E3)[0] == "0.5.9"
    assert serving_spans(replay_releases(cfg, shapes, E3)) == ["0.5.9–0.5.23"]


def test_a_llama4_text_draft_gets_its_config_classs_rope_base(cli, tmp_path):
    """transformers 4.57.1's Llama4TextConfig defaults rope_theta to 500000: a rope_parameters-only llama4_text head
    trained with 10000 runs on 0.5.9 with 500000 (SGLang's own 0.5.9 rotary embedding showed it), and one trained
    with 500000 loses nothing."""
    cfg, shapes = head(model_type="llama4_text", intermediate_size_mlp=128,
                       rope_parameters={"rope_theta": 10000.0, "rope_type": "default"})
    cfg.pop("rope_theta", None)
    assert "base 10000.0 (read as 500000)" in rope_only_in_parameters(cfg)
    src = write(tmp_path / "h", cfg, shapes)
    code, doc = run_json(cli, "inspect", src)
    assert codes(doc)["rope-parameters-only"] == "warning"
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0 and json.loads((tmp_path / "out" / "config.json").read_text())["rope_theta"] == 10000.0
    cfg["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
    assert rope_only_in_parameters(cfg) is None


def test_rope_scaling_only_in_rope_parameters_is_lost_too():
    cfg = {"rope_parameters": {"rope_theta": 10000.0, "rope_type": "llama3", "factor": 8.0}}
    assert "llama3 scaling" in rope_only_in_parameters(cfg)
    assert rope_only_in_parameters({"rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}) is None


def test_export_mirrors_rope_and_inspect_warns(cli, tmp_path):
    cfg, shapes = head(**ROPE5)
    cfg.pop("rope_theta", None)
    cfg["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
                              "original_max_position_embeddings": 8192}
    src = write(tmp_path / "h", cfg, shapes)
    code, doc = run_json(cli, "inspect", src)
    assert codes(doc)["rope-parameters-only"] == "warning"
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0, doc
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["rope_theta"] == 500000.0 and written["rope_scaling"]["rope_type"] == "llama3"
    assert written["rope_parameters"] == cfg["rope_parameters"]
    assert doc["result"]["sglang_releases"] == ["0.5.9–0.5.23"]


def _rope_parameters_target(tmp_path: Path, sample_root: Path) -> Path:
    """The demo's target with its config as transformers 5 saves it: the RoPE base only in rope_parameters."""
    target = tmp_path / "target"
    target.mkdir()
    tcfg = json.loads((sample_root / "target" / "config.json").read_text())
    tcfg.pop("rope_theta", None)
    tcfg["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
    (target / "config.json").write_text(json.dumps(tcfg))
    return target


def test_a_target_with_rope_only_in_rope_parameters_is_flagged(cli, tmp_path, sample_root):
    target = _rope_parameters_target(tmp_path, sample_root)
    cfg, shapes = head()
    code, doc = run_json(cli, "inspect", write(tmp_path / "h", cfg, shapes), "--target", target)
    assert codes(doc)["target-rope-parameters-only"] == "warning"


def test_the_target_rope_note_is_for_the_releases_it_concerns(tmp_path, sample_root):
    """serve / bench know the release that will run: only a transformers-4 release (0.5.9) misreads the target."""
    from eaglectl.checkpoint.resolve import resolve
    from eaglectl.checkpoint.target import load_target
    from eaglectl.export.plan import build_plan
    from eaglectl.inspection.report import target_findings

    target = _rope_parameters_target(tmp_path, sample_root)
    cfg, shapes = head()
    ckpt = resolve(str(write(tmp_path / "h", cfg, shapes)))
    plan, info = build_plan(ckpt), load_target(str(target))

    def noted(version):
        return "target-rope-parameters-only" in {f.code for f in target_findings(ckpt, plan, info, version=version)}
    assert noted(None) and noted("0.5.9")
    assert not noted("0.5.10") and not noted("0.5.15")
    # a local build's version string: checked as the newest known release, as the installed-release check warns
    assert not noted("0.5.15-cu124") and not noted("garbage")


# --- fc skipped, aux order ----------------------------------------------------------------------------------------
def test_fc_is_skipped_when_the_aux_width_equals_the_draft_width():
    cfg, shapes = head(target_hidden_size=H // 3 + 1)  # not a width that equals H
    assert fc_bypassed(cfg, shapes) is None
    cfg, shapes = head(n_aux=1, eagle_config={"eagle_aux_hidden_state_layer_ids": [3]}, num_aux_hidden_states=1)
    assert "skips fc" in fc_bypassed(cfg, shapes)
    sim = simulate_load(cfg, shapes, E3, "0.5.23")
    assert not sim.ok and any("skips fc" in p for p in sim.problems)


def test_unsorted_aux_ids_arrive_in_layer_order():
    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [5, 1, 3]})
    assert "[1, 3, 5]" in unsorted_aux_ids(cfg)
    assert not simulate_load(cfg, shapes, E3, "0.5.15").ok
    cfg, _ = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 5]})
    assert unsorted_aux_ids(cfg) is None


def test_an_aux_id_named_twice_is_captured_once(cli, tmp_path):
    """The target captures a layer once however often the draft lists it: fc gets fewer states than it takes."""
    from eaglectl.engines.sglang.loader import repeated_aux_ids

    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [3, 3, 5]})
    assert "2 aux states reach fc, which takes 3" in repeated_aux_ids(cfg)
    assert all(not simulate_load(cfg, shapes, E3, r.first).ok for r in rules.EAGLE3_LOADERS)
    code, doc = run_json(cli, "inspect", write(tmp_path / "h", cfg, shapes))
    assert code == 1 and any("more than once" in f["message"] for f in doc["result"]["findings"])
    result = cli("export", tmp_path / "h", "--output", tmp_path / "out")
    assert result.exit_code == 1 and "more than once" in result.stderr


def test_export_refuses_unsorted_aux_ids(cli, tmp_path):
    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [5, 1, 3]})
    result = cli("export", write(tmp_path / "h", cfg, shapes), "--output", tmp_path / "out")
    assert result.exit_code == 1 and "ascending order" in result.stderr
    assert not (tmp_path / "out").exists()


# --- norm_output, aux counts with CUDA graphs ---------------------------------------------------------------------
def test_norm_output_needs_0_5_12():
    cfg, shapes = head(norm_output=True)
    assert minimum_release(cfg, list(shapes), E3)[0] == "0.5.12"


def test_releases_that_ignore_norm_output_are_not_said_to_serve_the_head(cli, tmp_path):
    """0.5.9-0.5.11 load the weights but never read norm_output: they hand the next draft step another hidden
    state than training did, so neither inspect nor export lists them among the releases that serve the head."""
    cfg, shapes = head(norm_output=True)
    assert serving_spans(replay_releases(cfg, shapes, E3)) == ["0.5.12–0.5.23"]
    src = write(tmp_path / "h", cfg, shapes)
    code, doc = run_json(cli, "inspect", src)
    assert doc["result"]["sglang"]["serves"] == ["0.5.12–0.5.23"]
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0 and doc["result"]["sglang_releases"] == ["0.5.12–0.5.23"]


def test_four_aux_states_need_0_5_15_with_cuda_graphs():
    cfg, shapes = head(n_aux=4, num_aux_hidden_states=4)
    minimum, needs = minimum_release(cfg, list(shapes), E3)
    assert minimum == "0.5.15" and any("CUDA graphs" in n for n in needs)


def test_a_clean_head_has_none_of_these_findings(cli, tmp_path):
    cfg, shapes = head()
    code, doc = run_json(cli, "inspect", write(tmp_path / "h", cfg, shapes))
    assert code == 0 and not {"draft-vocab-size-missing", "draft-vocab-size-null", "lm-head-replaced",
                              "rope-parameters-only", "sglang-minimum", "config"} & set(codes(doc))


# --- biases, ModelOpt switches, aux ids named twice, aux capture off ---------------------------------------------
def test_bias_true_with_only_an_fc_bias_exports(cli, tmp_path):
    cfg, shapes = head(fc_bias=True, bias=True)  # o_proj.bias starts at zero in SGLang: nothing is missing
    code, doc = run_json(cli, "export", write(tmp_path / "h", cfg, shapes), "--output", tmp_path / "out")
    assert code == 0, doc


def test_modelopt_switches_sglang_does_not_read_are_warned(cli, tmp_path):
    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 4], "use_last_layernorm": False,
                                     "use_input_layernorm_in_first_layer": True, "parallel_draft_step": 1})
    code, doc = run_json(cli, "inspect", write(tmp_path / "h", cfg, shapes))
    found = next(f for f in doc["result"]["findings"] if f["code"] == "eagle-config-unread")
    assert "use_last_layernorm: False" in found["message"] and "parallel_draft_step" not in found["message"]


def test_aux_ids_named_twice_must_agree_in_their_numberings(cli, tmp_path):
    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 4]},
                       eagle_aux_hidden_state_layer_ids=[1, 3, 4])
    code, doc = run_json(cli, "inspect", write(tmp_path / "a", cfg, shapes))
    assert codes(doc)["aux-ids-disagree"] == "warning"
    cfg["eagle_aux_hidden_state_layer_ids"] = [2, 4, 5]  # vLLM's numbering of the same layers
    code, doc = run_json(cli, "inspect", write(tmp_path / "b", cfg, shapes))
    assert "aux-ids-disagree" not in codes(doc)


def test_aux_capture_switched_off_is_a_problem_on_every_release():
    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 4], "use_aux_hidden_state": False})
    assert all(any("use_aux_hidden_state is false" in p for p in simulate_load(cfg, shapes, E3, r.first).problems)
               for r in rules.EAGLE3_LOADERS)


@pytest.mark.parametrize(("value", "off"), [(None, True), (0, True), (True, False), ("false", False)])
def test_aux_capture_is_off_for_any_false_value(cli, tmp_path, value, off):
    """SGLang tests the value for truth (`if eagle_use_aux_hidden_state:`): null and 0 switch the capture off as
    false does; a string is true."""
    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 4], "use_aux_hidden_state": value})
    code, doc = run_json(cli, "inspect", write(tmp_path / "h", cfg, shapes))
    found = [f for f in doc["result"]["findings"] if "use_aux_hidden_state" in f["message"]]
    assert (code == 1 and bool(found)) is off, doc["result"]["findings"]
    result = cli("export", tmp_path / "h", "--output", tmp_path / "out")
    assert (result.exit_code == 1 and "use_aux_hidden_state" in result.stderr) is off


# --- which files SGLang reads --------------------------------------------------------------------------------------
def test_every_safetensors_file_beside_model_safetensors_is_read(tmp_path):
    import torch

    from eaglectl.checkpoint.resolve import resolve
    from eaglectl.demo.samples import save_safetensors

    cfg, shapes = head()
    d = write(tmp_path / "h", cfg, shapes)
    save_safetensors(d / "stray.safetensors", {"extra.weight": torch.zeros(4, dtype=torch.bfloat16)})
    ckpt = resolve(d)
    assert "extra.weight" in ckpt.weights.tensors and len(ckpt.weights.files) == 2  # SGLang loads both files
    (d / "stray.safetensors").rename(d / "consolidated.safetensors")  # Mistral's pair: SGLang takes model.*
    assert "extra.weight" not in resolve(d).weights.tensors
    assert rules.weight_files_read(["a.safetensors", "b.safetensors"], {"b.safetensors"}) == ["b.safetensors"]


# --- context length ------------------------------------------------------------------------------------------------
def test_context_length_as_sglang_derives_it():
    from eaglectl.engines.sglang.loader import context_length

    assert context_length({"max_position_embeddings": 8192}) == 8192
    assert context_length({"seq_length": 2048, "max_position_embeddings": 131072}) == 2048  # the stale key wins
    assert context_length({"max_position_embeddings": 4096, "rope_scaling": {"rope_type": "dynamic", "factor": 4.0}}) \
        == 16384
    # transformers 5 fills original_max_position_embeddings in for yarn (and llama3, longrope): no factor
    assert context_length({"max_position_embeddings": 4096, "rope_scaling": {"type": "yarn", "factor": 4.0}}) == 4096
    # no context key: the config class's max_position_embeddings
    assert context_length({"model_type": "qwen3"}) == 32768 and context_length({"model_type": "llama4_text"}) == 131072
    assert context_length({"max_position_embeddings": 8192, "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0}}) == 8192
    assert context_length({}) == 2048


def test_a_stale_seq_length_makes_serve_refuse_a_long_target(cli, tmp_path, sample_root):
    cfg, shapes = head(seq_length=256)  # the target's context is longer than 256
    result = cli("serve", "--target", sample_root / "target", "--draft", write(tmp_path / "h", cfg, shapes),
                 "--print-only")
    assert result.exit_code == 1 and "the draft's context length 256" in result.stderr, result.stderr


def test_a_yarn_draft_is_served_with_its_unscaled_context(cli, tmp_path, sample_root):
    """A yarn draft without original_max_position_embeddings: SGLang 0.5.9 (transformers 4.57.1) fails to build its
    rotary embedding (KeyError; SGLang's own 0.5.9 showed it), 0.5.10+ derive max_position_embeddings as its context
    (transformers 5 sets the original to it), so a target of 4 x that context is refused. Export writes the original
    in, as transformers 5 does, and the head then loads in every release."""
    from eaglectl.engines.sglang.loader import rope_original_missing

    target = tmp_path / "target"
    tcfg = json.loads((sample_root / "target" / "config.json").read_text())
    (target / "config.json").parent.mkdir()
    (target / "config.json").write_text(json.dumps(dict(tcfg, max_position_embeddings=8192)))
    cfg, shapes = head(max_position_embeddings=2048, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    assert "KeyError" in rope_original_missing(cfg, "0.5.9") and rope_original_missing(cfg, "0.5.10") is None
    assert serving_spans(replay_releases(cfg, shapes, E3)) == ["0.5.10–0.5.23"]
    src = write(tmp_path / "h", cfg, shapes)
    code, doc = run_json(cli, "inspect", src, "--target", target)
    assert codes(doc)["context-length"] == "warning" and codes(doc)["rope-original-missing"] == "warning"
    result = cli("serve", "--target", target, "--draft", src, "--print-only")
    assert result.exit_code == 1 and "the draft's context length 2048" in result.stderr, result.stderr
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0 and doc["result"]["sglang_releases"] == ["0.5.9–0.5.23"]
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["rope_scaling"] == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048}


def test_a_qwen3_draft_without_max_position_embeddings_has_its_classs_context(cli, tmp_path, sample_root):
    """Qwen3Config's max_position_embeddings (32768) is the context SGLang derives for a draft config without one,
    not SGLang's fallback 2048: a 32k target is served."""
    target = tmp_path / "target"
    tcfg = json.loads((sample_root / "target" / "config.json").read_text())
    (target / "config.json").parent.mkdir()
    (target / "config.json").write_text(json.dumps(dict(tcfg, max_position_embeddings=32768)))
    cfg, shapes = head(model_type="qwen3")
    del cfg["max_position_embeddings"]
    src = write(tmp_path / "h", cfg, shapes)
    code, doc = run_json(cli, "inspect", src, "--target", target)
    assert code == 0 and "context-length" not in codes(doc), doc["result"]["findings"]
    result = cli("serve", "--target", target, "--draft", src, "--print-only")
    assert result.exit_code == 0, result.stderr


def test_later_layers_input_layernorm_becomes_hidden_norm(cli, tmp_path):
    """speculators' multi-layer heads normalise layers >= 1 with input_layernorm; SGLang's layers >= 1 apply
    hidden_norm there (and never read input_layernorm): export writes the weight under that name, and keeps it
    under its own, which vLLM's layers >= 1 apply. A later layer with only hidden_norm gets the same pair."""
    import torch
    from safetensors import safe_open

    cfg, shapes = head(layers=2)
    del shapes["layers.1.hidden_norm.weight"]
    code, doc = run_json(cli, "export", write(tmp_path / "h", cfg, shapes), "--output", tmp_path / "out")
    assert code == 0, doc
    assert doc["result"]["renamed"]["layers.1.input_layernorm.weight"] == "layers.1.hidden_norm.weight"
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        assert torch.equal(f.get_tensor("layers.1.hidden_norm.weight"), f.get_tensor("layers.1.input_layernorm.weight"))
    cfg, shapes = head(layers=2)
    del shapes["layers.1.input_layernorm.weight"]
    code, doc = run_json(cli, "export", write(tmp_path / "h2", cfg, shapes), "--output", tmp_path / "out2")
    assert code == 0, doc
    with safe_open(str(tmp_path / "out2" / "model.safetensors"), "pt") as f:
        assert torch.equal(f.get_tensor("layers.1.hidden_norm.weight"), f.get_tensor("layers.1.input_layernorm.weight"))


def test_eagle1_loader_drops_unexpected_biases_and_scales():
    from eaglectl.demo.samples import draft_config, eagle1_tensors

    cfg = draft_config(architectures=["LlamaForCausalLMEagle"], num_layers=1, eagle3=False)
    shapes = {k: tuple(v.shape) for k, v in eagle1_tensors().items()}
    shapes.update({"layers.0.self_attn.q_proj.bias": (64,), "layers.0.self_attn.k_proj.kv_scale": (1,)})
    sim = simulate_load(cfg, shapes, Algorithm.EAGLE, "0.5.15")
    assert sorted(sim.skipped) == ["layers.0.self_attn.k_proj.kv_scale", "layers.0.self_attn.q_proj.bias"]
    assert not sim.ok



def test_eagle1_o_proj_bias_starts_at_zero(cli, tmp_path):
    """EAGLE-1 builds o_proj as the same RowParallelLinear as EAGLE-3, whose bias starts at zero: a head with
    attention_bias, its q/k/v biases and no o_proj.bias loads right (SGLang's own load_weights, 0.5.9 and 0.5.15:
    o_proj.bias all zeros after construction), so export writes it."""
    from tests.synthetic_heads import eagle1_head

    cfg, shapes = eagle1_head(qkv_bias=True, attention_bias=True)
    sim = simulate_load(cfg, shapes, Algorithm.EAGLE, "0.5.23")
    assert sim.ok and sim.zero_initialised == ["model.layers.0.self_attn.o_proj.bias"]
    code, doc = run_json(cli, "export", write(tmp_path / "h", cfg, shapes), "--output", tmp_path / "out")
    assert code == 0, doc

# --- server flags meant for the target that reach the draft ----------------------------------------------------
def test_quantization_and_model_overrides_reach_the_draft():
    found = rules.draft_inherited_flags(["--quantization", "fp8", "--json-model-override-args", "{}"])
    assert [f.split(" ")[0] for f in found] == ["--quantization", "--json-model-override-args"]
    assert "--speculative-draft-model-quantization unquant" in found[0]
    assert rules.draft_inherited_flags(["--quantization=fp8", "--speculative-draft-model-quantization",
                                        "unquant"]) == []
    assert rules.draft_inherited_flags(["--tp-size", "2"]) == []


def test_an_abbreviated_flag_reaches_the_draft_too():
    """SGLang's argparse expands an unambiguous prefix of a flag (allow_abbrev)."""
    found = rules.draft_inherited_flags(["--json-model-override", "{}", "--quantization=fp8"])
    assert [f.split(" ")[0] for f in found] == ["--quantization", "--json-model-override-args"]
    assert rules.draft_inherited_flags(["--quantization", "fp8", "--speculative-draft-model-quant", "unquant"]) == []
    # --speculative-draft-model is the draft path's alias, not an abbreviation of the quantization flag
    assert len(rules.draft_inherited_flags(["--quantization", "fp8", "--speculative-draft-model", "/d"])) == 1
    assert rules.draft_inherited_flags(["--quantization-param-path", "/x"]) == []


def test_serve_warns_when_quantization_would_reach_the_draft(cli, tmp_path, sample_root):
    cfg, shapes = head()
    result = cli("serve", "--target", sample_root / "target", "--draft", write(tmp_path / "h", cfg, shapes),
                 "--print-only", "--", "--quantization", "fp8")
    assert result.exit_code == 0, result.stderr
    assert "--quantization reaches the draft" in result.stderr


def test_mistral_large_3_eagle_heads_keep_their_class(cli, tmp_path):
    """A registered SGLang draft architecture with its own loader: export keeps its class and names instead of
    rewriting it to LlamaForCausalLMEagle3."""
    from eaglectl.engines.sglang.architectures import own_loader

    assert own_loader({"architectures": ["MistralLarge3ForCausalLMEagle"]}).since == "0.5.9"
    cfg, shapes = head()
    cfg["architectures"] = ["MistralLarge3ForCausalLMEagle"]
    code, doc = run_json(cli, "export", write(tmp_path / "h", cfg, shapes), "--output", tmp_path / "out")
    assert code == 0, doc
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == [
        "MistralLarge3ForCausalLMEagle"]


# --- the draft config class's defaults ---------------------------------------------------------------------------
@pytest.mark.parametrize(("model_type", "param", "built"), [
    ("qwen3", "model.midlayer.self_attn.o_proj.weight", (64, 4 * 128)),  # head_dim 128, not hidden // heads
    ("qwen2", "model.midlayer.self_attn.qkv_proj.weight", None),  # 32 kv heads
    ("llama4_text", "model.midlayer.mlp.down_proj.weight", (64, 16384)),  # intermediate_size_mlp
])
def test_a_draft_config_gets_its_model_types_defaults(model_type, param, built):
    from eaglectl.engines.sglang.loader import expected_parameters

    control, shapes = head()  # a llama config naming every size: clean
    cfg = {k: v for k, v in control.items() if k not in ("head_dim", "num_key_value_heads")}
    cfg["model_type"] = model_type
    params = expected_parameters(cfg, E3, "0.5.9")
    if built is not None:
        assert params[param] == built
    else:
        assert params[param]["k"][0] == 32 * (64 // 4)
    sim = simulate_load(cfg, shapes, E3, "0.5.9")
    assert sim.shape_errors and not sim.ok  # Llama-sized weights do not fit what SGLang builds
    assert simulate_load(control, shapes, E3, "0.5.9").ok


@pytest.mark.parametrize(("model_type", "written"), [
    ("qwen3", {"head_dim": 16, "num_key_value_heads": 2}), ("qwen2", {"num_key_value_heads": 2}),
    ("qwen3_moe", {"num_key_value_heads": 2}),
    ("llama4_text", {"head_dim": 16, "num_key_value_heads": 2, "intermediate_size_mlp": 128}),
])
def test_export_writes_the_sizes_a_model_type_default_gets_wrong(cli, tmp_path, model_type, written):
    """A config without head_dim / num_key_value_heads / intermediate_size_mlp gets its model_type class's default,
    which the weights contradict: inspect says which and why, export writes the sizes the weights hold (q_proj rows per
    head, k_proj rows per head_dim, gate_proj rows), and SGLang then builds what the weights hold."""
    control, shapes = head()
    cfg = {k: v for k, v in control.items() if k not in ("head_dim", "num_key_value_heads")}
    cfg["model_type"] = model_type
    src = write(tmp_path / "h", cfg, shapes)
    code, doc = run_json(cli, "inspect", src)
    found = next(f for f in doc["result"]["findings"] if f["code"] == "config-class-defaults")
    assert code == 1 and found["severity"] == "error" and all(k in found["fix"] for k in written)
    code, doc = run_json(cli, "export", src, "--output", tmp_path / "out")
    assert code == 0, doc
    out = json.loads((tmp_path / "out" / "config.json").read_text())
    assert {k: out.get(k) for k in written} == written
    code, doc = run_json(cli, "inspect", tmp_path / "out")
    assert code == 0 and doc["result"]["sglang_ready"] is True


@pytest.mark.parametrize("arch", ["GlmMoeDsaForCausalLM", "MistralLarge3ForCausalLM"])
def test_glm5_and_mistral_large_3_targets_capture_as_deepseek(arch):
    """Both subclass DeepSeek's model class in SGLang, so their capture is DeepSeek's (ids as given from 0.5.13 unless
    the first is 1), not Llama's (+1)."""
    assert rules.capture_family("some_new_type", [arch]) == "deepseek"
    rule = rules.capture_rule("deepseek", "0.5.23")
    assert rules.captured_positions(rule, [2, 10, 20], 30) == [2, 10, 20]
    assert rules.captured_positions(rules.capture_rule("llama-like"), [2, 10, 20], 30) == [3, 11, 21]
