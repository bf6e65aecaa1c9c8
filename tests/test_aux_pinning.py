"""A head that records no aux-layer ids (NeMo's consolidated checkpoints) gets SGLang's default capture for the target
it is served with. Served on a target of another depth than the one its config was copied from, it gets other
hidden states than it was trained on: `aux-ids-unpinned`, and `--aux-layer-ids` on export / serve / bench to pin
the ids the head was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eaglectl.demo import samples as s
from eaglectl.demo.samples import save_json
from tests.helpers import run_json

NEMO = "nemo-consolidated"  # config num_hidden_layers 8 (the training target's), 1 layer in the weights, no ids


def target_dir(d: Path, layers: int, **cfg) -> Path:
    base = {"hidden_size": s.H, "vocab_size": s.VOCAB, "num_hidden_layers": layers, "model_type": "llama",
            "architectures": ["LlamaForCausalLM"]}
    save_json(d / "config.json", {**base, **cfg})
    return d


def file_bytes(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def pinned_ids(fix: str) -> list[int]:
    """The ids a fix tells to pass with --aux-layer-ids."""
    import re

    found = re.search(r"--aux-layer-ids ((?:\d+ )*\d+)", fix)
    assert found, fix
    return [int(w) for w in found.group(1).split()]


def finding(doc: dict, code: str) -> dict | None:
    return next((f for f in doc["result"]["findings"] if f["code"] == code), None)


def test_a_deeper_target_than_the_config_names_is_a_warning_with_the_ids_to_pin(cli, samples, tmp_path):
    code, doc = run_json(cli, "inspect", samples[NEMO], "--target", target_dir(tmp_path / "t", 16))
    f = finding(doc, "aux-ids-unpinned")
    assert f is not None and f["severity"] == "warning", doc["result"]["findings"]
    assert "16-layer target (the inputs of layers [2, 8, 13])" in f["message"]
    assert "its config names 8 layers" in f["message"] and "trained on layers [2, 4, 5]" in f["message"]
    assert pinned_ids(f["fix"]) == [1, 3, 4] and "on every serve / bench of this checkpoint" in f["fix"]
    assert "SGLang's ids count layer outputs, so 1, 3, 4 capture the inputs of layers 2, 4, 5" in f["fix"]


def test_the_depth_the_config_names_is_no_finding(cli, samples):
    code, doc = run_json(cli, "inspect", samples[NEMO], "--target", samples["target"])  # 8 layers, as trained
    assert finding(doc, "aux-ids-unpinned") is None


def test_a_head_that_records_its_ids_is_no_finding(cli, samples, tmp_path):
    code, doc = run_json(cli, "inspect", samples["specforge"], "--target", target_dir(tmp_path / "t", 16))
    assert finding(doc, "aux-ids-unpinned") is None


def test_a_shallower_target_that_cannot_capture_the_trained_layers_says_so(cli, samples, tmp_path):
    cfg_path = samples[NEMO] / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "num_hidden_layers": 32}))  # trained on 32: capture [2, 16, 29]
    code, doc = run_json(cli, "inspect", samples[NEMO], "--target", target_dir(tmp_path / "t", 16))
    f = finding(doc, "aux-ids-unpinned")
    assert f is not None and "[2, 16, 29]" in f["message"] and "--aux-layer-ids" not in f["fix"]
    assert f["fix"] == "serve with the target the head was trained on (32 layers)"


@pytest.mark.parametrize(("model_type", "architectures", "layers"), [
    ("llama", ["LlamaForCausalLM"], 16), ("deepseek_v3", ["DeepseekV3ForCausalLM"], 61),
    ("gpt_oss", ["GptOssForCausalLM"], 36),
])
def test_the_fix_ids_make_sglang_capture_the_trained_layers_on_every_family(model_type, architectures, layers):
    from eaglectl.checkpoint.target import TargetInfo
    from eaglectl.checks.failure_modes import unpinned_aux_findings
    from eaglectl.engines.sglang import aux_ids, rules
    from eaglectl.enums import Algorithm

    target = TargetInfo(source="t", config_path=Path("t/config.json"), num_layers=layers, model_type=model_type,
                        architectures=architectures)
    [f] = unpinned_aux_findings(8, {}, 1, Algorithm.EAGLE3, target)
    ids = pinned_ids(f.fix)
    family = aux_ids.family_of(model_type, architectures)
    for release in rules.RELEASES:  # the same layers whichever release serves the head
        assert aux_ids.captured(ids, family, layers, release) == rules.default_positions(8) == [2, 4, 5], release


@pytest.mark.parametrize(("named", "in_weights", "served", "expected"), [
    (16, 2, 16, None),  # the target the config names: the default is what training used
    (1, 2, 16, None),  # a config naming fewer layers than the weights hold says nothing about training
    (4, 1, 16, "serve with the target the head was trained on (4 layers)"),  # [2, 2, 1] repeats: no distinct ids
])
def test_when_the_finding_stays_quiet_or_cannot_name_ids(named, in_weights, served, expected):
    from eaglectl.checkpoint.target import TargetInfo
    from eaglectl.checks.failure_modes import unpinned_aux_findings
    from eaglectl.enums import Algorithm

    target = TargetInfo(source="t", config_path=Path("t/config.json"), num_layers=served, model_type="llama")
    found = unpinned_aux_findings(named, {}, in_weights, Algorithm.EAGLE3, target)
    assert [f.fix for f in found] == ([expected] if expected else [])


def test_an_unpinned_export_keeps_the_depth_its_source_named(cli, samples, tmp_path):
    """The export's config says the one layer it holds; its manifest keeps the 8 the NeMo config named."""
    out = tmp_path / "out"
    code, doc = run_json(cli, "export", samples[NEMO], "--output", out)
    assert code == 0, doc
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    code, doc = run_json(cli, "inspect", out, "--target", target_dir(tmp_path / "t", 16))
    f = finding(doc, "aux-ids-unpinned")
    assert f is not None and pinned_ids(f["fix"]) == [1, 3, 4]
    assert "export the checkpoint this export came from again" in f["fix"]  # not the export itself


