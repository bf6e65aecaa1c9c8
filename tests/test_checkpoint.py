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
