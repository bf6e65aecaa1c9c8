"""Checkpoint resolution: every layout, both entry points of the consolidated layout, Hub ids."""

from __future__ import annotations

import pytest

from eaglectl.checkpoint.resolve import resolve
from eaglectl.enums import Algorithm, Layout
from eaglectl.export.plan import build_plan


@pytest.mark.parametrize(
    ("key", "layout", "algorithm"),
    [
        ("nemo-consolidated", Layout.nemo_consolidated, Algorithm.EAGLE3),
        ("nemo-sharded", Layout.nemo_consolidated, Algorithm.EAGLE3),
        ("nemo-legacy-eagle3", Layout.nemo_legacy, Algorithm.EAGLE3),
        ("nemo-legacy-eagle", Layout.nemo_legacy, Algorithm.EAGLE),
        ("specforge", Layout.hf, Algorithm.EAGLE3),
        ("eagle-research", Layout.hf, Algorithm.EAGLE3),
    ],
)
def test_layouts_resolve(samples, key, layout, algorithm):
    ckpt = resolve(samples[key])
    assert ckpt.layout is layout
    assert build_plan(ckpt).algorithm is algorithm
    assert ckpt.weights is not None and ckpt.weights.tensors


def test_consolidated_inner_and_outer_dir_agree(samples):
    outer = resolve(samples["nemo-consolidated"])
    inner = resolve(samples["nemo-consolidated"] / "model")
    assert outer.layout is inner.layout is Layout.nemo_consolidated
    assert outer.model_dir == inner.model_dir
    assert outer.meta is not None and inner.meta is not None and outer.meta.path == inner.meta.path
    assert outer.meta.draft_vocab == 128 and outer.meta.vocab == 512


def test_training_run_dir_picks_newest_checkpoint(samples, tmp_path):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(samples["nemo-consolidated"], run / "epoch_0_step_100")
    shutil.copytree(samples["nemo-consolidated"], run / "epoch_1_step_20")
    assert resolve(run).root == (run / "epoch_1_step_20").resolve()


def test_a_newest_checkpoint_that_is_a_broken_symlink_is_named_not_passed_over(samples, tmp_path):
    """`epoch_9_step_900 -> /gone` beside epoch_0_step_100: taking the older one would export stale weights as the
    newest without a word. A broken link older than a real checkpoint is no obstacle."""
    import shutil

    from eaglectl.errors import CheckpointError

    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(samples["nemo-consolidated"], run / "epoch_0_step_100")
    (run / "epoch_0_step_50").symlink_to(tmp_path / "gone-older")
    assert resolve(run).root == (run / "epoch_0_step_100").resolve()
    (run / "epoch_9_step_900").symlink_to(tmp_path / "gone")
    with pytest.raises(CheckpointError, match=r"epoch_9_step_900: broken symlink \(to .*gone\), the newest checkpoint"):
        resolve(run)


def test_legacy_meta_name_fallback(samples):
    ckpt = resolve(samples["nemo-legacy-eagle3"])
    assert ckpt.meta is not None and ckpt.meta.path.name == "eagle3_meta.pt"


def test_eagle_meta_preferred_over_legacy_name(samples):
    import shutil

    d = samples["nemo-consolidated"]
    shutil.copy(d / "eagle_meta.pt", d / "eagle3_meta.pt")
    assert resolve(d).meta.path.name == "eagle_meta.pt"


def test_sharded_index_is_read(samples):
    ckpt = resolve(samples["nemo-sharded"])
    assert ckpt.weights.index_file is not None
    assert len(ckpt.weights.files) == 2


def test_hub_id_is_fetched_then_resolved_as_its_directory(monkeypatch, samples, hub_cache):
    import huggingface_hub

    from tests.hub_cache import cache_dir_of, cache_repo

    snapshot = cache_repo(hub_cache, "nvidia/some-eagle3-head", cache_dir_of(samples["specforge"]), ref=None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(snapshot))
    ckpt = resolve("nvidia/some-eagle3-head")
    assert ckpt.layout is Layout.hf and ckpt.hub_id == "nvidia/some-eagle3-head" and ckpt.model_dir == snapshot
    assert ckpt.hub is not None and ckpt.hub.commit == snapshot.name and ckpt.hub.cache == hub_cache
    assert ckpt.source == "nvidia/some-eagle3-head" and not ckpt.is_remote


