"""The oracle's comparison (tests/oracle/compare.py) on fake harness records: a record built from the replay itself
agrees, and each way SGLang could differ is reported with the head, the release and the parameter. Runs in the
default suite (the oracle itself, tests/test_oracle_sglang.py, needs SGLang and is marked `oracle`)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from eaglectl.demo.samples import AUX_IDS, SAMPLE_DIRS, VOCAB, H
from eaglectl.engines.sglang import rules
from eaglectl.engines.sglang.loader import expected_parameters, simulate_load
from eaglectl.enums import Algorithm
from tests.oracle.compare import _SHARDS, _rows, compare, expected_rope_base, startup_problems, target_supplied
from tests.oracle.corpus import ENTRIES, NOT_EXPORTED, SYNTHETIC, SYNTHETIC_ALGORITHM, build_corpus, entry_names
from tests.oracle.driver import parse_releases, read_head, summary
from tests.synthetic_heads import head

E3 = Algorithm.EAGLE3


def agreeing_record(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]], release: str,
                    algorithm: Algorithm = E3) -> dict[str, Any]:
    """What the harness would report if SGLang did exactly what the replay says."""
    sim = simulate_load(cfg, shapes, algorithm, release)
    if startup_problems(sim, cfg, shapes):
        return {"stage": "construct", "error": "ValueError: as the replay says"}
    loaded = {n: p for n, p in sim.loaded.items() if p != "hot_token_id"}
    nan = ({_SHARDS.sub("", u) for u in sim.uninitialized} | set(sim.from_target) | set(sim.unused)
           | set(sim.zero_initialised))
    supplied = target_supplied(cfg, shapes, algorithm, release)
    return {
        "stage": "done",
        "stored_shapes": {n: list(s) for n, s in shapes.items()},
        "stored_to_params": {n: [[p]] for n, p in loaded.items()},
        "stored_names_not_reaching_any_param": sorted(set(shapes) - set(loaded)),
        "load_errors": [f"{n}: AssertionError: shape" for n in sorted(sim.misshapen)],
        "param_shapes": {p: list(_rows(s, p)) for p, s in expected_parameters(cfg, algorithm, release).items()},
        "nan_params": sorted(nan),
        "partially_loaded_params": {},
        "initially_zero_params": sorted(sim.zero_initialised),
        "values": {"rope_base": expected_rope_base(cfg, release), "hot_token_id_len": 128 if sim.hot_token_map
                   else None, "norm_output": bool(cfg.get("norm_output"))
                   and rules.eagle3_loader(release).norm_output.value},
        "after_worker_init_lm_head": {"call": "set_embed", "embed_from_target": "model.embed_tokens.weight" in supplied,
                                      "lm_head_from_target": "lm_head.weight" in supplied or (
                                          bool(cfg.get("tie_word_embeddings"))
                                          and "model.embed_tokens.weight" in supplied)},
    }


def subjects(found) -> list[str]:
    return [d.subject for d in found]


@pytest.mark.parametrize("release", rules.representatives())
@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_a_record_that_does_what_the_replay_says_agrees(name, release):
    cfg, shapes = SYNTHETIC[name][2]()
    algorithm = Algorithm(SYNTHETIC_ALGORITHM.get(name, E3.value))
    assert compare(name, release, agreeing_record(cfg, shapes, release, algorithm), cfg, shapes, algorithm) == []


def test_vocab_rows_are_built_padded_to_a_multiple_of_64():
    """SGLang pads the embedding's and lm_head's rows (pad_vocab_size): a 200-row draft head is a [256, H] parameter
    that loads the 200 stored rows, which is no disagreement; an unpadded [200, H] parameter would be one."""
    cfg, shapes = head(draft_vocab_size=200)
    shapes["lm_head.weight"], shapes["d2t"] = (200, 64), (200,)
    rec = agreeing_record(cfg, shapes, "0.5.15")
    assert rec["param_shapes"]["lm_head.weight"] == [256, 64]
    assert compare("h", "0.5.15", rec, cfg, shapes, E3) == []
    rec["param_shapes"]["lm_head.weight"] = [200, 64]
    assert subjects(compare("h", "0.5.15", rec, cfg, shapes, E3)) == ["lm_head.weight"]


def test_a_name_loaded_into_another_parameter_names_head_release_and_name():
    cfg, shapes = head()
    rec = agreeing_record(cfg, shapes, "0.5.15")
    rec["stored_to_params"]["norm.weight"] = [["model.layers.0.hidden_norm.weight"]]
    [d] = compare("h", "0.5.15", rec, cfg, shapes, E3)
    assert (d.head, d.release, d.subject) == ("h", "0.5.15", "norm.weight")
    assert str(d) == ("h on SGLang 0.5.15: norm.weight: SGLang loads it into model.layers.0.hidden_norm.weight; "
                      "eaglectl maps it to model.norm.weight")


def test_a_name_sglang_skips_but_the_replay_loads_and_the_parameter_left_nan():
    cfg, shapes = head()
    rec = agreeing_record(cfg, shapes, "0.5.23")
    del rec["stored_to_params"]["fc.weight"]
    rec["stored_names_not_reaching_any_param"].append("fc.weight")
    rec["nan_params"].append("model.fc.weight")
    found = compare("h", "0.5.23", rec, cfg, shapes, E3)
    assert subjects(found) == ["fc.weight", "model.fc.weight"]
    assert "maps it to model.fc.weight" in str(found[0]) and "says it is loaded" in str(found[1])


def test_a_name_sglang_loads_but_the_replay_skips():
    cfg, shapes = head(names="layers")  # 0.5.9 builds model.midlayer.*: layers.0.* is skipped
    rec = agreeing_record(cfg, shapes, "0.5.9")
    rec["stored_to_params"]["layers.0.hidden_norm.weight"] = [["model.midlayer.hidden_norm.weight"]]
    rec["nan_params"].remove("model.midlayer.hidden_norm.weight")
    rec["stored_names_not_reaching_any_param"].remove("layers.0.hidden_norm.weight")
    found = compare("h", "0.5.9", rec, cfg, shapes, E3)
    assert [(d.subject, d.eaglectl) for d in found] == [
        ("layers.0.hidden_norm.weight", "skipped"),
        ("model.midlayer.hidden_norm.weight", "says it is uninitialised (nothing loads it)")]


def test_start_up_failures_must_match_both_ways():
    cfg, shapes = head(layers=2)  # the replay: 0.5.9 builds one layer only and fails
    clean = agreeing_record(cfg, shapes, "0.5.12")
    found = compare("two", "0.5.9", clean, cfg, shapes, E3)
    assert found[0].subject == "start-up" and "exactly one EAGLE-3 layer" in found[0].eaglectl
    cfg, shapes = head()
    failing = {"stage": "construct", "error": "AttributeError: no"}
    [d] = compare("plain", "0.5.15", failing, cfg, shapes, E3)
    assert d.subject == "start-up (construct)" and d.sglang == "fails: AttributeError: no"


def test_run_time_problems_are_not_start_up_failures():
    cfg, shapes = head(eagle_config={"eagle_aux_hidden_state_layer_ids": [4, 1, 3]})
    sim = simulate_load(cfg, shapes, E3, "0.5.23")
    assert sim.problems and startup_problems(sim, cfg, shapes) == []
    cfg["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": AUX_IDS, "use_aux_hidden_state": False}
    sim = simulate_load(cfg, shapes, E3, "0.5.23")
    assert sim.problems and startup_problems(sim, cfg, shapes) == []


def test_load_errors_match_shape_errors_tensor_by_tensor():
    cfg, shapes = head(draft_vocab_size=None)  # pruned lm_head with a null draft_vocab_size: row-count assert
    rec = agreeing_record(cfg, shapes, "0.5.15")
    assert "lm_head.weight: AssertionError: shape" in rec["load_errors"]
    assert compare("h", "0.5.15", rec, cfg, shapes, E3) == []
    assert rec["load_errors"] == ["lm_head.weight: AssertionError: shape"]  # d2t's length is not checked at load
    sim = simulate_load(cfg, shapes, E3, "0.5.15")
    assert "d2t" not in sim.misshapen and any(p.startswith("d2t has") for p in sim.problems)  # wrong while serving
    rec["load_errors"].append("norm.weight: RuntimeError: boom")
    assert "norm.weight" in subjects(compare("h", "0.5.15", rec, cfg, shapes, E3))


def test_parameter_set_and_shapes():
    cfg, shapes = head()
    rec = agreeing_record(cfg, shapes, "0.5.15")
    rec["param_shapes"]["model.fc.weight"] = [64, 256]
    rec["param_shapes"]["model.extra.weight"] = [1]
    del rec["param_shapes"]["model.norm.weight"]
    found = {d.subject: d for d in compare("h", "0.5.15", rec, cfg, shapes, E3)}
    assert found["model.fc.weight"].eaglectl == "expects [64, 192]"
    assert found["model.extra.weight"].eaglectl == "expects no such parameter"
    assert found["model.norm.weight"].sglang == "builds no such parameter"


def test_zero_initialised_parameters_must_start_at_zero_and_stay_unloaded():
    cfg, shapes = head(fc_bias=True, bias=True)  # o_proj.bias: built at zero, nothing stored
    rec = agreeing_record(cfg, shapes, "0.5.15")
    assert rec["initially_zero_params"] == ["model.layers.0.self_attn.o_proj.bias"]
    assert compare("h", "0.5.15", rec, cfg, shapes, E3) == []
    rec["initially_zero_params"] = []
    [d] = compare("h", "0.5.15", rec, cfg, shapes, E3)
    assert (d.subject, d.eaglectl) == ("model.layers.0.self_attn.o_proj.bias", "says it starts at zero")


def test_rope_base_and_norm_output():
    cfg, shapes = head()
    cfg.pop("rope_theta")
    cfg["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
    assert expected_rope_base(cfg, "0.5.9") == 10000.0 and expected_rope_base(cfg, "0.5.10") == 500000.0
    legacy, _ = head()
    assert expected_rope_base(legacy, "0.5.9") == expected_rope_base(legacy, "0.5.23") == 500000.0
    rec = agreeing_record(cfg, shapes, "0.5.9")
    rec["values"]["rope_base"] = 500000.0
    [d] = compare("h", "0.5.9", rec, cfg, shapes, E3)
    assert (d.subject, d.sglang, d.eaglectl) == ("RoPE base", "uses 500000.0", "expects 10000.0")
    cfg, shapes = head(norm_output=True)
    rec = agreeing_record(cfg, shapes, "0.5.12")
    rec["values"]["norm_output"] = False
    assert subjects(compare("h", "0.5.12", rec, cfg, shapes, E3)) == ["norm_output"]


def test_embeddings_the_worker_replaces():
    cfg, shapes = head(embed=True, target_hidden_size=2 * H)
    shapes["fc.weight"] = (H, 6 * H)
    assert target_supplied(cfg, shapes, E3, "0.5.15") == set()
    rec = agreeing_record(cfg, shapes, "0.5.15")
    rec["after_worker_init_lm_head"]["embed_from_target"] = True
    [d] = compare("wide", "0.5.15", rec, cfg, shapes, E3)
    assert d.subject.startswith("model.embed_tokens.weight after the worker's")
    assert d.eaglectl == "says the draft's own is used"
    cfg, shapes = head(draft_vocab_size=None)
    shapes["lm_head.weight"] = (VOCAB, H)
    assert target_supplied(cfg, shapes, E3, "0.5.15") == {"model.embed_tokens.weight", "lm_head.weight"}


def test_stored_names_must_be_the_ones_eaglectl_reads():
    cfg, shapes = head()
    rec = agreeing_record(cfg, shapes, "0.5.15")
    rec["stored_shapes"]["ghost.weight"] = [1]
    del rec["stored_shapes"]["t2d"]
    assert sorted(subjects(compare("h", "0.5.15", rec, cfg, shapes, E3))) == ["ghost.weight", "t2d"]


def test_parse_releases_and_summary():
    assert parse_releases("0.5.15=/a, 0.5.9=/b,") == [("0.5.15", "/a"), ("0.5.9", "/b")]
    with pytest.raises(ValueError):
        parse_releases("0.5.15")
    entries = list(ENTRIES[:3])
    heads = {e.name: {"sglang": "loads", "disagreements": []} for e in entries}
    heads[entries[1].name] = {"sglang": "loads", "disagreements": ["a"], "known": ["a"]}
    heads[entries[2].name] = {"sglang": "load error", "disagreements": ["a", "b"], "known": ["a"]}
    runs = [{"release": "0.5.9", "heads": heads}, {"release": "0.5.23", "error": "ImportError"}]
    table = summary(runs, entries).splitlines()
    assert table[0] == "| head | 0.5.9 | 0.5.23 |" and table[2].endswith("| loads, agrees | did not run |")
    assert table[3].endswith("| loads, disagrees (known) | did not run |")
    assert table[4].endswith("| load error, DISAGREES | did not run |")


def test_corpus_entries_and_build(tmp_path):
    names = entry_names()
    assert len(names) == len(set(names)) and set(SYNTHETIC) <= set(names)
    assert {f"export-{n}" for n in SAMPLE_DIRS} - set(names) == {f"export-{n}" for n in NOT_EXPORTED}
    assert {e.kind for e in ENTRIES} == {"export", "rule", "control"}
    built = build_corpus(tmp_path)
    assert [e.name for e in built] == names
    assert json.loads((tmp_path / "corpus.json").read_text())[0]["path"] == built[0].path
    for e in built:  # what the replay says of each: controls and exports load completely on every release
        cfg, shapes = read_head(tmp_path / e.path)
        if e.kind != "rule":
            for release in rules.representatives():
                assert simulate_load(cfg, shapes, Algorithm(e.algorithm), release).ok, (e.name, release)
    cfg, shapes = read_head(tmp_path / "heads" / "draft-vocab-absent")
    assert "draft_vocab_size" not in cfg and copy.deepcopy(shapes) == shapes