def test_export_pins_the_ids_and_the_pinned_export_is_clean(cli, samples, tmp_path):
    out = tmp_path / "out"
    code, doc = run_json(cli, "export", samples[NEMO], "--output", out, "--aux-layer-ids", "1", "3", "4")
    assert code == 0, doc
    assert json.loads((out / "config.json").read_text())["eagle_config"] == {
        "eagle_aux_hidden_state_layer_ids": [1, 3, 4]}
    assert any("eagle_aux_hidden_state_layer_ids: None -> [1, 3, 4]" in c for c in doc["result"]["config_changes"])
    code, doc = run_json(cli, "inspect", out, "--target", target_dir(tmp_path / "t", 16))
    assert finding(doc, "aux-ids-unpinned") is None and finding(doc, "aux-layer-ids") is None


@pytest.mark.parametrize(("draft", "ids", "message"), [
    ("specforge", ["1", "3", "5"], "the head records aux layer ids"),  # never changes what the head was trained on
    ("nemo-legacy-eagle", ["1", "3", "4"], "--aux-layer-ids is for Llama-style EAGLE-3 heads; this head is EAGLE"),
    (NEMO, ["1", "1", "4"], "must be distinct"),
])
def test_ids_the_head_cannot_take_are_refused_and_nothing_is_written(cli, samples, tmp_path, draft, ids, message):
    before = file_bytes(samples[draft])
    out = tmp_path / "out"
    result = cli("export", samples[draft], "--output", out, "--aux-layer-ids", *ids)
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert not out.exists() and file_bytes(samples[draft]) == before


def test_the_ids_a_head_records_can_be_given_again(cli, samples, tmp_path):
    ids = [str(i) for i in s.AUX_IDS]
    code, doc = run_json(cli, "export", samples["specforge"], "--output", tmp_path / "out", "--aux-layer-ids", *ids)
    assert code == 0, doc


