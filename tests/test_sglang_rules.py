"""SGLang's loader rules per release range (eaglectl.engines.sglang.rules) and their replay
(eaglectl.engines.sglang.loader), asserted on synthetic heads for every range: 0.5.9–0.5.11, 0.5.12–0.5.16,
0.5.17–0.5.23."""

from __future__ import annotations

import pytest

from eaglectl.demo.samples import H
from eaglectl.engines.sglang import rules
from eaglectl.engines.sglang.loader import (
    SGLANG_VERSIONS,
    expected_parameters,
    minimum_release,
    replay_releases,
    serving_spans,
    simulate_load,
)
from eaglectl.enums import Algorithm
from tests.synthetic_heads import head

E3 = Algorithm.EAGLE3
RANGES = ("0.5.9", "0.5.12", "0.5.17")  # where the loader's names change (other ranges differ in config rules)


def verdicts(cfg, shapes, *, releases=RANGES) -> dict[str, object]:
    return {v: simulate_load(cfg, shapes, E3, v) for v in releases}


# --- the tables ------------------------------------------------------------------------------------------------
def test_ranges_cover_every_known_release_once_and_in_order():
    covered = [r for rng in rules.EAGLE3_LOADERS for r in rng.releases()]
    assert covered == list(rules.RELEASES) == list(SGLANG_VERSIONS)
    assert rules.NEWEST_KNOWN == "0.5.23" and rules.OLDEST_SUPPORTED == "0.5.9"
    assert rules.representatives() == ["0.5.9", "0.5.10", "0.5.12", "0.5.15", "0.5.17"]


def test_every_rule_names_its_source_release_and_file():
    from dataclasses import fields

    for table in (*rules.EAGLE3_LOADERS, rules.EAGLE3, *rules.EAGLE_LOADERS, *rules.LAUNCH_FLAGS):
        for f in fields(table):
            value = getattr(table, f.name)
            if isinstance(value, rules.Rule):
                assert value.source.release in rules.RELEASES, (f.name, value.source)
                assert value.source.file.startswith("sglang/") and value.source.where, (f.name, value.source)


@pytest.mark.parametrize(("version", "label"), [
    ("0.5.9", "0.5.9"), ("0.5.10.post1", "0.5.10–0.5.11"), ("0.5.11", "0.5.10–0.5.11"),
    ("0.5.12", "0.5.12–0.5.14"), ("0.5.15.post1", "0.5.15–0.5.16"), ("0.5.16", "0.5.15–0.5.16"),
    ("0.5.17", "0.5.17–0.5.23"), ("0.5.23", "0.5.17–0.5.23"), ("0.5.23.post2", "0.5.17–0.5.23"),
    ("0.5.17rc1", "0.5.15–0.5.16"),  # a pre-release gets the rules of the release before it
    ("0.6.0", "0.5.17–0.5.23"), ("0.5.30.dev0+g123", "0.5.17–0.5.23"),
])
def test_a_release_gets_its_range(version, label):
    assert rules.range_label(version) == label


def test_launch_flag_ranges_cover_every_known_release_once_and_in_order():
    spans = [(r.first, r.last) for r in rules.LAUNCH_FLAGS]
    covered = [v for first, last in spans for v in rules.releases_between(first, last)]
    assert covered == list(rules.RELEASES)


@pytest.mark.parametrize(("version", "spelling"), [
    ("0.5.9", ("--disable-cuda-graph",)), ("0.5.13.post1", ("--disable-cuda-graph",)),
    ("0.5.14rc1", ("--disable-cuda-graph",)),  # a pre-release: the release before it
    ("0.5.14", ("--disable-decode-cuda-graph", "--disable-prefill-cuda-graph")),
    ("0.5.23", ("--disable-decode-cuda-graph", "--disable-prefill-cuda-graph")),
    ("0.6.0", ("--disable-decode-cuda-graph", "--disable-prefill-cuda-graph")),
    (None, ("--disable-cuda-graph",)), ("nightly", ("--disable-cuda-graph",)),  # unknown: what every release takes
    ("0.4.0", ("--disable-cuda-graph",)),
])
def test_disable_cuda_graph_spelling_per_release(version, spelling):
    assert rules.launch_flags(version).no_cuda_graph.value == spelling


