"""SpecForge training checkpoints: the 0.2 layout (run dir, step dir, -latest / -best, training_state.pt read
weights-only, the draft config found or given with --draft-config, aux ids from the provenance record) and the older
epoch_<E>/ and epoch_<E>_step_<S>/ layouts (read from their safetensors, never from training_state.pt); what
export writes against what `specforge export --to sglang` writes (tests/specforge_ckpt.py builds the runs)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from eaglectl.enums import Layout
from eaglectl.errors import CheckpointError, ConfigError, UnsupportedDraftError, UsageError
from tests.helpers import LazyModule, read_all
from tests.specforge_ckpt import RUN_ID, expected_specforge_export, write_run

resolve = LazyModule("eaglectl.checkpoint.resolve")
exporter = LazyModule("eaglectl.export.exporter")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One of each layout, built once (tests that change them copy them first)."""
    root = tmp_path_factory.mktemp("specforge-runs")
    return {"v0.2": write_run(root / "v02", best=100),
            "v0.1": write_run(root / "v01", layout="v0.1"),
            "step": write_run(root / "step", layout="step"),
            "run-config-ids": write_run(root / "runcfg", aux_ids=[0, 3, 5], aux_in_run_config=True,
                                        rope_parameters_only=True, embed_trainable=True, steps=(50,))}


def copy_run(run: dict, dest: Path) -> Path:
    """A private copy of a run's whole directory (output/ and the draft config beside it); returns its output/."""
    src = run["output"].parent
    shutil.copytree(src, dest, symlinks=True)
    return dest / "output"


# --------------------------------------------------------------------------------------------- resolution
def test_a_run_dir_resolves_to_the_step_its_latest_link_names(runs):
    ckpt = resolve.resolve(runs["v0.2"]["output"])
    assert ckpt.layout is Layout.specforge_training
    assert ckpt.model_dir == runs["v0.2"]["checkpoints"][-1]  # specforge-run-step200
    assert ckpt.training.step == 200 and ckpt.training.run_id == RUN_ID and ckpt.training.strategy == "eagle3"
    assert ckpt.config_path == runs["v0.2"]["draft_config"].resolve()
    assert ckpt.weights.format == "torch" and ckpt.weights.files == [ckpt.model_dir / "training_state.pt"]
    assert list(ckpt.weights.tensors) == list(runs["v0.2"]["states"]["specforge-run-step200"])


def test_the_latest_link_wins_over_a_higher_step(runs, tmp_path):
    out = copy_run(runs["v0.2"], tmp_path / "r")
    (out / f"{RUN_ID}-latest").unlink()
    os.symlink(f"{RUN_ID}-step100", out / f"{RUN_ID}-latest")  # SpecForge rolled back to step 100
    assert resolve.resolve(out).model_dir.name == f"{RUN_ID}-step100"


def test_without_links_the_highest_complete_step_wins(runs, tmp_path):
    out = copy_run(runs["v0.2"], tmp_path / "r")
    for link in (f"{RUN_ID}-latest", f"{RUN_ID}-best"):
        (out / link).unlink()
    (out / f"{RUN_ID}-step300").mkdir()  # a torn save: no training_state.pt, never a target
    (out / f"{RUN_ID}-step300" / "training_state_rank0.pt").write_bytes(b"")
    assert resolve.resolve(out).model_dir.name == f"{RUN_ID}-step200"


@pytest.mark.parametrize("links", [True, False])
def test_a_newest_step_that_may_not_be_read_is_named_not_passed_over(runs, tmp_path, monkeypatch, links):
    """step200 with mode 000 (simulated: the suite may run as root): its training_state.pt cannot be looked up,
    which is not a torn save. Taken for one, the run resolved to step100 and exported older weights without a
    word; now step200 is chosen, and opening it says what is wrong."""
    out = copy_run(runs["v0.2"], tmp_path / "r")
    if not links:
        for link in (f"{RUN_ID}-latest", f"{RUN_ID}-best"):
            (out / link).unlink()
    locked = str(out / f"{RUN_ID}-step200") + os.sep
    real_lstat, real_stat = os.lstat, os.stat

    def denied(real):
        def call(path, *args, **kwargs):
            if os.fspath(path).startswith(locked):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "lstat", denied(real_lstat))
    monkeypatch.setattr(os, "stat", denied(real_stat))
    from eaglectl.checkpoint.specforge import newest_step

    assert newest_step(out).name == f"{RUN_ID}-step200"
    with pytest.raises(CheckpointError, match=r"step200/[a-z_.]+: cannot access \(Permission denied\)"):
        resolve.resolve(out)