def test_serve_warns_with_the_fix_and_pins_on_request(cli, samples, tmp_path):
    deep = target_dir(tmp_path / "t", 16)
    code, doc = run_json(cli, "serve", "--target", deep, "--draft", samples[NEMO], "--print-only")
    assert code == 0, doc
    [w] = [w for w in doc["result"]["warnings"] if "records no aux layer ids" in w]
    assert "--aux-layer-ids 1 3 4" in w
    code, doc = run_json(cli, "serve", "--target", deep, "--draft", samples[NEMO], "--print-only",
                         "--aux-layer-ids", "1", "3", "4")
    assert code == 0 and not [w for w in doc["result"]["warnings"] if "aux layer ids" in w], doc["result"]


def test_bench_hands_the_pinned_ids_on_to_the_recommended_serve_command():
    from eaglectl.bench.run import BenchOptions, SpecConfig, serve_command

    cmd = serve_command(BenchOptions(target="t", draft="d", aux_layer_ids=(1, 3, 4)), SpecConfig(3, 1, 4))
    assert cmd[cmd.index("--aux-layer-ids"):cmd.index("--aux-layer-ids") + 4] == ["--aux-layer-ids", "1", "3", "4"]


def test_replacing_a_pinned_export_without_the_ids_says_so(cli, samples):
    nemo = samples[NEMO]
    code, doc = run_json(cli, "export", nemo, "--aux-layer-ids", "1", "3", "4")
    assert code == 0 and doc["result"]["action"] == "written", doc
    result = cli("export", nemo, "--dry-run")  # said before anything is written
    assert result.exit_code == 0 and "aux layer ids [1, 3, 4] pinned; this one records none" in result.stderr
    code, doc = run_json(cli, "serve", "--target", samples["target"], "--draft", nemo, "--print-only")
    assert code == 0 and any("[1, 3, 4] pinned" in w for w in doc["result"]["warnings"]), doc["result"]
    result = cli("export", nemo)  # the same default output, now without the ids
    assert result.exit_code == 0, result.stderr
    assert "aux layer ids [1, 3, 4] pinned; this one records none" in result.stderr
    assert "--aux-layer-ids 1 3 4 keeps them" in result.stderr
    assert "eagle_config" not in json.loads((nemo / "sglang" / "config.json").read_text())
    result = cli("export", nemo)  # an unpinned export replaced by the same: nothing to say
    assert result.exit_code == 0 and "pinned" not in result.stderr


@pytest.mark.parametrize("command", ["export", "serve"])
def test_the_pins_a_re_export_drops_are_said_before_it_replaces_them(cli, samples, mocker, tmp_path, command):
    """Said while the export that holds them is still there: a run stopped at the swap (Ctrl-C) has told the user
    and keeps the pinned export."""
    from tests.helpers import fake_python

    nemo = samples[NEMO]
    assert cli("export", nemo, "--aux-layer-ids", "1", "3", "4").exit_code == 0
    mocker.patch("eaglectl.export.exporter.commit_dir", side_effect=KeyboardInterrupt)
    python = fake_python(tmp_path, Path(__file__).parent / "fakes" / "sglang_server.py")
    args = ("export", nemo) if command == "export" else ("serve", "--target", samples["target"], "--draft", nemo,
                                                         "--python", python)
    result = cli(*args)
    assert result.exit_code == 130, result.stderr
    assert result.stderr.count("aux layer ids [1, 3, 4] pinned; this one records none") == 1, result.stderr
    ids = json.loads((nemo / "sglang" / "config.json").read_text())["eagle_config"]
    assert ids["eagle_aux_hidden_state_layer_ids"] == [1, 3, 4]


def test_ids_are_written_in_layer_order_as_sglang_captures_them(cli, samples, tmp_path):
    out = tmp_path / "out"
    code, doc = run_json(cli, "export", samples[NEMO], "--output", out, "--aux-layer-ids", "4", "1", "3")
    assert code == 0, doc
    assert json.loads((out / "config.json").read_text())["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [
        1, 3, 4]
    recorded = [str(i) for i in reversed(s.AUX_IDS)]  # the head's own ids in another order: the same layers
    code, doc = run_json(cli, "export", samples["specforge"], "--output", tmp_path / "o2", "--aux-layer-ids",
                         *recorded)
    assert code == 0, doc