def test_release_order_and_bounds():
    assert rules.is_newer_than_known("0.5.24") and rules.is_newer_than_known("0.6.0")
    assert not rules.is_newer_than_known("0.5.23.post1") and not rules.is_newer_than_known("0.5.20")
    assert rules.is_older_than_supported("0.5.8") and rules.is_older_than_supported("0.4.10")
    assert rules.release_key("not-a-version") is None
    with pytest.raises(ValueError, match=r"older than 0\.5\.9"):
        rules.eagle3_loader("0.5.8")


def test_first_release_with_a_feature():
    assert rules.first_release_with(set()) == "0.5.9"
    assert rules.first_release_with({"multi_layer"}) == "0.5.12"
    assert rules.first_release_with({"fc_norm", "num_aux_from_config"}) == "0.5.12"
    assert rules.first_release_with({"norm_before_fc"}) == "0.5.17"
    assert rules.first_release_with({"norm_before_fc", "multi_layer"}) == "0.5.17"


# --- heads, one feature each, every range ---------------------------------------------------------------------
def test_plain_one_layer_midlayer_head_loads_in_every_release():
    cfg, shapes = head()
    for v in SGLANG_VERSIONS:
        sim = simulate_load(cfg, shapes, E3, v)
        assert sim.ok, (v, sim)
        assert sim.from_target == ["model.embed_tokens.weight"] and sim.hot_token_map
    assert minimum_release(cfg, list(shapes), E3) == ("0.5.9", [])
    assert serving_spans(replay_releases(cfg, shapes, E3)) == ["0.5.9–0.5.23"]


def test_one_layer_under_layers_0_loads_from_0_5_12():
    cfg, shapes = head(names="layers")
    v = verdicts(cfg, shapes)
    assert sorted(v["0.5.9"].skipped) == sorted(n for n in shapes if n.startswith("layers.0."))
    assert "model.midlayer.self_attn.o_proj.weight" in v["0.5.9"].uninitialized
    assert v["0.5.12"].ok and v["0.5.17"].ok
    assert serving_spans(replay_releases(cfg, shapes, E3)) == ["0.5.12–0.5.23"]


def test_midlayer_is_renamed_to_layers_0_from_0_5_12():
    cfg, shapes = head()
    assert simulate_load(cfg, shapes, E3, "0.5.9").loaded["midlayer.hidden_norm.weight"] == \
        "model.midlayer.hidden_norm.weight"
    for version in ("0.5.12", "0.5.17"):
        assert simulate_load(cfg, shapes, E3, version).loaded["midlayer.hidden_norm.weight"] == \
            "model.layers.0.hidden_norm.weight"


def test_multi_layer_head_needs_0_5_12():
    cfg, shapes = head(layers=2)
    v = verdicts(cfg, shapes)
    assert v["0.5.9"].problems == ["SGLang 0.5.9 builds exactly one EAGLE-3 layer; config says 2"]
    assert any(n.startswith("layers.1.") for n in v["0.5.9"].skipped)
    assert v["0.5.12"].ok and v["0.5.17"].ok
    layer1 = expected_parameters(cfg, E3, "0.5.12")["model.layers.1.self_attn.qkv_proj.weight"]
    assert layer1["q"] == (64, H)  # layers after the first take H, not 2H
    assert minimum_release(cfg, list(shapes), E3) == ("0.5.12", ["2 decoder layers"])


def test_unused_input_layernorm_of_later_layers_is_not_an_error():
    cfg, shapes = head(layers=2)
    del shapes["layers.1.input_layernorm.weight"]
    sim = simulate_load(cfg, shapes, E3, "0.5.17")
    assert sim.ok and sim.unused == ["model.layers.1.input_layernorm.weight"]
    del shapes["layers.0.input_layernorm.weight"]  # layer 0 does read it
    assert simulate_load(cfg, shapes, E3, "0.5.17").uninitialized == ["model.layers.0.input_layernorm.weight"]