@pytest.mark.parametrize("given", ["step", "best", "state-file", "latest"])
def test_a_step_dir_its_links_and_its_state_file_resolve(runs, given):
    out = runs["v0.2"]["output"]
    path = {"step": out / f"{RUN_ID}-step100", "best": out / f"{RUN_ID}-best",
            "state-file": out / f"{RUN_ID}-step100" / "training_state.pt", "latest": out / f"{RUN_ID}-latest"}[given]
    ckpt = resolve.resolve(path)
    assert ckpt.layout is Layout.specforge_training
    assert ckpt.model_dir.name == (f"{RUN_ID}-step200" if given == "latest" else f"{RUN_ID}-step100")


def test_a_dir_with_two_runs_is_refused_not_guessed(runs, tmp_path):
    out = copy_run(runs["v0.2"], tmp_path / "r")
    for link in (f"{RUN_ID}-latest", f"{RUN_ID}-best"):
        (out / link).unlink()
    shutil.copytree(out / f"{RUN_ID}-step100", out / "other-run-step5")
    with pytest.raises(CheckpointError, match="several SpecForge runs"):
        resolve.resolve(out)
    os.symlink(f"{RUN_ID}-step200", out / f"{RUN_ID}-latest")
    os.symlink("other-run-step5", out / "other-run-latest")
    with pytest.raises(CheckpointError, match="several SpecForge runs' -latest links"):
        resolve.resolve(out)


# ------------------------------------------------------------------------------------------- draft config
def test_the_draft_config_comes_from_the_provenance_record_then_beside_the_run(runs, tmp_path):
    out = copy_run(runs["v0.2"], tmp_path / "r")
    # the copy's state still names the original's draft config (an absolute path): that one is found first
    assert resolve.resolve(out).config_path == runs["v0.2"]["draft_config"].resolve()
    moved = tmp_path / "elsewhere"
    shutil.copytree(runs["v0.2"]["output"].parent, moved, symlinks=True)
    original = runs["v0.2"]["draft_config"]
    hidden = original.with_suffix(".hidden")
    original.rename(hidden)
    try:
        with pytest.raises(ConfigError, match=r"keeps no config\.json and none was found") as err:
            resolve.resolve(moved / "output")
        assert "--draft-config" in (err.value.hint or "")
        (moved / "config.json").write_bytes(hidden.read_bytes())  # beside the run: the dir above output/
        assert resolve.resolve(moved / "output").config_path == (moved / "config.json").resolve()
        (moved / "output" / "config.json").write_bytes(hidden.read_bytes())  # in the run dir: found first
        assert resolve.resolve(moved / "output").config_path == (moved / "output" / "config.json").resolve()
    finally:
        hidden.rename(original)


def test_draft_config_option_takes_a_file_or_a_dir_and_is_refused_where_a_config_exists(runs, tmp_path):
    cfg = tmp_path / "cfgdir" / "config.json"
    cfg.parent.mkdir()
    cfg.write_bytes(runs["v0.2"]["draft_config"].read_bytes())
    for given in (cfg, cfg.parent):
        ckpt = resolve.resolve(runs["v0.2"]["output"], draft_config=str(given))
        assert ckpt.config_path == cfg and "given with --draft-config" in ckpt.config_notes[0]
    with pytest.raises(ConfigError, match="no such file"):
        resolve.resolve(runs["v0.2"]["output"], draft_config=str(tmp_path / "missing.json"))
    with pytest.raises(UsageError, match="has its own config"):
        resolve.resolve(runs["step"]["output"], draft_config=str(cfg))


