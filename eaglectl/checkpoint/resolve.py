"""Checkpoint resolution: classify any path a user gives and describe it without reading tensor data.

Layouts (see `Layout`):
- nemo-consolidated: `epoch_<E>_step_<S>/model/{config.json, weights}` + `eagle_meta.pt` (or legacy
  `eagle3_meta.pt`) beside `model/`; the user may point at either directory.
- nemo-legacy: `draft_model.pt` + `config.json` (+ `eagle_meta.pt` / `eagle3_meta.pt` / `eagle1_meta.pt`).
- hf: SpecForge / EAGLE-research directories, `config.json` + `model.safetensors` / `pytorch_model.bin`; a
  speculators-format config (vLLM's trainer) is recognised and flattened on read (`eaglectl.checkpoint.speculators`).
- sglang-ready: an `hf`-style directory SGLang loads completely as it is (what `eaglectl export` writes).
- specforge-training: SpecForge >= 0.2's `specforge train` output, `<run>-step<N>/training_state.pt` (the weights
  are the payload's `draft_state_dict`) with the draft config found beside the run or given (`--draft-config`);
  the run dir, a step dir, `<run>-latest` / `<run>-best` or the state file itself (`eaglectl.checkpoint.specforge`).
  The older SpecForge dirs (`epoch_<E>/`, `epoch_<E>_step_<S>/`: config.json + model.safetensors beside an
  optimizer-only training_state.pt) are `hf` dirs.
- a Hugging Face repo id (`namespace/name`, one that reads as no local path: `eaglectl.hub`) is fetched into the
  Hub cache (only a drafter's files) and classified as any directory; `hub` is the layout of one `inspect` reads
  remotely instead (config.json, meta and safetensors headers; no weight data).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglectl.checkpoint import EPOCH_DIR, LEGACY_EPOCH_DIR
from eaglectl.checkpoint import specforge as sf
from eaglectl.checkpoint.arrays import array_kind, as_numpy
from eaglectl.checkpoint.weights import (
    BIN_INDEX,
    MAX_SHARDS,
    SAFETENSORS_INDEX,
    WeightSet,
    open_weights,
    read_index,
)
from eaglectl.engines.sglang import rules
from eaglectl.enums import Algorithm, Layout
from eaglectl.errors import CheckpointError, ConfigError, UsageError
from eaglectl.hub import HubSource, expand_user, hub_id
from eaglectl.jsonfile import config_int, read_json_object

META_NAMES = ("eagle_meta.pt", "eagle3_meta.pt", "eagle1_meta.pt")
LEGACY_WEIGHTS = "draft_model.pt"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt")
OWN_NAMES = ("config.json", "model", LEGACY_WEIGHTS, *WEIGHT_FILES, SAFETENSORS_INDEX, BIN_INDEX, *META_NAMES)

# Config keys eaglectl and SGLang compute with. Required ones have no usable default; the upper bounds stop a
# hostile value from turning into a layer loop or a vocab-sized allocation that never ends.
REQUIRED_DIMS = ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")
OPTIONAL_DIMS = ("num_hidden_layers", "num_key_value_heads", "head_dim", "draft_vocab_size", "target_hidden_size",
                 "max_position_embeddings", "num_aux_hidden_states")
NULLABLE_DIMS = frozenset(("num_key_value_heads", "head_dim", "draft_vocab_size", "target_hidden_size",
                           "max_position_embeddings", "num_aux_hidden_states"))
MAX_LAYERS = 4096  # decoder layers of a drafter or of its target (the deepest released models have ~200)
# Aux hidden states are distinct target layers, so no more of them than layers; SGLang's loader builds one
# fc_norm per aux state, so an unchecked count is a loop that never ends.
DIM_LIMITS = {"num_hidden_layers": MAX_LAYERS, "num_aux_hidden_states": MAX_LAYERS, "vocab_size": 2**24,
              "draft_vocab_size": 2**24}
MAX_DIM = 2**31 - 1
AUX_ID_KEYS = ("eagle_aux_hidden_state_layer_ids", "aux_layer_ids", "aux_hidden_state_layer_ids")
# Switches the engines branch on by truthiness (a config attribute in `if`): `"false"` is a non-empty string, so
# SGLang and vLLM would take it as true where eaglectl's checks, which compare with `True`, take it as false.
# (`use_aux_hidden_state` is not among them: the replay reads it by truthiness, as SGLang does.)
BOOL_KEYS = ("tie_word_embeddings", "norm_before_residual", "norm_before_fc", "fc_norm", "norm_output",
             "use_aux_norm", "parallel_drafting")


@dataclass
class Meta:
    """The vocab metadata a NeMo recipe writes beside the weights."""

    path: Path
    selected_token_ids: Any = field(default=None, repr=False, metadata={"internal": True})  # int64 numpy array
    selected_token_mask: Any = field(default=None, repr=False, metadata={"internal": True})  # bool numpy array
    draft_vocab: int | None = None
    vocab: int | None = None
    keys: list[str] = field(default_factory=list)
    aux_layer_ids: list[int] | None = None
    loaded: bool = True  # False: only found (resolve(load_meta=False)); `load_meta` reads it


@dataclass
class Checkpoint:
    """A resolved drafter: where everything is, its config as a plain dict, and its tensors (lazily)."""

    source: str
    layout: Layout
    root: Path | None = None  # the directory the user means (outer epoch dir for consolidated)
    model_dir: Path | None = None  # the directory holding config.json + weights
    config_path: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    weights: WeightSet | None = field(default=None, repr=False)
    meta: Meta | None = None
    hub_id: str | None = None
    hub: HubSource | None = None  # where a Hub drafter came from (its cache is a source: never written into)
    # The config as written, when it is not SGLang's flat form (speculators): `config` is then the flattened
    # view every check reads, `config_notes` says what the flattening did, `config_problem` why it is incomplete.
    config_format: str = "hf"
    raw_config: dict[str, Any] | None = field(default=None, repr=False)
    config_notes: list[str] = field(default_factory=list)
    config_problem: str | None = None
    training: sf.TrainingState | None = None  # a SpecForge training checkpoint's state (step, run, provenance)

    @property
    def is_remote(self) -> bool:
        """Read from the Hub as headers: no tensor data here (only `inspect` asks for that)."""
        return self.layout is Layout.hub


def resolve(path: str | os.PathLike[str], *, load_meta: bool = True, revision: str | None = None,
            headers_only: bool = False, draft_config: str | None = None) -> Checkpoint:
    """Classify `path` and open its config, weight headers and meta file. A Hub repo id is fetched first (only
    the files a drafter needs, at `revision`); with `headers_only` a safetensors repo is read remotely instead,
    when the Hub can be reached. `draft_config`: the config of a checkpoint that keeps none (SpecForge >= 0.2
    training checkpoints; refused for one that has its own)."""
    source = os.fspath(path)
    p = expand_user(source)
    try:
        exists = p.exists()
        p.stat() if p.is_symlink() else None
    except OSError as exc:  # symlink loops, permission problems on a parent
        raise CheckpointError(f"{source}: cannot access ({exc.strerror or exc})") from exc
    if not exists:
        if p.is_symlink():
            raise CheckpointError(f"{source}: broken symlink")
        return _resolve_hub(source, hub_id(source), revision, load_meta=load_meta, headers_only=headers_only,
                            draft_config=draft_config)
    if revision is not None:
        raise UsageError(f"{source}: --revision applies to a Hugging Face repo id; this is a local path")
    return _resolve_local(source, p, load_meta=load_meta, draft_config=draft_config)


def _resolve_hub(source: str, repo_id: str, revision: str | None, *, load_meta: bool,
                 headers_only: bool, draft_config: str | None = None) -> Checkpoint:
    from eaglectl import hub
    from eaglectl.checkpoint.weights import remote_weights

    remote = hub.drafter_headers(repo_id, revision, max_shards=MAX_SHARDS) if headers_only else None
    if remote is None:
        src = hub.fetch_drafter(repo_id, revision)
        assert src.snapshot is not None
        ckpt = _resolve_local(source, src.snapshot, load_meta=load_meta, draft_config=draft_config)
        ckpt.hub_id, ckpt.hub = repo_id, src
        return ckpt
    if draft_config is not None:
        raise UsageError(f"--draft-config {draft_config}: {repo_id} has its own config.json; --draft-config is for "
                         f"SpecForge training checkpoints, which keep none")
    ckpt = Checkpoint(source, Layout.hub, config_path=remote.config_path, hub_id=repo_id, hub=remote.source)
    _read_config(ckpt)
    ckpt.weights = remote_weights(remote.headers, remote.index_file, remote.weight_map)
    if remote.meta_path is not None:
        ckpt.meta = read_meta(remote.meta_path) if load_meta else Meta(path=remote.meta_path, loaded=False)
    return ckpt


def _resolve_local(source: str, p: Path, *, load_meta: bool, draft_config: str | None = None) -> Checkpoint:
    if p.is_file():
        if (p.name in (LEGACY_WEIGHTS, "config.json", sf.STATE_FILE) or p.name in WEIGHT_FILES
                or p.suffix == ".safetensors"):
            p = p.parent
        else:
            raise CheckpointError(f"{source}: expected a checkpoint directory, got a file")
    if not os.access(p, os.R_OK | os.X_OK):
        raise CheckpointError(f"{source}: directory is not readable")
    try:
        ckpt = _classify(source, p.resolve())
        if draft_config is not None and ckpt.layout is not Layout.specforge_training:
            raise UsageError(f"--draft-config {draft_config}: {source} has its own config ({ckpt.config_path}); "
                             f"--draft-config is for SpecForge training checkpoints, which keep none")
        _open(ckpt, load_meta=load_meta, draft_config=draft_config)
    except OSError as exc:  # anything the specific checks did not foresee: still one line, naming the path
        raise CheckpointError(f"{exc.filename or source}: cannot access ({exc.strerror or exc})") from exc
    return ckpt


def _has_weights(d: Path) -> bool:
    return any((d / n).is_file() for n in (*WEIGHT_FILES, SAFETENSORS_INDEX, BIN_INDEX)) or any(
        d.glob("*.safetensors"))


def check_links(d: Path, names: tuple[str, ...] = OWN_NAMES) -> None:
    """Name a looping or dangling symlink, or a FIFO / device / directory where a file belongs, among a
    checkpoint's own files. Taken for an absent file, it would silently change what the checkpoint is (a
    previous export in model/ found instead, a meta file skipped)."""
    for name in (*names, *(e.name for e in d.glob("*.safetensors"))):
        entry = d / name
        try:
            st = entry.stat()
        except FileNotFoundError:
            if entry.is_symlink():
                raise CheckpointError(f"{entry}: broken symlink") from None
            continue
        except OSError as exc:
            what = "symlink loop" if exc.errno == errno.ELOOP else f"cannot access ({exc.strerror or exc})"
            raise CheckpointError(f"{entry}: {what}") from exc
        if name != "model" and not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{entry}: not a regular file")


def _classify(source: str, p: Path) -> Checkpoint:
    check_links(p)
    if (p / LEGACY_WEIGHTS).is_file():
        return Checkpoint(source, Layout.nemo_legacy, root=p, model_dir=p, config_path=p / "config.json")
    inner = p / "model"
    if (p / "config.json").is_file() and _has_weights(p):
        meta_beside = any((p.parent / m).is_file() for m in META_NAMES)
        if p.name == "model" and (meta_beside or EPOCH_DIR.match(p.parent.name)):
            return Checkpoint(source, Layout.nemo_consolidated, root=p.parent, model_dir=p,
                              config_path=p / "config.json")
        return Checkpoint(source, Layout.hf, root=p, model_dir=p, config_path=p / "config.json")
    if inner.is_dir():
        if not os.access(inner, os.R_OK | os.X_OK):
            raise CheckpointError(f"{inner}: directory is not readable")
        check_links(inner)
        if (inner / "config.json").is_file():
            return Checkpoint(source, Layout.nemo_consolidated, root=p, model_dir=inner,
                              config_path=inner / "config.json")
    if sf.is_step_dir(p):  # SpecForge >= 0.2: the weights in training_state.pt, the config elsewhere
        check_links(p, (sf.STATE_FILE,))
        return Checkpoint(source, Layout.specforge_training, root=p, model_dir=p)
    latest = latest_epoch_dir(p)
    if latest is None:
        latest = sf.newest_step(p)  # a SpecForge >= 0.2 run dir: its -latest link, else its highest step
    if latest is not None:  # a training run's output dir: take its newest checkpoint
        return _classify(source, latest)
    if _has_weights(p) and not (p / "config.json").exists():
        raise CheckpointError(f"{source}: weights but no config.json (a drafter checkpoint keeps its config "
                              f"beside its weights)")
    try:
        entries = sorted(e.name for e in p.iterdir())[:6]
    except OSError as exc:
        raise CheckpointError(f"{source}: cannot list directory ({exc.strerror or exc})") from exc
    if not entries:
        raise CheckpointError(f"{source}: empty directory")
    raise CheckpointError(
        f"{source}: not a drafter checkpoint (found {', '.join(entries)}; expected config.json with "
        f"model.safetensors / pytorch_model.bin, draft_model.pt, an epoch_<E>_step_<S>/model/ directory or a "
        f"SpecForge <run>-step<N>/training_state.pt)", hint=_below_hint(source, checkpoints_below(p)))


MAX_BELOW_ENTRIES = 64  # entries of a directory (and of each of its subdirectories) looked at for a checkpoint below


def checkpoints_below(d: Path) -> list[tuple[str, str]]:
    """(name, what it is) of the subdirectories of `d` that hold a checkpoint eaglectl reads: a SpecForge training
    run's top folder holds its `output/`, a NeMo job's folder its run dir. Cheap and bounded: at most
    `MAX_BELOW_ENTRIES` entries of `d` and of each subdirectory, a few fixed names checked in each, nothing deeper;
    an unreadable entry is passed over (this only feeds a hint)."""
    found: list[tuple[str, str]] = []
    for entry in _first_entries(d):
        try:
            if entry.is_dir():
                what = _what_checkpoint(Path(entry.path))
                if what is not None:
                    found.append((entry.name, what))
        except OSError:
            continue
    return sorted(found)


def _first_entries(d: Path) -> list[os.DirEntry[str]]:
    entries: list[os.DirEntry[str]] = []
    try:
        with os.scandir(d) as it:
            for entry in it:
                if len(entries) >= MAX_BELOW_ENTRIES:
                    break
                entries.append(entry)
    except OSError:
        pass
    return entries


def _what_checkpoint(d: Path) -> str | None:
    """What `d` is, if it is a checkpoint or a training run's output dir eaglectl resolves (None: neither)."""
    if (d / LEGACY_WEIGHTS).is_file():
        return "a draft_model.pt checkpoint"
    if (d / "config.json").is_file() and any((d / n).is_file() for n in (*WEIGHT_FILES, SAFETENSORS_INDEX, BIN_INDEX)):
        return "a drafter checkpoint"
    if (d / "model" / "config.json").is_file():
        return "a NeMo checkpoint"
    if sf.is_step_dir(d):
        return "a SpecForge training checkpoint"
    for entry in _first_entries(d):
        if (EPOCH_DIR.match(entry.name) or LEGACY_EPOCH_DIR.match(entry.name)) and entry.is_dir():
            return "a training run of epoch_<E>_step_<S> checkpoints"
        if (entry.name.endswith("-latest") and entry.is_symlink()) or (
                sf.STEP_DIR.match(entry.name) and entry.is_dir() and sf.is_step_dir(Path(entry.path))):
            return "a SpecForge training run"
    return None