@pytest.mark.parametrize("where", ["top", "eagle_config"])
def test_norm_before_fc_with_input_norm_needs_0_5_17(where):
    flag = {"norm_before_fc": True} if where == "top" else {
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": [1, 3, 4], "norm_before_fc": True}}
    cfg, shapes = head(input_norm=True, **flag)
    v = verdicts(cfg, shapes)
    for old in ("0.5.9", "0.5.12"):
        assert v[old].ignored_config == ["norm_before_fc"] and v[old].skipped == ["input_norm.weight"]
        assert not v[old].ok
    assert v["0.5.17"].ok and v["0.5.17"].loaded["input_norm.weight"] == "model.input_norm.weight"
    assert expected_parameters(cfg, E3, "0.5.23")["model.input_norm.weight"] == (3 * H,)
    first, why = minimum_release(cfg, list(shapes), E3)
    assert first == "0.5.17" and "norm_before_fc" in why[0]
    assert serving_spans(replay_releases(cfg, shapes, E3)) == ["0.5.17–0.5.23"]


def test_eagle_config_norm_before_fc_wins_over_the_top_level_key():
    cfg, shapes = head(input_norm=True, norm_before_fc=True,
                       eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 4], "norm_before_fc": False})
    sim = simulate_load(cfg, shapes, E3, "0.5.23")
    assert "model.input_norm.weight" not in expected_parameters(cfg, E3, "0.5.23")
    assert sim.skipped == ["input_norm.weight"] and sim.ignored_config == []


def test_norm_before_fc_without_its_weight_is_misloaded_by_newer_releases():
    cfg, shapes = head(norm_before_fc=True)  # the flag, but no input_norm.weight: not trained with it
    v = verdicts(cfg, shapes)
    assert v["0.5.9"].ok and v["0.5.12"].ok
    assert v["0.5.17"].uninitialized == ["model.input_norm.weight"]
    spans = replay_releases(cfg, shapes, E3)
    assert [(s.label, s.sim.ok) for s in spans] == [("0.5.9–0.5.16", True), ("0.5.17–0.5.23", False)]


@pytest.mark.parametrize(("style", "flag"), [("fc_norm", "fc_norm"), ("aux_norm", "use_aux_norm")])
def test_fc_norm_and_legacy_aux_norm_need_0_5_12(style, flag):
    cfg, shapes = head(norms=style, **{flag: True})
    v = verdicts(cfg, shapes)
    norms = sorted(n for n in shapes if n.startswith(("fc_norm.", "aux_norm_")))
    assert v["0.5.9"].ignored_config == [flag] and sorted(v["0.5.9"].skipped) == norms
    for new in ("0.5.12", "0.5.17"):
        assert v[new].ok
        assert sorted(v[new].loaded[n] for n in norms) == [f"model.fc_norm.{i}.weight" for i in range(3)]
    assert minimum_release(cfg, list(shapes), E3)[0] == "0.5.12"


def test_fc_norm_weights_without_the_flag_are_skipped_everywhere():
    cfg, shapes = head(norms="fc_norm")
    for sim in verdicts(cfg, shapes).values():
        assert sorted(sim.skipped) == [f"fc_norm.{i}.weight" for i in range(3)] and not sim.ignored_config
    assert minimum_release(cfg, list(shapes), E3)[0] == "0.5.12"  # the weights say the head was trained with it


def test_four_aux_states_need_0_5_12():
    cfg, shapes = head(n_aux=4, eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 2, 3, 4]})
    v = verdicts(cfg, shapes)
    assert v["0.5.9"].shape_errors == [f"fc.weight: stored [64, {4 * H}], SGLang 0.5.9 expects [64, {3 * H}]"]
    assert v["0.5.9"].ignored_config == ["eagle_config.eagle_aux_hidden_state_layer_ids (count)"]
    assert v["0.5.12"].ok and v["0.5.17"].ok


def test_bias_true_gives_fc_bias_and_o_proj_bias_but_never_a_qkv_bias():
    cfg, shapes = head(fc_bias=True, o_bias=True, bias=True)
    for sim in verdicts(cfg, shapes).values():
        assert sim.ok, sim
        assert sim.loaded["midlayer.self_attn.o_proj.bias"].endswith("self_attn.o_proj.bias")
        assert sim.loaded["fc.bias"] == "model.fc.bias"
    cfg, shapes = head(fc_bias=True, bias=True)  # trained without an o_proj bias: SGLang builds one at zero
    for sim in verdicts(cfg, shapes).values():
        assert sim.ok and sim.zero_initialised == ["model.midlayer.self_attn.o_proj.bias"
                                                   if sim.version == "0.5.9" else
                                                   "model.layers.0.self_attn.o_proj.bias"], sim
    del shapes["fc.bias"]  # the fc bias is a torch.nn.Linear's: random, not zero
    for sim in verdicts(cfg, shapes).values():
        assert "model.fc.bias" in sim.uninitialized
    cfg, shapes = head(o_bias=True, qkv_bias=True, attention_bias=True)
    for sim in verdicts(cfg, shapes).values():
        assert sorted(sim.skipped) == [f"midlayer.self_attn.{p}_proj.bias" for p in "kqv"]