def test_a_changed_draft_config_is_noted(runs, tmp_path):
    out = copy_run(runs["v0.2"], tmp_path / "r")
    cfg = json.loads(runs["v0.2"]["draft_config"].read_text())
    (tmp_path / "edited.json").write_text(json.dumps({**cfg, "initializer_range": 0.01}))
    ckpt = resolve.resolve(out, draft_config=str(tmp_path / "edited.json"))
    assert any("changed since training" in n for n in ckpt.config_notes)
    assert not any("changed since" in n for n in resolve.resolve(out).config_notes)


# ----------------------------------------------------------------------------------------------- aux ids
def test_aux_ids_come_from_the_provenance_record_when_the_config_names_none(runs):
    ckpt = resolve.resolve(runs["run-config-ids"]["output"])
    assert "eagle_config" not in json.loads(runs["run-config-ids"]["draft_config"].read_text())
    assert ckpt.config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [0, 3, 5]
    assert any("the layers the run captured" in n for n in ckpt.config_notes)
    # the config and the record agree: nothing to note
    assert not any("captured" in n for n in resolve.resolve(runs["v0.2"]["output"]).config_notes)


def test_the_recorded_capture_wins_over_a_config_that_names_other_layers(runs, tmp_path):
    cfg = json.loads(runs["v0.2"]["draft_config"].read_text())
    cfg["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": [2, 4, 5]}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    ckpt = resolve.resolve(runs["v0.2"]["output"], draft_config=str(tmp_path / "c.json"))
    assert ckpt.config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 3, 4]
    assert any("the draft config names others" in n for n in ckpt.config_notes)


# ---------------------------------------------------------------------------------------------- legacy
@pytest.mark.parametrize("layout,newest", [("v0.1", "epoch_1"), ("step", "epoch_1_step_200")])
def test_older_layouts_resolve_as_hf_dirs_without_reading_training_state(runs, layout, newest, monkeypatch):
    import eaglectl.checkpoint.weights as weights

    def refuse(path):
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(weights, "load_pickle", refuse)
    run = runs[layout]
    for path in (run["output"], run["output"] / newest):
        ckpt = resolve.resolve(path)
        assert ckpt.layout is Layout.hf and ckpt.model_dir.name == newest
        assert ckpt.weights.format == "safetensors" and [f.name for f in ckpt.weights.files] == ["model.safetensors"]


def test_older_layouts_inspect_as_sglang_ready(cli, runs):
    for layout in ("v0.1", "step"):
        result = cli("inspect", runs[layout]["output"], "--json")
        doc = json.loads(result.stdout)
        assert result.exit_code == 0, result.stdout
        assert doc["result"]["layout"] == "sglang-ready" and doc["result"]["sglang_ready"] is True


# ---------------------------------------------------------------------------------------------- export
def test_export_holds_what_specforge_export_writes_tensor_for_tensor(runs, tmp_path):
    import torch

    report = exporter.export_checkpoint(str(runs["v0.2"]["output"]), output=tmp_path / "out")
    assert report.action == "written" and report.layout is Layout.specforge_training
    got = read_all(tmp_path / "out")
    want = expected_specforge_export(runs["v0.2"]["states"][f"{RUN_ID}-step200"])
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLMEagle3"] and cfg["draft_vocab_size"] == 128


def test_a_training_state_reads_the_same_with_and_without_torch(runs, monkeypatch):
    """eaglectl's own reader of plain pickles and torch.load (the fallback for files it does not handle) give the
    same tensors, byte ranges and training record."""
    from eaglectl.checkpoint import weights

    fast = resolve.resolve(runs["v0.2"]["output"])
    monkeypatch.setattr(weights, "index_pickle", lambda f: None)
    slow = resolve.resolve(runs["v0.2"]["output"])
    assert fast.weights.tensors == slow.weights.tensors
    assert fast.training == slow.training and fast.config == slow.config
    assert fast.weights.stored_plainly("d2t") and not fast.weights._pickles and slow.weights._pickles
    for name in fast.weights.tensors:
        assert fast.weights.load(name).equal(slow.weights.load(name)), name