def _below_hint(source: str, below: list[tuple[str, str]]) -> str | None:
    """Where the checkpoint is, when it is one level down: named as the path to pass instead."""
    if not below:
        return None
    from eaglectl.output import shell_quote

    def path(name: str) -> str:
        return shell_quote(os.path.join(source, name))

    if len(below) == 1:
        name, what = below[0]
        return f"{name}/ below it holds {what}: point at {path(name)}"
    listed = ", ".join(f"{name}/ ({what})" for name, what in below[:4])
    more = f" and {len(below) - 4} more" if len(below) > 4 else ""
    return f"checkpoints one level down: {listed}{more}; point at one of them, e.g. {path(below[0][0])}"


def latest_epoch_dir(d: Path) -> Path | None:
    """The newest `epoch_<E>_step_<S>` subdirectory (by epoch, then step), as NeMo and SpecForge before 0.2 number
    them; when there is none, the newest `epoch_<E>` (SpecForge 0.1 saves one at the end of each epoch)."""
    steps: list[tuple[tuple[int, int], Path]] = []
    epochs: list[tuple[tuple[int, int], Path]] = []
    try:
        for entry in d.iterdir():
            m = EPOCH_DIR.match(entry.name)
            # a dangling link counts (and is named when chosen): passed over, an older checkpoint would be exported
            # as the newest without a word
            if m and (entry.is_dir() or _dangling(entry)):
                steps.append(((int(m.group(1)), int(m.group(2))), entry))
            elif (m := LEGACY_EPOCH_DIR.match(entry.name)) and (entry.is_dir() or _dangling(entry)):
                epochs.append(((int(m.group(1)), 0), entry))
    except OSError:
        return None
    found = max(steps or epochs, default=None, key=lambda item: item[0])
    if found and _dangling(found[1]):
        raise CheckpointError(f"{found[1]}: broken symlink (to {os.readlink(found[1])}), the newest checkpoint of "
                              f"{d}", hint="fix or remove the link, or point at the checkpoint you mean")
    return found[1] if found else None