def test_embeddings_stay_the_drafts_own_when_target_hidden_differs():
    cfg, shapes = head(embed=True)
    cfg["target_hidden_size"] = 2 * H
    shapes["fc.weight"] = (H, 3 * 2 * H)
    sim = simulate_load(cfg, shapes, E3, "0.5.23")
    assert sim.ok and "model.embed_tokens.weight" not in sim.from_target
    del shapes["embed_tokens.weight"]
    assert simulate_load(cfg, shapes, E3, "0.5.23").uninitialized == ["model.embed_tokens.weight"]


def test_midlayer_and_layers_0_both_stored_overwrite_each_other_from_0_5_12():
    cfg, shapes = head()
    shapes.update({k.replace("midlayer.", "layers.0."): s for k, s in shapes.items() if k.startswith("midlayer.")})
    v = verdicts(cfg, shapes)
    assert not v["0.5.9"].overwritten and all(n.startswith("layers.0.") for n in v["0.5.9"].skipped)
    assert "model.layers.0.hidden_norm.weight" in v["0.5.12"].overwritten


def test_null_target_hidden_size_is_a_start_up_failure():
    cfg, shapes = head()
    cfg["target_hidden_size"] = None
    assert "target_hidden_size is null" in simulate_load(cfg, shapes, E3, "0.5.23").problems[0]


def test_spans_merge_releases_with_the_same_verdict():
    cfg, shapes = head(input_norm=True, norm_before_fc=True, layers=2)
    spans = replay_releases(cfg, shapes, E3)
    assert [(s.first, s.last) for s in spans] == [("0.5.9", "0.5.11"), ("0.5.12", "0.5.16"), ("0.5.17", "0.5.23")]
    cfg, shapes = head(norms="fc_norm", fc_norm=True)
    spans = replay_releases(cfg, shapes, E3)
    assert [(s.first, s.last) for s in spans] == [("0.5.9", "0.5.11"), ("0.5.12", "0.5.23")]


def test_eagle1_bias_goes_to_qkv_and_o():
    from eaglectl.demo.samples import draft_config

    cfg = draft_config(architectures=["LlamaForCausalLMEagle"], num_layers=1, eagle3=False, bias=True)
    params = expected_parameters(cfg, Algorithm.EAGLE, "0.5.23")
    assert "model.layers.0.self_attn.qkv_proj.bias" in params and "model.layers.0.self_attn.o_proj.bias" in params
    assert "model.layers.0.input_layernorm.weight" not in params and "model.norm.weight" not in params


# --- target side: aux-id capture per family --------------------------------------------------------------------
@pytest.mark.parametrize(("model_type", "ids", "layers", "expected"), [
    ("llama", [1, 15, 28], 32, {(2, 16, 29)}),
    ("deepseek_v3", [1, 30, 57], 61, {(2, 31, 58)}),  # first id 1: +1 in every release
    ("deepseek_v3", [2, 30, 57], 61, {(3, 31, 58), (2, 30, 57)}),  # 0.5.13 keeps them as given
    ("deepseek_v32", [2, 30, 57], 61, {(3, 31, 58), (2, 30, 57)}),  # DeepseekV32ForCausalLM: deepseek_v2.py
    ("gpt_oss", [1, 12, 24], 24, {(2, 13, 25), (1, 12, 24)}),  # 0.5.17: max == L means as given
    ("gpt_oss", [1, 12, 20], 24, {(2, 13, 21)}),
])
def test_capture_rules_per_family(model_type, ids, layers, expected):
    got = {tuple(rules.captured_positions(r, ids, layers))
           for r in rules.capture_rules_of(rules.capture_family(model_type, None))}
    assert got == expected


def test_capture_families_cover_every_rule_and_every_release():
    """Each family of CAPTURE_FAMILIES has one rule for every known release, and its rules name its model types."""
    for fam in rules.CAPTURE_FAMILIES:
        held = [r for r in rules.CAPTURE_RULES if r.family == fam.name]
        assert held and all(r.model_types == fam.model_types for r in held)
        covered = [rel for r in held for rel in rules.releases_between(r.first, r.last)]
        assert sorted(covered, key=rules.release_key) == list(rules.RELEASES)
    assert {r.family for r in rules.CAPTURE_RULES} == {f.name for f in rules.CAPTURE_FAMILIES}