def test_export_keeps_what_specforge_export_loses(runs, tmp_path):
    """Aux ids the run config overrode (only in the provenance record), RoPE kept only in rope_parameters, and a
    trained embedding: SpecForge's own export writes none of them."""
    import torch

    run = runs["run-config-ids"]
    exporter.export_checkpoint(str(run["output"]), output=tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [0, 3, 5]
    assert cfg["rope_theta"] == 500000.0 and "rope_theta" not in json.loads(run["draft_config"].read_text())
    got = read_all(tmp_path / "out")
    state = run["states"][f"{RUN_ID}-step50"]
    assert torch.equal(got["embed_tokens.weight"], state["embed_tokens.weight"])
    assert "embed_tokens.weight" not in expected_specforge_export(state)


def test_a_ddp_payload_and_a_non_eagle_strategy(tmp_path):
    ddp = write_run(tmp_path / "ddp", ddp=True, steps=(10,))
    assert resolve.resolve(ddp["output"]).training.step == 10
    other = write_run(tmp_path / "dflash", steps=(10,))
    state_file = other["checkpoints"][0] / "training_state.pt"
    import torch

    state = torch.load(state_file, weights_only=True)
    state["strategy"] = "dflash"
    torch.save(state, state_file)
    with pytest.raises(UnsupportedDraftError, match="a SpecForge 'dflash' run"):
        resolve.resolve(other["output"])


def test_a_p_eagle_run_is_refused_by_the_sglang_export(tmp_path):
    run = write_run(tmp_path / "pe", strategy="peagle", steps=(10,))
    ckpt = resolve.resolve(run["output"])
    assert "mask_hidden" in ckpt.weights.tensors and "embed_tokens.weight" in ckpt.weights.tensors
    with pytest.raises(UnsupportedDraftError, match="P-EAGLE"):
        exporter.export_checkpoint(str(run["output"]), output=tmp_path / "out")


# ------------------------------------------------------------------------------------------------- CLI
def test_inspect_text_and_json_with_draft_config(cli, runs):
    result = cli("inspect", runs["v0.2"]["output"], "--draft-config", runs["v0.2"]["draft_config"])
    assert result.exit_code == 0, result.stderr
    assert "specforge-training" in result.stdout and "training_state.pt" in result.stdout
    result = cli("inspect", runs["v0.2"]["output"], "--draft-config", runs["v0.2"]["draft_config"], "--json")
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["result"]["layout"] == "specforge-training"
    assert doc["result"]["paths"]["config"] == str(runs["v0.2"]["draft_config"])


@pytest.mark.parametrize("command", ["inspect", "export", "token-map", "serve", "bench"])
def test_draft_config_bad_input_is_one_error_line(cli, runs, samples, tmp_path, command):
    missing = tmp_path / "missing.json"
    path = runs["v0.2"]["output"]
    argv = {"inspect": ["inspect", path], "export": ["export", path, "-o", tmp_path / "o"],
            "token-map": ["token-map", path, "-o", tmp_path / "t.pt"],
            "serve": ["serve", "--target", samples["target"], "--draft", path, "--print-only"],
            "bench": ["bench", "--target", samples["target"], "--draft", path, "--print-only"]}[command]
    result = cli(*argv, "--draft-config", missing)
    assert result.exit_code == 1, result.stdout
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: --draft-config {missing}: no such file (a draft config JSON, or a directory holding config.json)"]
    doc = json.loads(cli(*argv, "--draft-config", missing, "--json").stdout)
    assert doc["ok"] is False and doc["error"]["type"] == "ConfigError"
    # a checkpoint that has its own config: a usage error
    result = cli(*[samples["specforge"] if a == path else a for a in argv], "--draft-config",
                 runs["v0.2"]["draft_config"])
    assert result.exit_code == 2 and "--draft-config is for SpecForge training checkpoints" in result.stderr


def test_export_token_map_serve_and_bench_take_the_draft_config(cli, runs, samples, tmp_path):
    dc = runs["v0.2"]["draft_config"]
    out = runs["v0.2"]["output"]
    result = cli("export", out, "--draft-config", dc, "-o", tmp_path / "e", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"]["layout"] == "specforge-training"
    result = cli("token-map", out, "--draft-config", dc, "-o", tmp_path / "t.pt")
    assert result.exit_code == 0, result.stderr and (tmp_path / "t.pt").is_file()
    result = cli("serve", "--target", samples["target"], "--draft", out, "--draft-config", dc, "--print-only")
    assert result.exit_code == 0, result.stderr
    assert f"--speculative-draft-model-path {out / (RUN_ID + '-step200') / 'sglang'}" in result.stdout
    result = cli("bench", "--target", samples["target"], "--draft", out, "--draft-config", dc, "--print-only", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"]["draft_model_path"] == str(out / f"{RUN_ID}-step200" / "sglang")
    from eaglectl.bench.run import BenchOptions, serve_command
    from eaglectl.bench.sweep import SpecConfig

    argv = serve_command(BenchOptions(target="t", draft=str(out), draft_config=str(dc)), SpecConfig(3, 1, 4))
    assert argv[argv.index("--draft-config") + 1] == str(dc)  # the recommended serve command keeps it


def test_the_demo_sample_exports_with_its_recorded_aux_ids(samples, tmp_path):
    report = exporter.export_checkpoint(str(samples["specforge-training"]), output=tmp_path / "out")
    assert report.layout is Layout.specforge_training
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 3, 4]


# --------------------------------------------------------------------------------------------- norm_output
@pytest.mark.parametrize(("value", "says"), [(True, "handing the normed state to the next draft step"),
                                             (False, "lm_head on the un-normed state")])
def test_specforge_norm_output_is_dropped_and_warned(cli, runs, samples, tmp_path, value, says):
    """SpecForge's norm_output switches its final norm before lm_head and carries the pre-norm state; SGLang 0.5.12+
    read `true` as carrying the normed state. The key is taken out of the config; a warning says what it meant."""
    cfg = json.loads(runs["v0.2"]["draft_config"].read_text())
    dc = tmp_path / "draft_config.json"
    dc.write_text(json.dumps({**cfg, "norm_output": value}))
    out = runs["v0.2"]["output"]
    ckpt = resolve.resolve(out, draft_config=str(dc))
    assert "norm_output" not in ckpt.config and ckpt.training.dropped == {"norm_output": value}
    assert any(n.startswith(f"norm_output: {value!r} dropped (SpecForge 0.2.0") for n in ckpt.config_notes)
    result = cli("inspect", out, "--draft-config", dc, "--json")
    [f] = [f for f in json.loads(result.stdout)["result"]["findings"] if f["code"] == "specforge-norm-output"]
    assert f["severity"] == "warning" and says in f["message"]
    assert "SpecForge 0.2.0 specforge/modeling/draft/llama3_eagle.py" in f["message"]
    result = cli("export", out, "--draft-config", dc, "-o", tmp_path / "e", "--json")
    assert result.exit_code == 0 and "specforge-norm-output" in result.stderr, result.stderr
    assert "norm_output" not in json.loads((tmp_path / "e" / "config.json").read_text())
    own = copy_run(runs["v0.2"], tmp_path / "r")  # serve would export into the run's step dir
    result = cli("serve", "--target", samples["target"], "--draft", own, "--draft-config", dc, "--print-only")
    assert result.exit_code == 0 and "specforge-norm-output" in result.stderr, result.stderr


def test_norm_output_outside_a_specforge_training_checkpoint_keeps_sglangs_meaning(cli, tmp_path):
    from tests.synthetic_heads import head, write

    d = write(tmp_path / "h", *head(norm_output=True))
    result = cli("inspect", d, "--json")
    doc = json.loads(result.stdout)["result"]
    assert "specforge-norm-output" not in {f["code"] for f in doc["findings"]}
    assert any("norm_output" in f["message"] for f in doc["findings"] if f["code"] == "sglang-minimum")