def _dangling(p: Path) -> bool:
    return p.is_symlink() and not p.exists()


def weight_files(d: Path) -> tuple[list[Path], Path | None, dict[str, str] | None]:
    """The weight files of a directory as SGLang reads them (engines.sglang.rules.WEIGHT_FILES): safetensors
    first, with the shard index and its weight map when there is one."""
    if (d / SAFETENSORS_INDEX).is_file():
        files, weight_map = read_index(d / SAFETENSORS_INDEX)
        return files, d / SAFETENSORS_INDEX, weight_map
    names = [p.name for p in d.glob("*.safetensors") if p.is_file()]
    if names:  # every one of them, as SGLang reads them (a stray file beside model.safetensors is loaded too)
        return [d / n for n in rules.weight_files_read(names, None)], None, None
    if (d / BIN_INDEX).is_file():
        files, weight_map = read_index(d / BIN_INDEX)
        return files, d / BIN_INDEX, weight_map
    for name in ("pytorch_model.bin", "model.pt"):
        if (d / name).is_file():
            return [d / name], None, None
    raise CheckpointError(f"{d}: no weight file (model.safetensors, pytorch_model.bin or a sharded index)")


def _open(ckpt: Checkpoint, *, load_meta: bool, draft_config: str | None = None) -> None:
    if ckpt.layout is Layout.specforge_training:
        _open_specforge(ckpt, draft_config)
        return
    assert ckpt.model_dir is not None and ckpt.config_path is not None
    if not ckpt.config_path.is_file():
        raise CheckpointError(f"{ckpt.model_dir}: missing config.json")
    _read_config(ckpt)
    if ckpt.layout is Layout.nemo_legacy:
        files, index, weight_map = [ckpt.model_dir / LEGACY_WEIGHTS], None, None
    else:
        files, index, weight_map = weight_files(ckpt.model_dir)
    ckpt.weights = open_weights(files, index)
    if index is not None and weight_map is not None:
        _check_index(ckpt.weights, index, weight_map)
    meta_dir = ckpt.root if ckpt.layout is Layout.nemo_consolidated else ckpt.model_dir
    if meta_dir:
        check_links(meta_dir, META_NAMES)
    meta_path = find_meta(meta_dir) if meta_dir else None
    if meta_path and load_meta:
        ckpt.meta = read_meta(meta_path)
    elif meta_path:
        ckpt.meta = Meta(path=meta_path, loaded=False)


