"""vLLM 0.33's rules as data (eaglectl/engines/vllm): the replay of its config parser, Eagle3LlamaForCausalLM's
load_weights and the aux-layer capture of both model runners, on synthetic heads (the cases of the CPU oracle
sweep, whose outcomes tests/test_vllm_oracle.py checks against vLLM's own code), and inspect's vLLM verdict."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eaglectl.demo.samples import DRAFT_VOCAB, VOCAB, H
from eaglectl.engines.vllm import rules
from eaglectl.engines.vllm.loader import parse_config, runner_capture, simulate_load, trained_capture
from tests.synthetic_heads import head

TARGET = {"target_vocab": VOCAB, "target_layers": 8}


def sglang_head(**config: Any) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The demo's one-layer EAGLE-3 head as eaglectl's SGLang export names it (midlayer.*, d2t, t2d)."""
    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 4]})
    cfg.update(config)
    return cfg, shapes


def test_every_rule_names_its_source():
    found = [v for v in vars(rules).values() if isinstance(v, rules.Rule)]
    assert len(found) > 40
    for rule in found:
        assert rule.source.release == rules.RELEASE and rule.source.file.startswith("vllm/") and rule.source.where


def test_the_sglang_export_loads_and_v2_captures_the_default_by_luck():
    cfg, shapes = sglang_head()
    sim = simulate_load(cfg, shapes, **TARGET)
    assert sim.model_class == "llama_eagle3.Eagle3LlamaForCausalLM" and not sim.errors and not sim.uninitialized
    assert sim.loaded["d2t"] == "draft_id_to_target_id" and sim.skipped == ["t2d"]
    assert sim.loaded["midlayer.self_attn.q_proj.weight"] == "model.layers.0.self_attn.qkv_proj.weight (shard q)"
    assert sim.from_target == ["model.embed_tokens.weight"]
    assert sim.capture_v2 is None and sim.capture_v1 == [1, 3, 4]  # V1 reads eagle_config's ids unshifted
    assert sim.capture == [2, 4, 5] == sim.trained and sim.ok  # the 8-layer default happens to be the trained one
    nondefault = simulate_load(*sglang_head(eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 3, 5]}), **TARGET)
    assert nondefault.trained == [1, 4, 6] and nondefault.capture == [2, 4, 5] and not nondefault.ok
    assert "captures [2, 4, 5] (its default)" in nondefault.warnings[0]


def test_top_level_ids_in_vllm_numbering_are_read_by_both_runners():
    cfg, shapes = sglang_head(eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 3, 5]},
                              eagle_aux_hidden_state_layer_ids=[1, 4, 6])
    sim = simulate_load(cfg, shapes, **TARGET)
    assert sim.capture_v2 == sim.capture_v1 == [1, 4, 6] == sim.trained and sim.ok


def test_four_aux_states_need_num_aux_hidden_states():
    cfg, shapes = head(n_aux=4)
    cfg["eagle_aux_hidden_state_layer_ids"] = [1, 3, 4, 6]
    sim = simulate_load(cfg, shapes, **TARGET)
    assert sim.fc_width == 3 * H and any("fc.weight: stored [64, 256]" in e for e in sim.errors)
    cfg["num_aux_hidden_states"] = 4
    sim = simulate_load(cfg, shapes, **TARGET)
    assert sim.fc_width == 4 * H and not sim.errors and sim.capture == [1, 3, 4, 6]


@pytest.mark.parametrize("prefix,loads", [("layers.0.", True), ("model.", False), ("draft_model.", False)])
def test_names(prefix, loads):
    cfg, shapes = sglang_head()
    if prefix == "layers.0.":
        shapes = {n.replace("midlayer.", "layers.0."): s for n, s in shapes.items()}
    else:
        shapes = {prefix + n: s for n, s in shapes.items()}
    sim = simulate_load(cfg, shapes, **TARGET)
    assert (not sim.errors) is loads
    if not loads:
        assert "vLLM has no parameter model." in sim.errors[0] and "ValueError" in sim.errors[0]


def test_d2t_and_the_draft_vocabulary():
    cfg, shapes = sglang_head()
    no_d2t = {n: s for n, s in shapes.items() if n != "d2t"}
    sim = simulate_load(cfg, no_d2t, **TARGET)
    assert sim.uninitialized == ["draft_id_to_target_id"] and not sim.errors  # silent: zeros in real vLLM
    full = dict(cfg, draft_vocab_size=VOCAB)
    full_shapes = {**no_d2t, "lm_head.weight": (VOCAB, H)}
    assert simulate_load(full, full_shapes, **TARGET).ok
    with_d2t = simulate_load(full, {**full_shapes, "d2t": (VOCAB,)}, **TARGET)
    assert any("no parameter draft_id_to_target_id" in e for e in with_d2t.errors)
    no_head = simulate_load(cfg, {n: s for n, s in shapes.items() if n != "lm_head.weight"}, **TARGET)
    assert no_head.uninitialized and "full-vocabulary lm_head" in no_head.uninitialized[0]