@pytest.mark.parametrize(("version", "position", "reached"), [
    ("0.5.16", 23, True), ("0.5.16", 24, False), ("0.5.17", 24, True), ("0.5.17", 25, False), ("0.5.17", -1, False),
])
def test_gpt_oss_loop_reaches_the_final_boundary_from_0_5_17(version, position, reached):
    assert rules.position_reached(rules.capture_rule("gpt-oss", version), position, 24) is reached


def test_aux_ids_ranges_come_from_the_capture_rules():
    from eaglectl.engines.sglang import aux_ids

    deepseek = aux_ids.Family.deepseek  # its rule changes at 0.5.13; the capture order at 0.5.11
    assert [label for label, *_ in aux_ids.rule_ranges(deepseek)] == ["0.5.9-0.5.10.post1", "0.5.11-0.5.12.post1",
                                                                     "0.5.13+"]
    assert [label for label, *_ in aux_ids.rule_ranges(aux_ids.Family.gpt_oss)][-1] == "0.5.17+"
    assert aux_ids.family_of("deepseek_v32", None) is aux_ids.Family.deepseek
    assert aux_ids.family_of("llama", ["DeepseekV3ForCausalLM"]) is aux_ids.Family.deepseek
    assert aux_ids.family_of("mistral", None) is aux_ids.Family.plus_one
    assert aux_ids.captured([2, 30, 57], aux_ids.Family.deepseek, 61, "0.5.12.post1") == [3, 31, 58]
    assert aux_ids.captured([2, 30, 57], aux_ids.Family.deepseek, 61, "0.5.13") == [2, 30, 57]


# --- target families whose capture fails or differs in some releases --------------------------------------------
def _family(model_type, *archs):
    from eaglectl.engines.sglang import aux_ids

    return aux_ids.family_of(model_type, list(archs))


@pytest.mark.parametrize(("model_type", "arch"), [("qwen2_moe", "Qwen2MoeForCausalLM"),
                                                  ("qwen3_moe", "Qwen3MoeForCausalLM"),
                                                  ("qwen3_next", "Qwen3NextForCausalLM")])
def test_qwen_moe_targets_keep_the_default_capture_through_0_5_10(model_type, arch):
    """Their layers are flagged and never unflagged: CUDA-graph capture sets the default first (0.5.9-0.5.10.post1),
    so eager batches capture the default's layers and the draft's together; the graphs keep the default."""
    from eaglectl.engines.sglang import aux_ids

    fam = _family(model_type, arch)
    assert fam is aux_ids.Family.qwen_moe and _family(model_type) is fam
    for version in ("0.5.9", "0.5.10", "0.5.10.post1"):
        d = aux_ids.delivered([1, 20, 44], fam, 48, version)
        assert (d.asked, d.eager, d.replayed) == ([2, 21, 45], [2, 21, 24, 45], [2, 24, 45]) and d.why is not None
    assert aux_ids.delivered([1, 20, 44], fam, 48, "0.5.10", cuda_graph=False).eager == [2, 21, 45]
    assert aux_ids.delivered([1, 23, 44], fam, 48, "0.5.9").why is None  # the draft's ids capture the default
    d = aux_ids.delivered([1, 20, 44], fam, 48, "0.5.11")
    assert d.eager == d.replayed == [2, 21, 45] and d.why is None
    llama = aux_ids.delivered([1, 20, 44], aux_ids.Family.plus_one, 48, "0.5.10")  # a list, replaced: eager is right
    assert (llama.eager, llama.replayed) == ([2, 21, 45], [2, 24, 45])


@pytest.mark.parametrize(("version", "fails", "why"), [
    ("0.5.15.post1", True, "no SGLang model class"), ("0.5.16", True, "no aux state is recorded"),
    ("0.5.17", True, "no aux state is recorded"), ("0.5.18", False, None), ("0.5.23", False, None)])