def _open_specforge(ckpt: Checkpoint, draft_config: str | None) -> None:
    """A SpecForge >= 0.2 step: the weights from its training_state.pt (weights-only, mapped), the config from
    `draft_config` or beside the run, the aux ids the run captured from its provenance record."""
    assert ckpt.model_dir is not None
    state_path = ckpt.model_dir / sf.STATE_FILE
    tensors, state = sf.read_training_state(state_path)
    ckpt.training = state
    if state.capture_layers is not None and (problem := aux_ids_problem(state.capture_layers)):
        raise CheckpointError(f"{state_path}: {sf.PROVENANCE_KEY} capture_layers {problem}")
    ckpt.weights = open_weights([state_path], loaded={state_path: tensors})
    choice = sf.find_draft_config(ckpt.model_dir, state, draft_config)
    ckpt.config_path = choice.path
    _read_config(ckpt)
    notes = [f"SpecForge training checkpoint (step {state.step if state.step is not None else '?'}"
             f"{f' of run {state.run_id}' if state.run_id else ''}): weights from {sf.STATE_FILE}, config from "
             f"{choice.how} ({choice.path})", *state.notes]
    if (dropped := sf.sglang_dialect(ckpt.config, state)) is not None:
        notes.append(dropped)
    if sf.config_changed(choice.path, state.draft_config_sha256):
        notes.append(f"{choice.path} differs from the draft config the run hashed (sha256 "
                     f"{state.draft_config_sha256[:12] if state.draft_config_sha256 else '?'}...): it changed since "
                     f"training")
    capture = state.capture_layers
    recorded = aux_layer_ids_of(ckpt.config)
    if capture is not None and (recorded is None or sorted(recorded) != sorted(capture)):
        eagle_cfg = ckpt.config.get("eagle_config")
        ckpt.config["eagle_config"] = {**(eagle_cfg if isinstance(eagle_cfg, dict) else {}),
                                       "eagle_aux_hidden_state_layer_ids": list(capture)}
        notes.append(f"eagle_config.eagle_aux_hidden_state_layer_ids: {recorded!r} -> {list(capture)!r} (the layers "
                     f"the run captured, from {sf.STATE_FILE}'s provenance record"
                     + ("; the draft config names others" if recorded is not None else "") + ")")
    ckpt.config_notes = [*notes, *ckpt.config_notes]