def test_architectures():
    cfg, shapes = sglang_head(architectures=["LlamaForCausalLM"])
    sim = simulate_load(cfg, shapes, **TARGET)
    assert sim.architecture == "Eagle3LlamaForCausalLM" and sim.ok
    sim = simulate_load(dict(cfg, architectures=["LlamaEagle3DraftModel"]), shapes, **TARGET)
    assert sim.model_class is None and "refuses to start" in sim.errors[0]
    sim = simulate_load(dict(cfg, architectures=["Qwen3ForCausalLM"]), shapes, **TARGET)
    assert sim.architecture == "Eagle3Qwen3ForCausalLM" and sim.model_class is None and not sim.errors


def test_more_layers_configured_than_stored_are_uninitialised():
    cfg, shapes = sglang_head(num_hidden_layers=2)
    sim = simulate_load(cfg, shapes, **TARGET)
    assert "model.layers.1.self_attn.qkv_proj.weight" in sim.uninitialized and not sim.errors


def test_later_layers_read_input_layernorm_not_hidden_norm():
    cfg, shapes = head(layers=2, names="layers")
    sim = simulate_load(cfg, shapes, **TARGET)
    assert "model.layers.1.hidden_norm.weight" in sim.loaded.values() and sim.ok
    only_hidden = {n: s for n, s in shapes.items() if n != "layers.1.input_layernorm.weight"}
    sim = simulate_load(cfg, only_hidden, **TARGET)
    assert sim.uninitialized == ["model.layers.1.input_layernorm.weight"] and not sim.ok


def speculators_config(kind: str = "eagle3", **extra: Any) -> dict[str, Any]:
    cfg, _ = head()
    layer = {k: v for k, v in cfg.items() if k not in ("architectures", "draft_vocab_size", "target_hidden_size")}
    out = {"architectures": ["Eagle3Speculator"], "speculators_model_type": kind, "speculators_version": "0.9.0",
           "speculators_config": {"algorithm": kind, "default_proposal_method": "greedy",
                                  "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": 3}],
                                  "verifier": {"name_or_path": "org/target", "architectures": ["LlamaForCausalLM"]}},
           "draft_vocab_size": DRAFT_VOCAB, "target_hidden_size": None, "eagle_aux_hidden_state_layer_ids": [2, 4, 5],
           "norm_before_fc": False, "fc_norm": False, "norm_output": False, "transformer_layer_config": layer}
    out.update(extra)
    return out


def test_speculators_configs():
    _, shapes = head()
    shapes = {n.replace("midlayer.", "layers.0."): s for n, s in shapes.items()}
    sim = simulate_load(speculators_config(norm_before_residual=False), shapes, **TARGET)
    assert sim.format == "speculators" and sim.architecture == "Eagle3LlamaForCausalLM" and sim.ok
    assert sim.capture_v1 == sim.capture_v2 == [2, 4, 5] == sim.trained and not sim.norm_before_residual
    absent = simulate_load(speculators_config(), shapes, **TARGET)
    assert absent.norm_before_residual and any("vLLM reads True" in n for n in absent.notes)
    peagle = speculators_config("peagle", mask_token_id=VOCAB - 1)
    sim = simulate_load(peagle, {**shapes, "mask_hidden": (1, 1, 3 * H)}, **TARGET)
    assert sim.parallel_drafting and sim.runner == "V1" and sim.loaded["mask_hidden"] == "mask_hidden" and sim.ok
    sim = simulate_load(peagle, shapes, **TARGET)
    assert any("without mask_hidden" in e for e in sim.errors)
    del peagle["mask_token_id"]
    assert any("KeyError" in e for e in simulate_load(peagle, shapes, **TARGET).errors)
    sim = simulate_load(dict(cfg := speculators_config()), shapes, parallel_drafting=False, **TARGET)
    assert sim.ok and cfg["speculators_model_type"] == "eagle3"


def test_mask_hidden_without_parallel_drafting_is_skipped():
    cfg, shapes = sglang_head()
    sim = simulate_load(cfg, {**shapes, "mask_hidden": (1, 3 * H)}, **TARGET)
    assert "mask_hidden" in sim.skipped and sim.ok