def test_header_reading_does_not_load_tensor_data(samples, monkeypatch):
    import safetensors

    calls = []
    real = safetensors.safe_open

    class Spy:
        def __init__(self, *a, **k):
            self._h = real(*a, **k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def keys(self):
            return self._h.keys()

        def get_tensor(self, name):
            calls.append(name)
            return self._h.get_tensor(name)

    monkeypatch.setattr(safetensors, "safe_open", Spy)
    ckpt = resolve(samples["specforge"])
    assert ckpt.weights.tensors["fc.weight"].shape == (64, 192)
    assert calls == []


# --- a checkpoint one level down, named in the hint -----------------------------------------------------------------
def test_a_specforge_runs_top_folder_names_its_output_in_the_hint(samples, cli):
    """`inspect RUN` (SpecForge's top folder, which holds config.json and output/) said only "not a drafter
    checkpoint"; the hint names output/ and the path to pass."""
    from eaglectl.errors import CheckpointError

    top = samples["specforge-training"].parent
    with pytest.raises(CheckpointError, match="not a drafter checkpoint") as info:
        resolve(top)
    assert info.value.hint == f"output/ below it holds a SpecForge training run: point at {top / 'output'}"
    result = cli("inspect", top)
    assert result.exit_code == 1
    assert "hint: output/ below it holds a SpecForge training run: point at " in result.stderr


def test_a_folder_of_training_runs_names_them(samples, tmp_path):
    import shutil

    from eaglectl.errors import CheckpointError

    job = tmp_path / "job"
    shutil.copytree(samples["nemo-consolidated"], job / "run1" / "epoch_0_step_100")
    shutil.copytree(samples["specforge"], job / "export")
    (job / "logs").mkdir()
    (job / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError) as info:
        resolve(job)
    assert info.value.hint == ("checkpoints one level down: export/ (a drafter checkpoint), run1/ (a training run of "
                               f"epoch_<E>_step_<S> checkpoints); point at one of them, e.g. {job / 'export'}")


def test_a_folder_without_a_checkpoint_below_gets_no_hint(tmp_path):
    from eaglectl.errors import CheckpointError

    (tmp_path / "d" / "logs" / "epoch_notes").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not a drafter checkpoint") as info:
        resolve(tmp_path / "d")
    assert info.value.hint is None


def test_the_look_one_level_down_is_bounded(tmp_path, monkeypatch):
    """Every input has a bounded cost: a folder of thousands of runs is not walked for a hint."""
    from eaglectl.checkpoint import resolve as r

    monkeypatch.setattr(r, "MAX_BELOW_ENTRIES", 3)
    for i in range(10):
        (tmp_path / f"head{i}").mkdir()
        (tmp_path / f"head{i}" / "config.json").write_text("{}")
        (tmp_path / f"head{i}" / "model.safetensors").write_bytes(b"")
    looked: list[str] = []
    real = r._what_checkpoint
    monkeypatch.setattr(r, "_what_checkpoint", lambda d: looked.append(d.name) or real(d))
    assert len(r.checkpoints_below(tmp_path)) == 3 and len(looked) == 3


def test_the_hints_path_is_quoted_for_the_shell(tmp_path):
    """A path with bytes that are not UTF-8 (or a space) is written as the shell reads it back: `$'...'`, not a
    Python escape (`\\udce9`) that cannot be pasted."""
    import os

    from eaglectl.errors import CheckpointError

    top = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9 run")
    os.makedirs(os.path.join(top, "output", "r-step1"))
    open(os.path.join(top, "output", "r-step1", "training_state.pt"), "wb").close()
    with pytest.raises(CheckpointError) as info:
        resolve(top)
    assert info.value.hint is not None and "\\udce9" not in info.value.hint
    assert info.value.hint.endswith(f"point at $'{tmp_path}/caf\\xe9 run/output'")