def load_meta(ckpt: Checkpoint) -> None:
    """Read a meta file `resolve(load_meta=False)` only found (a torch pickle: this imports torch)."""
    if ckpt.meta is not None and not ckpt.meta.loaded:
        ckpt.meta = read_meta(ckpt.meta.path)


def _read_config(ckpt: Checkpoint) -> None:
    """The config as written, its flat view (speculators configs are flattened) and its sanity checks."""
    from eaglectl.checkpoint.speculators import normalise

    assert ckpt.config_path is not None
    raw = read_json_object(ckpt.config_path)
    norm = normalise(raw, str(ckpt.config_path))
    ckpt.config = norm.config
    if norm.format != "hf":
        ckpt.config_format, ckpt.raw_config = norm.format, raw
        ckpt.config_notes, ckpt.config_problem = norm.notes, norm.problem
    check_config(ckpt.config, ckpt.config_path)


def check_config(cfg: dict[str, Any], path: Path) -> None:
    """Refuse configs whose sizes are not sane integers: a string "64", a null layer count or an absurd vocab
    would otherwise surface as a misleading shape report, or as a loop / allocation that never ends."""
    for key in REQUIRED_DIMS:
        if key not in cfg:
            raise ConfigError(f"{path}: missing {key}")
    for key in (*REQUIRED_DIMS, *OPTIONAL_DIMS):
        if key not in cfg or (cfg[key] is None and key in NULLABLE_DIMS):
            continue
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{path}: {key} must be a positive integer, got {_short(value)}")
        limit = DIM_LIMITS.get(key, MAX_DIM)
        if value > limit:
            raise ConfigError(f"{path}: {key} {value} is implausibly large (at most {limit})")
    archs = cfg.get("architectures")
    if archs is not None and not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
        raise ConfigError(f"{path}: architectures must be a list of strings, got {_short(archs)}")
    eagle_cfg = cfg.get("eagle_config")
    for where, holder in (("", cfg), ("eagle_config.", eagle_cfg if isinstance(eagle_cfg, dict) else {})):
        for key in BOOL_KEYS:
            if holder.get(key) is not None and not isinstance(holder[key], bool):
                raise ConfigError(f"{path}: {where}{key} must be true or false, got {_short(holder[key])} (SGLang and "
                                  f"vLLM would read it by its truthiness)")
        for key in AUX_ID_KEYS:
            if holder.get(key) is not None:
                # the top-level key export writes for vLLM is in vLLM's numbering (SGLang id + 1): one more value
                vllm = not where and key == "eagle_aux_hidden_state_layer_ids"
                problem = aux_ids_problem(holder[key], end=MAX_LAYERS + 1 if vllm else MAX_LAYERS)
                if problem:
                    raise ConfigError(f"{path}: {where}{key} {problem}")


