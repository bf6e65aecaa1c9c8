"""SpecForge training checkpoints: where a run keeps its newest step, what its training state holds, and where
its draft config is.

SpecForge >= 0.2 (`specforge train`, specforge/training/checkpoint.py `CheckpointManager`) writes, per save:

    <output_dir>/<run_id>-step<N>/training_state.pt        rank 0's payload: `draft_state_dict` holds the weights
    <output_dir>/<run_id>-step<N>/training_state_rank<r>.pt per-rank optimizer and RNG state (never read here)
    <output_dir>/<run_id>-latest -> <run_id>-step<N>        relative link, repointed at every save
    <output_dir>/<run_id>-best   -> <run_id>-step<M>        only when evaluation beat the best so far

and no config.json: the draft config stays where the run config pointed (`model.draft_model_config`), recorded
by path and sha256 in the payload's `specforge_model_provenance`, beside the aux-layer ids the run captured
(`capture_layers`, SGLang's numbering; a run-config override of them is written nowhere else).

A run dir resolves as SpecForge's own `resolve_resume_dir` does (training/checkpoint.py l.322-385): its single
complete `*-latest` link, else the highest complete `<run_id>-step<N>` of its one run id; a dir counts only when it
holds `training_state.pt` (a torn save never does). The pickle is read with `weights.load_pickle` alone
(`torch.load(weights_only=True, mmap=True)`): nothing in it runs, its tensors are mapped, not read.

Older SpecForge (0.1.x `epoch_<E>/`, pre-0.2 `epoch_<E>_step_<S>/`) saved `config.json` + `model.safetensors` beside
a `training_state.pt` of optimizer state: those dirs are read as any `hf` dir, from the safetensors file; their
`training_state.pt` (which pickles an argparse.Namespace) is never opened.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglectl.checkpoint import SPECFORGE_STEP_DIR
from eaglectl.engines.source import Rule, Source
from eaglectl.errors import CheckpointError, ConfigError, UnsupportedDraftError
from eaglectl.hub import expand_user

STATE_FILE = "training_state.pt"  # training/checkpoint.py l.32
STEP_DIR = SPECFORGE_STEP_DIR  # checkpoint_dir(): f"{run_id}-step{step}" (l.55-56)
LINK_SUFFIXES = ("-latest", "-best")
WEIGHTS_KEY = "draft_state_dict"  # training/controller.py l.839-879; strategies/base.py l.306-319
PROVENANCE_KEY = "specforge_model_provenance"  # algorithms/common/providers.py l.37, l.342-345
EAGLE_STRATEGIES = ("eagle3", "peagle")  # the others (dflash, dspark, domino) train no EAGLE head
MAX_STEPS_LISTED = 100_000  # entries of a run dir looked at: a run keeps one dir per save
MAX_CONFIG_HASH_BYTES = 16 * 1024 * 1024
RELEASE = "0.2.0"

# SpecForge's `norm_output` is not SGLang's (or vLLM's): there it only switches the final norm before lm_head (on by
# default), and every training step hands the next one the pre-norm state; SGLang 0.5.12+ read `norm_output: true`
# as "hand the normed state to the next draft step" and always norm before lm_head.
NORM_OUTPUT = Rule("the final norm before lm_head (default true); the next step always gets the pre-norm state",
                   Source(RELEASE, "specforge/modeling/draft/llama3_eagle.py",
                          "LlamaForCausalLMEagle3.__init__ l.1690 (getattr(config, 'norm_output', True)), "
                          "compute_logits l.1772-1777; algorithms/eagle3/model.py l.386-400: the next step gets "
                          "backbone()'s pre-norm output", project="SpecForge"))


@dataclass
class TrainingState:
    """What eaglectl takes from a SpecForge `training_state.pt` besides the weights."""

    path: Path
    step: int | None = None
    run_id: str | None = None
    strategy: str | None = None
    capture_layers: Any = None  # SGLang's numbering (layer outputs); checked by resolve
    draft_config: str | None = None  # the path the run read its draft config from (provenance)
    draft_config_sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    dropped: dict[str, Any] = field(default_factory=dict)  # draft config keys SGLang reads with another meaning


def sglang_dialect(config: dict[str, Any], state: TrainingState) -> str | None:
    """Take SpecForge's `norm_output` out of a draft config (kept in `state.dropped`): SGLang would read the key
    with its own meaning (NORM_OUTPUT), and without it serves what SpecForge trained with its final norm. The
    note, or None."""
    if "norm_output" not in config:
        return None
    state.dropped["norm_output"] = value = config.pop("norm_output")
    return (f"norm_output: {value!r} dropped (SpecForge {RELEASE}: {NORM_OUTPUT.value}; SGLang would read true as "
            f"handing the normed state to the next draft step)")


def is_step_dir(d: Path) -> bool:
    """A SpecForge >= 0.2 save: it holds `training_state.pt` (anything of that name counts, so that a FIFO or a
    dangling link there is named as such rather than passed over). Call it after the layouts with config.json
    and weights (SpecForge's older dirs hold an optimizer-only training_state.pt beside those)."""
    try:
        os.lstat(d / STATE_FILE)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:  # a step dir that may not be searched (mode 000): named when it is opened, never passed over
        return True  # for an older step, whose weights would then be exported without a word
    return True


def newest_step(run_dir: Path) -> Path | None:
    """The step dir a SpecForge run dir stands for (None: not a SpecForge run dir). Refuses a dir that holds
    several runs, as SpecForge itself does: which one is meant is the user's choice."""
    latest: set[Path] = set()
    by_run: dict[str, list[tuple[int, Path]]] = {}
    try:
        with os.scandir(run_dir) as it:
            for n, entry in enumerate(it):
                if n >= MAX_STEPS_LISTED:
                    raise CheckpointError(f"{run_dir}: over {MAX_STEPS_LISTED} entries; point at one "
                                          f"<run>-step<N> directory")
                if entry.name.endswith("-latest") and entry.is_symlink():
                    target = Path(os.path.realpath(entry.path))
                    if is_step_dir(target):
                        latest.add(target)
                    continue
                m = STEP_DIR.match(entry.name)
                if m and entry.is_dir(follow_symlinks=False) and is_step_dir(Path(entry.path)):
                    by_run.setdefault(m.group(1), []).append((int(m.group(2)), Path(entry.path)))
    except OSError:
        return None
    if len(latest) > 1:
        raise CheckpointError(f"{run_dir}: holds several SpecForge runs' -latest links "
                              f"({', '.join(sorted(p.name for p in latest))}); point at one of them")
    if latest:
        return latest.pop()
    if len(by_run) > 1:
        raise CheckpointError(f"{run_dir}: holds the checkpoints of several SpecForge runs "
                              f"({', '.join(sorted(by_run))}); point at one <run>-step<N> directory or <run>-latest")
    if by_run:
        return max(next(iter(by_run.values())))[1]
    return None


def read_training_state(path: Path) -> tuple[dict[str, Any], TrainingState]:
    """The draft tensors of a `training_state.pt` (not read: `StoredTensor`s from eaglectl's own reader of plain
    pickles, or mapped torch tensors where it does not handle the file) and what the payload says about them.
    Anything but the documented plain containers is refused by the weights-only unpickler or here, as one line."""
    from eaglectl.checkpoint.small_pickle import StoredTensor
    from eaglectl.checkpoint.weights import index_pickle, load_pickle

    obj = index_pickle(path)
    if obj is None:
        obj = load_pickle(path)
        import torch

        tensor_type: type = torch.Tensor
    else:
        tensor_type = StoredTensor
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds {_kind(obj)}, not SpecForge's training-state dict")
    weights = obj.get(WEIGHTS_KEY)
    if not isinstance(weights, dict):
        if "optimizer_state_dict" in obj or "args" in obj:
            raise CheckpointError(f"{path}: a SpecForge < 0.2 training state (optimizer only); its weights are in "
                                  f"model.safetensors beside it")
        raise CheckpointError(f"{path}: no {WEIGHTS_KEY} dict (keys: {_keys(obj)}); not a SpecForge >= 0.2 "
                              f"training state")
    tensors = {k: v for k, v in weights.items() if isinstance(k, str) and isinstance(v, tensor_type)}
    odd = [k for k in weights if not (isinstance(k, str) and isinstance(weights[k], tensor_type))]
    if odd:
        raise CheckpointError(f"{path}: {WEIGHTS_KEY} holds {len(odd)} entr{'y' if len(odd) == 1 else 'ies'} that "
                              f"are not named tensors ({_short(odd[0])})")
    if not tensors:
        raise CheckpointError(f"{path}: {WEIGHTS_KEY} is empty")
    state = TrainingState(path=path)
    step = obj.get("global_step")
    state.step = step if type(step) is int and step >= 0 else None
    state.run_id = obj["run_id"] if isinstance(obj.get("run_id"), str) else None
    strategy = obj.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        raise CheckpointError(f"{path}: strategy is {_short(strategy)}, not a name")
    state.strategy = strategy
    if strategy is not None and strategy not in EAGLE_STRATEGIES:
        raise UnsupportedDraftError(f"{path}: a SpecForge {strategy!r} run; eaglectl reads EAGLE heads "
                                    f"({', '.join(EAGLE_STRATEGIES)})",
                                    hint=f"use SpecForge's own `specforge export --to hf` for {strategy} heads")
    _read_provenance(obj.get(PROVENANCE_KEY), state)
    return tensors, state


def _read_provenance(record: Any, state: TrainingState) -> None:
    """`specforge_model_provenance`: sorted (key, value) pairs (training/provenance.py l.263-292). The capture
    ids are taken as they are; `resolve` checks them as any config's."""
    if record is None:
        return
    if not isinstance(record, (tuple, list)) or not all(isinstance(p, (tuple, list)) and len(p) == 2
                                                        and isinstance(p[0], str) for p in record):
        raise CheckpointError(f"{state.path}: {PROVENANCE_KEY} is not a list of (key, value) pairs")
    fields = dict(record)
    capture = fields.get("capture_layers")
    if capture is not None:
        state.capture_layers = list(capture) if isinstance(capture, (tuple, list)) else capture
    source = fields.get("draft_config")
    # ("file-stat-v2", path, ("sha256", "", size, hex)) | ("directory-stat-v2", path, (("sha256", name, ...), ...))
    # | ("reference", name) | None   (training/provenance.py model_source_identity l.101-120)
    if isinstance(source, (tuple, list)) and len(source) >= 2 and isinstance(source[1], str):
        kind, where = source[0], source[1]
        if kind == "file-stat-v2":
            state.draft_config = where
            state.draft_config_sha256 = _sha_of(source[2] if len(source) > 2 else None)
        elif kind == "directory-stat-v2":
            state.draft_config = os.path.join(where, "config.json")
            entries = source[2] if len(source) > 2 and isinstance(source[2], (tuple, list)) else ()
            state.draft_config_sha256 = next((_sha_of(e) for e in entries if isinstance(e, (tuple, list))
                                              and len(e) > 1 and e[1] == "config.json"), None)
        elif kind == "reference":
            state.notes.append(f"the run read its draft config from {where!r} (a Hub reference): pass it with "
                               f"--draft-config as a local file")


def _sha_of(entry: Any) -> str | None:
    if isinstance(entry, (tuple, list)) and len(entry) == 4 and entry[0] == "sha256" and isinstance(entry[3], str):
        return entry[3]
    return None


@dataclass
class DraftConfigChoice:
    path: Path
    how: str  # for the notes: where it came from


def find_draft_config(step_dir: Path, state: TrainingState, given: str | None) -> DraftConfigChoice:
    """The draft config of a SpecForge >= 0.2 checkpoint: `--draft-config` (a JSON file, or a dir holding
    config.json), else the file the run recorded (if it is still there), else a config.json in the run dir or in
    the dir above it."""
    if given is not None:
        p = expand_user(given, ConfigError)
        try:  # a name too long, a directory that may not be searched: said, not a traceback
            if p.is_dir():
                p = p / "config.json"
            found = p.exists()
        except OSError as exc:
            raise ConfigError(f"--draft-config {given}: cannot access ({exc.strerror or exc})") from exc
        if not found:
            raise ConfigError(f"--draft-config {given}: no such file (a draft config JSON, or a directory holding "
                              f"config.json)")
        return DraftConfigChoice(p, "given with --draft-config")  # a FIFO or a device: refused when it is read
    if state.draft_config is not None:
        p = Path(state.draft_config)
        if p.is_file():
            return DraftConfigChoice(p, f"the draft config the run recorded in {STATE_FILE}")
    for d in (step_dir.parent, step_dir.parent.parent):
        if (d / "config.json").is_file():
            return DraftConfigChoice(d / "config.json", f"config.json found beside the run ({d})")
    recorded = f" (the run recorded {state.draft_config}, which is gone)" if state.draft_config else ""
    raise ConfigError(f"{step_dir}: a SpecForge training checkpoint keeps no config.json and none was found beside "
                      f"it{recorded}", hint="pass --draft-config PATH: the run config's model.draft_model_config")


def config_changed(path: Path, sha256: str | None) -> bool:
    """The draft config's bytes differ from what the run hashed (False when the run recorded no hash)."""
    if sha256 is None:
        return False
    try:
        if path.stat().st_size > MAX_CONFIG_HASH_BYTES:
            return True
        return hashlib.sha256(path.read_bytes()).hexdigest() != sha256
    except OSError:
        return False


def _kind(obj: Any) -> str:
    kind = type(obj).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _keys(obj: dict[Any, Any]) -> str:
    return ", ".join(_short(k) for k in list(obj)[:8]) or "none"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


