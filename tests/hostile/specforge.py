"""SpecForge training checkpoints: a training_state.pt that is not what SpecForge writes, a run dir that names no
single run, a draft config that cannot be found. Each is one error line; nothing in the pickle runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tests.hostile.core import MARKER, Bases, Evil, case, copy_base, edit_pt

STEP = "specforge-run-step100"


def _run(tmp: Path, bases: Bases) -> tuple[Path, Path]:
    """A private copy of the SpecForge run dir and its one step's training_state.pt."""
    ck = copy_base(bases, "specforge", tmp)
    return ck, ck / STEP / "training_state.pt"


def _edit_state(tmp: Path, bases: Bases, edit) -> Path:
    ck, f = _run(tmp, bases)
    edit_pt(f, edit)
    return ck


def _provenance(state: dict[str, Any], **fields: Any) -> None:
    record = dict(state["specforge_model_provenance"])
    record.update(fields)
    state["specforge_model_provenance"] = tuple(sorted(record.items()))


@case("sf-state-pickled-code", "refused to unpickle: it needs objects beyond tensors (global io.open)")
def _(tmp, bases):
    ck, f = _run(tmp, bases)
    edit_pt(f, lambda s: s.__setitem__("resume_hook", Evil(tmp / MARKER)))
    return ck


@case("sf-state-holds-a-list", "holds a list, not SpecForge's training-state dict")
def _(tmp, bases):
    return _edit_state(tmp, bases, lambda s: list(s))


@case("sf-state-without-weights", "no draft_state_dict dict")
def _(tmp, bases):
    return _edit_state(tmp, bases, lambda s: s.pop("draft_state_dict"))


@case("sf-state-weights-not-tensors", "draft_state_dict holds 1 entry that are not named tensors")
def _(tmp, bases):
    return _edit_state(tmp, bases, lambda s: s["draft_state_dict"].__setitem__("fc.weight", "not a tensor"))


@case("sf-state-empty-weights", "draft_state_dict is empty")
def _(tmp, bases):
    return _edit_state(tmp, bases, lambda s: s.__setitem__("draft_state_dict", {}))


@case("sf-state-capture-not-ids", "capture_layers must be integer layer indices")
def _(tmp, bases):
    return _edit_state(tmp, bases, lambda s: _provenance(s, capture_layers=("a", "b", "c")))


@case("sf-state-capture-huge", "capture_layers must be layer indices in [0, 4096)")
def _(tmp, bases):
    return _edit_state(tmp, bases, lambda s: _provenance(s, capture_layers=(1, 2, 10**12)))


@case("sf-state-provenance-odd", "specforge_model_provenance is not a list of (key, value) pairs")
def _(tmp, bases):
    return _edit_state(tmp, bases, lambda s: s.__setitem__("specforge_model_provenance", {"capture_layers": 3}))


@case("sf-state-strategy-dflash", "a SpecForge 'dflash' run; eaglectl reads EAGLE heads")
def _(tmp, bases):
    return _edit_state(tmp, bases, lambda s: s.__setitem__("strategy", "dflash"))


@case("sf-state-truncated", "not a readable torch checkpoint")
def _(tmp, bases):
    ck, f = _run(tmp, bases)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return ck


@case("sf-state-is-a-fifo", "not a regular file")
def _(tmp, bases):
    ck, f = _run(tmp, bases)
    f.unlink()
    os.mkfifo(f)
    return ck


@case("sf-draft-config-gone", "keeps no config.json and none was found beside it")
def _(tmp, bases):
    ck = _edit_state(tmp, bases, lambda s: _provenance(s, draft_config=(
        "file-stat-v2", str(tmp / "gone.json"), ("sha256", "", 1, "0" * 64))))
    return ck


@case("sf-two-runs", "holds the checkpoints of several SpecForge runs")
def _(tmp, bases):
    ck, _f = _run(tmp, bases)
    (ck / "specforge-run-latest").unlink()
    shutil.copytree(ck / STEP, ck / "other-run-step7")
    return ck


@case("sf-state-pickle-bomb", "is compressed; torch never compresses its records")
def _(tmp, bases):
    from tests.hostile.pickle_limits import pickle_bomb_bytes, rewrite_zip

    ck, f = _run(tmp, bases)
    rewrite_zip(f, {"/data.pkl": pickle_bomb_bytes(32 * 1024 * 1024)}, compress=("/data.pkl",))
    return ck


@case("sf-state-pickle-oversized", "its pickle")
def _(tmp, bases):
    from tests.hostile.pickle_limits import pickle_bomb_bytes, rewrite_zip

    ck, f = _run(tmp, bases)
    rewrite_zip(f, {"/data.pkl": pickle_bomb_bytes(8 * 1024 * 1024)})  # stored, but far larger than its records need
    return ck