def aux_ids_problem(value: Any, *, end: int = MAX_LAYERS) -> str | None:
    """Why `value` is not a list of aux-layer ids (target layer indices below `end`), or None. Booleans are
    refused: JSON `true` is no layer, and SGLang would capture layer 1 for it."""
    if not isinstance(value, (list, tuple)):
        return f"must be a list of layer indices, got {_short(value)}"
    if len(value) > MAX_LAYERS:
        return f"lists {len(value)} layers (at most {MAX_LAYERS})"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f"must be integer layer indices, got {_short(list(value))}"
    if any(not 0 <= v < end for v in value):
        return f"must be layer indices in [0, {end}), got {_short(list(value))}"
    return None


def aux_layer_ids_of(config: dict[str, Any]) -> list[int] | None:
    """Aux layer ids recorded in a config, wherever a trainer put them."""
    eagle_cfg = config.get("eagle_config")
    candidates = [eagle_cfg.get("eagle_aux_hidden_state_layer_ids") if isinstance(eagle_cfg, dict) else None,
                  config.get("eagle_aux_hidden_state_layer_ids"), config.get("aux_hidden_state_layer_ids")]
    for value in candidates:
        if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_index(ws: WeightSet, index: Path, weight_map: dict[str, str]) -> None:
    for name, shard in weight_map.items():
        info = ws.tensors.get(name)
        if info is None:
            raise CheckpointError(f"{index}: lists tensor {name!r} but no shard holds it")
        if info.file.name != shard:
            raise CheckpointError(f"{index}: says {name!r} is in {shard} but it is in {info.file.name}")