def test_minimax_m3_captures_nothing_in_0_5_16_and_0_5_17(version, fails, why):
    from eaglectl.engines.sglang import aux_ids

    fam = _family("minimax_m2", "MiniMaxM3SparseForCausalLM")  # SGLang picks the class by architectures
    assert fam is aux_ids.Family.minimax_m3 and _family("minimax_m3") is fam
    assert aux_ids.fails(fam, version) is fails
    d = aux_ids.delivered([1, 20, 44], fam, 48, version)
    assert (d.failure is not None and why in d.failure.value) if fails else d.eager == [2, 21, 45]


def test_minimax_m3_captures_the_last_layers_output_from_0_5_23():
    from eaglectl.engines.sglang import aux_ids

    for fam in (aux_ids.Family.minimax_m3, aux_ids.Family.minimax_m3_vl):
        assert not aux_ids.reachable(48, fam, 48, "0.5.22") and aux_ids.reachable(48, fam, 48, "0.5.23")


def test_minimax_m3_vl_adds_one_to_the_default_capture():
    from eaglectl.engines.sglang import aux_ids

    fam = _family("minimax_m2", "MiniMaxM3SparseForConditionalGeneration")
    assert fam is aux_ids.Family.minimax_m3_vl and _family("minimax_m3_vl") is fam
    assert aux_ids.captured(None, fam, 60, "0.5.18") == [3, 31, 58] == aux_ids.captured(None, fam, 60)
    assert aux_ids.captured([1, 29, 56], fam, 60) == [2, 30, 57]  # ids: +1 as everywhere
    assert aux_ids.fails(fam, "0.5.17") and not aux_ids.fails(fam, "0.5.18")  # no method before 0.5.18
    assert aux_ids.captured(None, aux_ids.Family.minimax_m3, 60) == [2, 30, 57]  # the text model: as given
    assert aux_ids.ids_for_capture_in_every_release([3, 31, 58], fam, 60) == [2, 30, 57]


@pytest.mark.parametrize(("version", "why"), [
    ("0.5.9", "AttributeError"), ("0.5.10.post1", "AttributeError"), ("0.5.11", "no aux state is recorded"),
    ("0.5.21", "no aux state is recorded"), ("0.5.22", None), ("0.5.23", None)])
def test_qwen3_5_conditional_generation_targets(version, why):
    from eaglectl.engines.sglang import aux_ids

    for arch in ("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration"):
        fam = _family("qwen3_5_text", arch)  # the text config's model_type; the class decides
        assert fam is aux_ids.Family.qwen3_5
        d = aux_ids.delivered([1, 20, 44], fam, 48, version)
        assert (why in d.failure.value) if why else (d.failure is None and d.eager == [2, 21, 45])


@pytest.mark.parametrize(("version", "why"), [
    ("0.5.16", "no SGLang model class"), ("0.5.17", "AttributeError"), ("0.5.21", "AttributeError"), ("0.5.22", None)])
def test_qwen3_5_text_targets(version, why):
    from eaglectl.engines.sglang import aux_ids

    fam = _family("qwen3_5_moe_text", "Qwen3_5MoeForCausalLM")
    assert fam is aux_ids.Family.qwen3_5_text
    failure = aux_ids.rule(fam, version).failure
    assert (why in failure.value) if why else failure is None


def test_qwen3_vl_targets_fail_before_0_5_11():
    from eaglectl.engines.sglang import aux_ids

    fam = _family("qwen3_vl_text", "Qwen3VLMoeForConditionalGeneration")
    assert fam is aux_ids.Family.qwen3_vl
    assert aux_ids.fails(fam, "0.5.10.post1") and not aux_ids.fails(fam, "0.5.11")


def test_kimi_k2_5_targets_fail_in_0_5_9_then_capture_as_deepseek():
    from eaglectl.engines.sglang import aux_ids

    fam = _family("deepseek_v3", "KimiK25ForConditionalGeneration")  # its text config reads as DeepSeek-V3
    assert fam is aux_ids.Family.kimi_k25 and _family("kimi_k2") is aux_ids.Family.deepseek
    assert "AttributeError" in aux_ids.rule(fam, "0.5.9").failure.value
    assert aux_ids.captured([2, 30, 57], fam, 61, "0.5.10") == [3, 31, 58]
    assert aux_ids.captured([2, 30, 57], fam, 61, "0.5.13") == [2, 30, 57]
    for version in ("0.5.10", "0.5.13", "0.5.23"):
        assert aux_ids.rule(fam, version).convention == rules.capture_rule("deepseek", version).convention
