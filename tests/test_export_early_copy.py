"""The early copy: a safetensors source with a meta file starts its kernel copy before the meta (a torch pickle)
is read, and the export uses it only when the finished plan is the predicted one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eaglectl.checkpoint.resolve import load_meta
from eaglectl.errors import CheckpointError
from eaglectl.export import exporter
from eaglectl.export.atomic import LOCK_TAG, STAGE_TAG
from eaglectl.export.exporter import EarlyCopy, export_checkpoint


@pytest.fixture
def started(monkeypatch) -> list:
    """Every early copy the export started (None where it chose not to), with the threshold at 0 bytes so that
    the tiny samples take the early path."""
    monkeypatch.setattr(exporter, "EARLY_COPY_MIN_BYTES", 0)
    calls: list = []
    real = EarlyCopy.start.__func__

    def spy(cls, *args, **kwargs):
        early = real(cls, *args, **kwargs)
        calls.append(early)
        return early

    monkeypatch.setattr(EarlyCopy, "start", classmethod(spy))
    return calls


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if STAGE_TAG in p.name or LOCK_TAG in p.name)


@pytest.mark.parametrize("padded", [False, True])
def test_early_and_sequential_exports_are_the_same_bytes(samples, tmp_path, started, monkeypatch, padded):
    """Also with the header padded and the copied tensors in source order (outputs copying >= 64 MB)."""
    if padded:
        from eaglectl.export import writer

        monkeypatch.setattr(writer, "ALIGN_MIN_BYTES", 0)
        monkeypatch.setattr(exporter, "ALIGN_MIN_BYTES", 0)
    src = samples["nemo-consolidated"]
    early = export_checkpoint(str(src), output=tmp_path / "early")
    assert started and started[0] is not None  # the early path ran
    monkeypatch.setattr(exporter, "EARLY_COPY_MIN_BYTES", 1 << 60)
    sequential = export_checkpoint(str(src), output=tmp_path / "sequential")
    assert started[-1] is None  # and this one did not
    assert early.action == sequential.action == "written"
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "early" / name).read_bytes() == (tmp_path / "sequential" / name).read_bytes(), name
    assert all(v.ok for v in early.verification)
    assert leftovers(tmp_path) == [] and leftovers(src) == []


def test_early_copy_into_the_default_output_and_sharded(samples, started):
    src = samples["nemo-consolidated"]
    report = export_checkpoint(str(src), max_shard_size="20KB")
    assert started[0] is not None and report.output == (src / "sglang").resolve()
    assert len([f for f in report.files if f.path.endswith(".safetensors")]) > 1
    index = json.loads((src / "sglang" / "model.safetensors.index.json").read_text())
    assert {"d2t", "t2d", "fc.weight"} <= set(index["weight_map"])
    assert all(v.ok for v in report.verification) and leftovers(src) == []


def test_a_meta_the_prediction_got_wrong_falls_back_to_the_planned_copy(samples, tmp_path, started):
    """The meta holds no selected ids: the predicted d2t / t2d are not built, the plan differs, the early copy is
    dropped, and the export is written as planned."""
    src = samples["nemo-consolidated"]
    torch.save({"global_step": 1}, src / "eagle_meta.pt")
    report = export_checkpoint(str(src), output=tmp_path / "out")
    assert started[0] is not None
    assert report.action == "written" and "d2t" not in report.generated
    assert all(v.ok for v in report.verification)
    assert leftovers(tmp_path) == [] and leftovers(src) == []


def test_a_meta_that_contradicts_the_config_is_refused_and_the_early_copy_removed(samples, tmp_path, started):
    src = samples["nemo-consolidated"]
    torch.save({"selected_token_ids": torch.arange(5)}, src / "eagle_meta.pt")  # the config says another vocab
    with pytest.raises(CheckpointError, match="selected tokens but draft_vocab_size"):
        export_checkpoint(str(src), output=tmp_path / "out")
    assert started[0] is not None
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


class Interrupted(BaseException):
    """Stands for Ctrl-C (a BaseException, as KeyboardInterrupt is) without interrupting pytest itself."""


def test_an_interrupt_while_the_meta_is_read_removes_the_early_copy(samples, tmp_path, started, monkeypatch):
    def interrupted(ckpt):
        raise Interrupted

    monkeypatch.setattr(exporter, "load_meta", interrupted)
    with pytest.raises(Interrupted):
        export_checkpoint(str(samples["nemo-consolidated"]), output=tmp_path / "out")
    assert started[0] is not None
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    monkeypatch.setattr(exporter, "load_meta", load_meta)
    report = export_checkpoint(str(samples["nemo-consolidated"]), output=tmp_path / "out")  # the lock is free
    assert report.action == "written"


def test_no_early_copy_where_nothing_waits_or_over_an_earlier_export(samples, tmp_path, started):
    export_checkpoint(str(samples["specforge"]), output=tmp_path / "a")  # no meta: the plan is at hand at once
    export_checkpoint(str(samples["nemo-legacy-eagle3"]), output=tmp_path / "b")  # a pickle: names need torch
    assert started == [None, None]
    src = samples["nemo-consolidated"]
    export_checkpoint(str(src), output=tmp_path / "c")
    again = export_checkpoint(str(src), output=tmp_path / "c")
    assert started[2] is not None and started[3] is None and again.action == "unchanged"


# In a fresh process: the copy starts before anything imports torch (reading the meta is what needs it).
TORCH_FREE_START = r"""
import sys
from eaglectl.export import exporter
exporter.EARLY_COPY_MIN_BYTES = 0
real = exporter.EarlyCopy._copy
def copy(self):
    print("torch imported when the copy started:", "torch" in sys.modules, file=sys.stderr)
    return real(self)
exporter.EarlyCopy._copy = copy
from eaglectl.cli.app import main
sys.argv = ["eaglectl", "export", *sys.argv[1:]]
main()
"""


def test_the_copy_starts_before_torch_is_imported(samples, tmp_path):
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE_START, str(samples["nemo-consolidated"]), "--output",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch imported when the copy started: False" in proc.stderr


def test_the_exporters_threads_import_nothing():
    """A signal (Ctrl-C, SIGTERM) raised in the main thread while it imports can leave an import lock held; a
    thread that then imports waits for it forever, and the export hangs instead of cleaning up. The scan and the
    early copy therefore run with everything imported before they start."""
    import ast
    import inspect
    import textwrap

    for fn in (exporter._scan_values, exporter._Background._run, EarlyCopy._copy, exporter._Written.wait):
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)], fn.__qualname__