def test_capture_readers():
    assert runner_capture({"eagle_config": {"eagle_aux_hidden_state_layer_ids": [3, 1]}}) == (None, [1, 3])
    assert runner_capture({"eagle_aux_hidden_state_layer_ids": [5, 2, 2]}) == ([2, 5], [2, 5])
    assert runner_capture({"dflash_config": {"target_layer_ids": [0, 3]}}) == ([1, 4], None)
    assert trained_capture({"eagle_config": {"eagle_aux_hidden_state_layer_ids": [1, 3, 4]}}) == [2, 4, 5]
    assert trained_capture({"eagle_aux_hidden_state_layer_ids": [2, 4]}) is None  # numbering unknown
    assert parse_config({"architectures": None}).problems


def test_inspect_reports_the_vllm_verdict_beside_sglangs(cli, samples):
    result = cli("inspect", samples["nemo-consolidated"], "--target", samples["target"], "--json")
    v = json.loads(result.stdout)["result"]["vllm"]
    assert v["release"] == rules.RELEASE and v["as_stored"]["ok"] is False
    assert v["as_stored"]["summary"] == "fails to start" and v["after_export"]["ok"] is True
    text = cli("inspect", samples["nemo-consolidated"], "--target", samples["target"]).stdout
    assert "vllm 0.33.0" in text and "loads after export (as stored: fails to start)" in text
    v = json.loads(cli("inspect", samples["specforge"], "--json").stdout)["result"]["vllm"]
    assert v["trained"] == [2, 4, 5]
    assert json.loads(cli("inspect", samples["nemo-legacy-eagle"], "--json").stdout)["result"]["vllm"] is None


@pytest.mark.parametrize("sample", ["nemo-consolidated", "nemo-legacy-eagle3", "specforge", "eagle-research",
                                    "nemo-sharded", "specforge-training"])
def test_the_default_export_reads_right_in_both_engines(samples, tmp_path, sample):
    from eaglectl.checkpoint.resolve import resolve
    from eaglectl.export.exporter import export_checkpoint

    report = export_checkpoint(str(samples[sample]), output=tmp_path / "out")
    assert report.action == "written" and report.sglang_releases == ["0.5.9–0.5.23"]
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    ids = cfg.get("eagle_config", {}).get("eagle_aux_hidden_state_layer_ids")
    if ids is not None:  # the NeMo samples record none (aux-ids-unpinned): nothing to write for either engine
        assert cfg["eagle_aux_hidden_state_layer_ids"] == [i + 1 for i in ids]
    assert cfg["norm_before_residual"] is False and "num_aux_hidden_states" not in cfg  # three aux states
    out = resolve(tmp_path / "out")
    sim = simulate_load(cfg, {n: t.shape for n, t in out.weights.tensors.items()}, **TARGET)
    assert sim.ok and not sim.uninitialized and sim.capture == [2, 4, 5], sim


def test_four_aux_ids_write_their_count():
    from eaglectl.enums import Algorithm
    from eaglectl.export.config_rewrite import rewrite_config

    only: list[str] = []
    cfg, changes = rewrite_config(head(n_aux=4)[0], algorithm=Algorithm.EAGLE3, num_layers=1,
                                  aux_layer_ids=[0, 2, 4, 6], vllm_only=only)
    assert cfg["eagle_aux_hidden_state_layer_ids"] == [1, 3, 5, 7] and cfg["num_aux_hidden_states"] == 4
    assert {c.split(":")[0] for c in only} == {"eagle_aux_hidden_state_layer_ids", "num_aux_hidden_states",
                                               "norm_before_residual"}
    assert set(only) < set(changes)
    cfg, _ = rewrite_config(dict(head()[0], norm_before_residual=True), algorithm=Algorithm.EAGLE3, num_layers=1)
    assert cfg["norm_before_residual"] is True  # never overwritten (export refuses such a head for SGLang)


def test_an_sglang_ready_dir_is_left_as_it_is_and_says_how_vllm_gets_its_keys(cli, samples):
    result = cli("export", samples["specforge"], "--json")
    doc = json.loads(result.stdout)["result"]
    assert doc["action"] == "unchanged" and "vLLM reads this directory otherwise" in doc["notes"][1]
    assert "--force" in doc["notes"][1]
    v = json.loads(cli("inspect", samples["specforge"], "--json").stdout)["result"]
    assert v["layout"] == "sglang-ready" and v["vllm"]["force"] is True
    result = cli("export", samples["specforge"], "--force", "--json")
    out = json.loads(result.stdout)["result"]["output"]
    v = json.loads(cli("inspect", out, "--json", "--target", samples["target"]).stdout)["result"]
    assert v["layout"] == "sglang-ready" and v["vllm"]["as_stored"]["ok"] is True
    assert "loads as stored" in cli("inspect", out).stdout