def find_meta(d: Path) -> Path | None:
    """`eagle_meta.pt` first, then the legacy names, as NeMo's own loader does."""
    for name in META_NAMES:
        if (d / name).is_file():
            return d / name
    return None


def read_meta(path: Path) -> Meta:
    """The vocab metadata in a meta file: token ids and mask as numpy arrays. A plain `torch.save` dict is read
    without torch (`small_pickle`: importing torch costs more than copying a 2 GB head); anything else with
    `torch.load(weights_only=True, mmap=True)`, whose checks and errors then apply."""
    from eaglectl.checkpoint.small_pickle import read_plain_torch_zip
    from eaglectl.checkpoint.weights import MAX_VIEW_FACTOR, check_nesting, check_torch_zip, load_pickle

    obj = read_plain_torch_zip(path, MAX_VIEW_FACTOR * max(check_torch_zip(path), 1))
    if obj is None:
        obj = load_pickle(path)
    else:
        check_nesting(obj, path)  # as load_pickle does: the values below are named in messages
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: meta file holds a {type(obj).__name__}, not a dict")
    meta = Meta(path=path, keys=sorted(map(str, obj)))
    ids = obj.get("selected_token_ids")
    if ids is not None:
        if array_kind(ids) != "int" or as_numpy(ids).ndim != 1:
            raise CheckpointError(f"{path}: selected_token_ids must be a 1-D integer tensor")
        meta.selected_token_ids = as_numpy(ids).astype("int64")
        meta.draft_vocab = int(meta.selected_token_ids.size)
    mask = obj.get("selected_token_mask")
    if mask is not None:
        if array_kind(mask) not in ("int", "bool") or as_numpy(mask).ndim != 1:
            raise CheckpointError(f"{path}: selected_token_mask must be a 1-D bool (or integer) tensor")
        meta.selected_token_mask = as_numpy(mask).astype(bool)
        meta.vocab = int(meta.selected_token_mask.size)
    for key in AUX_ID_KEYS:
        value = obj.get(key)
        if value is None:
            continue
        if array_kind(value) is not None:
            array = as_numpy(value)
            if array.ndim != 1 or array_kind(value) != "int":
                raise CheckpointError(f"{path}: {key} must be a 1-D integer tensor of layer indices, "
                                      f"got {_dtype_name(value)} {list(array.shape)}")
            if array.size > MAX_LAYERS:
                raise CheckpointError(f"{path}: {key} lists {array.size} layers (at most {MAX_LAYERS})")
            value = array.tolist()
        problem = aux_ids_problem(value)
        if problem:
            raise CheckpointError(f"{path}: {key} {problem}")
        meta.aux_layer_ids = list(value)
        break
    return meta


def _dtype_name(value: Any) -> str:
    return str(value.dtype).removeprefix("torch.")


def detect_algorithm(ckpt: Checkpoint) -> tuple[Algorithm | None, str]:
    """EAGLE3 vs EAGLE from the weights (fc width, attention input width), else from `architectures`."""
    from eaglectl.checkpoint.names import parse_name

    cfg, ws = ckpt.config, ckpt.weights
    hidden = config_int(cfg, "hidden_size")
    if ws is not None:
        fc = next((t for n, t in ws.tensors.items() if parse_name(n).base == "fc.weight"), None)
        q = next((t for n, t in ws.tensors.items()
                  if parse_name(n).layer == 0 and parse_name(n).suffix == "self_attn.q_proj.weight"), None)
        h = hidden or (fc.shape[0] if fc is not None and len(fc.shape) == 2 else None)
        if q is not None and h and len(q.shape) == 2 and q.shape[1] == 2 * h:
            return Algorithm.EAGLE3, f"layer-0 attention input is 2×hidden ({q.shape[1]})"
        if fc is not None and len(fc.shape) == 2 and h:
            t_hidden = config_int(cfg, "target_hidden_size", h)
            if fc.shape[1] == 2 * h and fc.shape[0] == h and t_hidden == h:
                return Algorithm.EAGLE, f"fc is 2×hidden → hidden ({fc.shape[1]} → {fc.shape[0]})"
            if fc.shape[1] % 3 == 0 and fc.shape[0] == h:
                return Algorithm.EAGLE3, f"fc is 3×target_hidden → hidden ({fc.shape[1]} → {fc.shape[0]})"
    archs = cfg.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        if "eagle3" in archs[0].lower():
            return Algorithm.EAGLE3, f"architectures says {archs[0]}"
        if "eagle" in archs[0].lower():
            return Algorithm.EAGLE, f"architectures says {archs[0]}"
    return None, "no fc weight and no EAGLE architecture name"


def is_p_eagle(ckpt: Checkpoint) -> str | None:
    """Why this is a P-EAGLE (parallel drafting) head, or None."""
    from eaglectl.checkpoint.names import is_p_eagle_tensor

    if ckpt.config.get("parallel_drafting") is True:
        return "config has parallel_drafting: true"
    if ckpt.config.get("mask_token_id") is not None:
        return "config has mask_token_id"
    if ckpt.weights is not None:
        hit = next((n for n in ckpt.weights.tensors if is_p_eagle_tensor(n)), None)
        if hit:
            return f"weights hold {hit}"
    return None
