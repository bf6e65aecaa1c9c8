"""What an export would write: the canonical config, every output tensor and every dropped input tensor.

`inspect` and `export` share this plan, so what inspect promises is exactly what export does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from eaglectl.checkpoint.names import canonical_name, is_p_eagle_tensor, layer_indices, parse_name
from eaglectl.checkpoint.resolve import Checkpoint, aux_layer_ids_of, detect_algorithm
from eaglectl.checkpoint.weights import FLOAT_DTYPES, nbytes
from eaglectl.engines.sglang.architectures import own_loader
from eaglectl.engines.sglang.loader import class_default_sizes
from eaglectl.enums import Algorithm, ExportFormat, canonical_dtype
from eaglectl.errors import CheckpointError, ConfigError, UnsupportedDraftError
from eaglectl.export.config_rewrite import rewrite_config
from eaglectl.jsonfile import config_int

DTYPE_CODE = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}  # safetensors codes
NO_PARAMETER = "no SGLang Llama EAGLE parameter takes it"  # why a stored name the grammar does not know is dropped
# d2t (draft -> target id offsets) and t2d (target -> in draft vocab) are indices / flags: never floats.
INDEX_DTYPES = {"d2t": frozenset(("I8", "I16", "I32", "I64", "U8")),
                "t2d": frozenset(("I8", "I16", "I32", "I64", "U8", "BOOL"))}


@dataclass
class PlannedTensor:
    name: str  # output name
    dtype: str  # output dtype code
    shape: tuple[int, ...]
    source: str | None = None  # stored name; None when generated
    generated: str | None = None  # how a generated tensor was built
    vllm_only: bool = False  # a second copy under the name vLLM reads (SGLang serves the head the same without it)

    @property
    def nbytes(self) -> int:
        return nbytes(self.dtype, self.shape)

    @property
    def renamed(self) -> bool:
        return self.source is not None and self.source != self.name


@dataclass
class DroppedTensor:
    name: str
    reason: str


@dataclass
class ExportPlan:
    algorithm: Algorithm
    algorithm_reason: str
    config: dict[str, Any]
    config_changes: list[str]
    num_layers: int
    tensors: list[PlannedTensor]
    dropped: list[DroppedTensor]
    token_map_source: str | None  # where SGLang's speculative_token_map.pt would come from
    generated: dict[str, Any] = field(default_factory=dict, repr=False, metadata={"internal": True})
    selected_ids: Any = field(default=None, repr=False, metadata={"internal": True})
    # the config changes only vLLM reads: a directory needing no others is SGLang-ready as it is
    vllm_only: list[str] = field(default_factory=list, repr=False, metadata={"internal": True})
    format: ExportFormat = ExportFormat.sglang

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for t in self.tensors}

    @property
    def renames(self) -> dict[str, str]:
        """Stored name -> output name, for the tensors whose name changes."""
        return {t.source: t.name for t in self.tensors if t.source and t.renamed}

    @property
    def generated_from(self) -> dict[str, str]:
        """Output name -> how it was built, for the tensors the export generates."""
        return {t.name: t.generated for t in self.tensors if t.generated}

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def identity(self) -> bool:
        """True when the output would hold exactly the input tensors under the same names and dtypes (the copies
        only vLLM reads aside)."""
        return not self.dropped and not self.generated and not any(t.renamed for t in self.tensors
                                                                   if not t.vllm_only)

    def sglang_part(self, config: dict[str, Any]) -> ExportPlan:
        """This plan without what only vLLM reads, over `config`: what a directory SGLang loads as it is must hold."""
        import dataclasses

        return dataclasses.replace(self, config=config, tensors=[t for t in self.tensors if not t.vllm_only])


def choose_algorithm(ckpt: Checkpoint, requested: Algorithm | None) -> tuple[Algorithm, str]:
    detected, reason = detect_algorithm(ckpt)
    if requested is None:
        if detected is None:
            raise CheckpointError(f"{ckpt.source}: cannot tell EAGLE from EAGLE-3 ({reason}); pass --algorithm")
        return detected, reason
    if detected is not None and detected is not requested:
        raise UnsupportedDraftError(
            f"--algorithm {requested.value} contradicts the weights: this is an {detected.value} head ({reason}); "
            f"SGLang would serve it with accept length ~1.0 and no error",
            hint=f"use --algorithm {detected.value}")
    return requested, reason if detected else "given with --algorithm"


@dataclass
class StoredTensors:
    """The stored tensors' part of a plan: what each becomes (name, dtype, shape) or why it is dropped. Read from
    names, headers and the config alone: no tensor data, no torch."""

    algorithm: Algorithm
    algorithm_reason: str
    passthrough: bool  # a non-Llama head SGLang loads with its own loader: names and class kept
    num_layers: int
    tensors: list[PlannedTensor]
    dropped: list[DroppedTensor]


def plan_stored_tensors(ckpt: Checkpoint, *, algorithm: Algorithm | None = None, dtype: str = "keep",
                        drop_embeddings: bool = False, fmt: ExportFormat = ExportFormat.sglang) -> StoredTensors:
    """Name, dtype and shape of every stored tensor in the output (or why it is dropped)."""
    dtype = canonical_dtype(dtype) or "keep"  # any spelling of eaglectl's dtype vocabulary
    assert ckpt.weights is not None
    algo, reason = choose_algorithm(ckpt, algorithm)
    infos = ckpt.weights.tensors
    cfg = ckpt.config
    # A non-Llama EAGLE head SGLang loads with its own loader keeps its names and class: only the config fixes
    # below apply to it.
    passthrough = own_loader(cfg) is not None
    if fmt is ExportFormat.speculators:
        if algo is not Algorithm.EAGLE3 or passthrough:
            own = own_loader(cfg)
            what = f"a {own.name} head" if own is not None else f"an {algo.value} head"
            raise UnsupportedDraftError(f"{ckpt.source}: --format speculators writes Llama-style EAGLE-3 heads; this "
                                        f"is {what}", hint="export it without --format (SGLang's layout)")
        return _speculators_tensors(ckpt, algo, reason, dtype, drop_embeddings)
    num_layers = (config_int(cfg, "num_hidden_layers", 1) or 1) if passthrough else _layer_count(ckpt, infos)

    tensors: list[PlannedTensor] = []
    dropped: list[DroppedTensor] = []
    seen: dict[str, str] = {}
    # Layers >= 1 of SGLang's EAGLE-3 head normalise their input with hidden_norm and never read input_layernorm
    # (llama_eagle3.py LlamaDecoderLayer.forward, 0.5.12+): a head trained with input_layernorm there (speculators'
    # multi-layer heads) has its weight written as hidden_norm.
    with_hidden_norm = {p.layer for p in map(parse_name, infos) if p.suffix == "hidden_norm.weight"}
    # vLLM's layers >= 1 apply input_layernorm instead (llama_eagle3.py LlamaDecoderLayer.forward): where a later
    # layer stores only one of the two, it is written under both names, so both engines apply the trained norm.
    with_input_norm = {p.layer for p in map(parse_name, infos) if p.suffix == "input_layernorm.weight"}
    mirror = algo is Algorithm.EAGLE3 and not passthrough
    for name, info in infos.items():
        parsed = parse_name(name)
        if (algo is Algorithm.EAGLE3 and not passthrough and parsed.layer and parsed.layer not in with_hidden_norm
                and parsed.suffix == "input_layernorm.weight"):
            parsed = parse_name(f"layers.{parsed.layer}.hidden_norm.weight")
        if is_p_eagle_tensor(name):
            dropped.append(DroppedTensor(name, "P-EAGLE tensor; SGLang has no parallel-drafting support"))
            continue
        if not parsed.known and not passthrough:
            dropped.append(DroppedTensor(name, NO_PARAMETER))
            continue
        if parsed.base == "embed_tokens.weight" and drop_embeddings:
            dropped.append(DroppedTensor(name, "--drop-embeddings: SGLang uses the target's embeddings"))
            continue
        if algo is Algorithm.EAGLE and parsed.base in ("d2t", "t2d"):
            dropped.append(DroppedTensor(name, "EAGLE reads the hot vocab from --speculative-token-map, not d2t"))
            continue
        out = name if passthrough else canonical_name(parsed, algorithm=algo, num_layers=num_layers)
        if out in seen:
            raise CheckpointError(f"{ckpt.source}: tensors {seen[out]!r} and {name!r} both map to {out!r}")
        seen[out] = name
        out_dtype = _output_dtype(ckpt, name, info, parsed.base, dtype,
                                  "; SGLang loads it into a floating-point parameter (an integer matrix is quantised "
                                  "data eaglectl cannot dequantise)", t2d_bools=True)
        tensors.append(PlannedTensor(out, out_dtype, info.shape, source=name))
        if mirror and parsed.layer and (parsed.layer in with_hidden_norm) != (parsed.layer in with_input_norm):
            other = {"hidden_norm.weight": "input_layernorm.weight"}.get(parsed.suffix)
            if other is not None:
                tensors.append(PlannedTensor(f"layers.{parsed.layer}.{other}", out_dtype, info.shape, source=name,
                                             vllm_only=parsed.layer in with_hidden_norm))
    return StoredTensors(algo, reason, passthrough, num_layers, tensors, dropped)


def _layer_count(ckpt: Checkpoint, infos: dict[str, Any]) -> int:
    """How many decoder layers the weights hold, numbered 0..N-1 (refused otherwise)."""
    layers = layer_indices(infos)
    if not layers:
        raise CheckpointError(f"{ckpt.source}: no decoder-layer weights (self_attn / mlp) found")
    if layers != list(range(len(layers))):
        raise CheckpointError(f"{ckpt.source}: decoder layers {layers} are not numbered 0..{len(layers) - 1}")
    return len(layers)


def _output_dtype(ckpt: Checkpoint, name: str, info: Any, base: str, dtype: str, not_float: str, *,
                  t2d_bools: bool = False) -> str:
    """The dtype a stored tensor is written in: a token map keeps its integer dtype (a float one is refused rather
    than truncated), a float weight takes `--dtype` or keeps its own, an integer weight only converts when asked."""
    if base in ("d2t", "t2d"):
        if info.dtype not in INDEX_DTYPES[base]:
            raise CheckpointError(f"{ckpt.source}: {name} has dtype {info.dtype}; a token map holds integer "
                                  f"ids{' or bools' if t2d_bools and base == 't2d' else ''} (refused rather than "
                                  f"truncated)")
        return str(info.dtype)
    if info.dtype in FLOAT_DTYPES:
        return DTYPE_CODE.get(dtype, info.dtype)
    if dtype in DTYPE_CODE:
        return DTYPE_CODE[dtype]  # asked for: integer values converted to the float type given
    raise UnsupportedDraftError(f"{ckpt.source}: {name} has dtype {info.dtype}{not_float}",
                                hint="pass --dtype bf16 (or fp16 / fp32) to convert the values as they are")


def _speculators_tensors(ckpt: Checkpoint, algo: Algorithm, reason: str, dtype: str,
                         drop_embeddings: bool) -> StoredTensors:
    """The stored tensors under speculators' names (speculators 0.9 Eagle3DraftModel, which vLLM reads the same):
    `layers.N.*` always; layers >= 1 carry their pre-attention norm as input_layernorm (both projects' later layers
    apply it; neither has a hidden_norm there); P-EAGLE's mask_hidden kept as [1, 1, N]."""
    assert ckpt.weights is not None
    infos = ckpt.weights.tensors
    layers = range(_layer_count(ckpt, infos))
    with_input_norm = {p.layer for p in map(parse_name, infos) if p.suffix == "input_layernorm.weight"}
    tensors: list[PlannedTensor] = []
    dropped: list[DroppedTensor] = []
    seen: dict[str, str] = {}
    for name, info in infos.items():
        parsed = parse_name(name)
        base, shape = parsed.base, info.shape
        if is_p_eagle_tensor(name):
            if base.rsplit(".", 1)[-1] != "mask_hidden":
                dropped.append(DroppedTensor(name, "no speculators P-EAGLE parameter takes it"))
                continue
            base, shape = "mask_hidden", (1, 1, math.prod(info.shape))  # speculators' shape; vLLM reads view(1, -1)
        elif not parsed.known:
            dropped.append(DroppedTensor(name, "no speculators Eagle3DraftModel parameter takes it"))
            continue
        elif parsed.layer and parsed.suffix == "hidden_norm.weight":
            if parsed.layer in with_input_norm:
                dropped.append(DroppedTensor(name, "layers >= 1 apply input_layernorm in speculators and vLLM; their "
                                                   "hidden_norm is never read"))
                continue
            base = f"layers.{parsed.layer}.input_layernorm.weight"
        elif parsed.base == "embed_tokens.weight" and drop_embeddings:
            dropped.append(DroppedTensor(name, "--drop-embeddings: vLLM and speculators use the target's"))
            continue
        if base in seen:
            raise CheckpointError(f"{ckpt.source}: tensors {seen[base]!r} and {name!r} both map to {base!r}")
        seen[base] = name
        out_dtype = _output_dtype(ckpt, name, info, parsed.base, dtype, ", not a floating-point weight")
        tensors.append(PlannedTensor(base, out_dtype, tuple(shape), source=name))
    return StoredTensors(algo, reason, False, len(layers), tensors, dropped)


def _draft_vocab(cfg: dict[str, Any], tensors: list[PlannedTensor]) -> int | None:
    """The draft vocab the config or the stored lm_head says, before any meta file is read."""
    vocab = config_int(cfg, "vocab_size")
    lm_head = next((t for t in tensors if t.name == "lm_head.weight"), None)
    draft_vocab = config_int(cfg, "draft_vocab_size")
    if draft_vocab is None and lm_head is not None and vocab and lm_head.shape[0] < vocab:
        draft_vocab = lm_head.shape[0]
    return draft_vocab


def predict_tensors(ckpt: Checkpoint, *, algorithm: Algorithm | None = None, dtype: str = "keep",
                    drop_embeddings: bool = False,
                    fmt: ExportFormat = ExportFormat.sglang) -> list[PlannedTensor] | None:
    """The plan's tensor list as `build_plan` will make it, from names, headers and the config alone, while the
    meta file is still unread (an export starts copying with it): `d2t` / `t2d` built from a meta take the
    sizes the config gives, which the meta must match or the plan is refused. None when the sizes depend on the
    meta's contents (no draft vocab in the config or the weights)."""
    if ckpt.weights is None or ckpt.weights.remote or fmt is not ExportFormat.sglang:
        return None
    stored = plan_stored_tensors(ckpt, algorithm=algorithm, dtype=dtype, drop_embeddings=drop_embeddings)
    tensors = list(stored.tensors)
    names = {t.name for t in tensors}
    meta = ckpt.meta
    if stored.algorithm is Algorithm.EAGLE3 and meta is not None:
        if meta.loaded and meta.selected_token_ids is None:
            pass  # the meta holds no ids: nothing is generated from it
        else:
            draft_vocab = _draft_vocab(ckpt.config, tensors)
            if draft_vocab is None and meta.loaded:
                draft_vocab = meta.draft_vocab
            if draft_vocab is None:
                return None
            vocab = config_int(ckpt.config, "vocab_size")
            if "d2t" not in names:
                tensors.append(PlannedTensor("d2t", "I64", (draft_vocab,), generated="meta"))
            if "t2d" not in names and vocab:
                tensors.append(PlannedTensor("t2d", "BOOL", (vocab,), generated="meta"))
    tensors.sort(key=lambda t: t.name)
    return tensors


def build_plan(ckpt: Checkpoint, *, algorithm: Algorithm | None = None, dtype: str = "keep",
               drop_embeddings: bool = False, aux_layer_ids: list[int] | None = None,
               fmt: ExportFormat = ExportFormat.sglang, verifier: str | None = None) -> ExportPlan:
    """Plan the SGLang-ready form of `ckpt` (`fmt` speculators: speculators' form, for vLLM). Raises when the weights
    cannot make a servable head. `aux_layer_ids`: the ids to write for an EAGLE-3 head that records none (without
    them SGLang derives the capture from whichever target it serves, not the one the head was trained on).
    `verifier`: the target's Hub id or path, written into a speculators config."""
    import numpy as np

    dtype = canonical_dtype(dtype) or "keep"  # any spelling of eaglectl's dtype vocabulary
    assert ckpt.weights is not None
    stored = plan_stored_tensors(ckpt, algorithm=algorithm, dtype=dtype, drop_embeddings=drop_embeddings, fmt=fmt)
    algo, reason, passthrough, num_layers = stored.algorithm, stored.algorithm_reason, stored.passthrough, \
        stored.num_layers
    tensors, dropped = list(stored.tensors), list(stored.dropped)
    generated: dict[str, Any] = {}
    infos = ckpt.weights.tensors
    cfg = ckpt.config

    vocab = config_int(cfg, "vocab_size")
    lm_head = next((t for t in tensors if t.name == "lm_head.weight"), None)
    draft_vocab = _draft_vocab(cfg, tensors)
    meta = ckpt.meta
    if draft_vocab is None and meta is not None and meta.draft_vocab is not None and algo is Algorithm.EAGLE3:
        draft_vocab = meta.draft_vocab

    selected = None
    token_map_source = None
    names = {t.name for t in tensors}
    d2t_name = next((n for n in infos if parse_name(n).base == "d2t"), None)
    if meta is not None and meta.selected_token_ids is not None:
        selected = meta.selected_token_ids
        token_map_source = f"selected_token_ids in {meta.path.name}"
    elif d2t_name is not None and not ckpt.weights.remote:  # a header read from the Hub has no values here
        d2t_info = infos[d2t_name]
        if d2t_info.dtype not in INDEX_DTYPES["d2t"] or len(d2t_info.shape) != 1:
            raise CheckpointError(f"{ckpt.source}: {d2t_name} is {d2t_info.dtype}{list(d2t_info.shape)}; d2t is a "
                                  f"1-D tensor of integer id offsets (refused rather than truncated)")
        d2t = ckpt.weights.load_array(d2t_name).astype(np.int64)  # integer dtypes: numpy has them all
        selected = d2t + np.arange(d2t.size, dtype=np.int64)
        token_map_source = f"d2t in the weights ({d2t_name})"
    if selected is not None:
        validate_selected_ids(selected, vocab=vocab, draft_vocab=draft_vocab if algo is Algorithm.EAGLE3 else None,
                              where=token_map_source or "")

    if algo is Algorithm.EAGLE3 and selected is not None and meta is not None and meta.selected_token_ids is not None:
        if "d2t" not in names:
            generated["d2t"] = d2t_from_ids(selected)
            tensors.append(PlannedTensor("d2t", "I64", (selected.size,), generated=token_map_source))
        if "t2d" not in names and vocab:
            if meta.selected_token_mask is not None and meta.selected_token_mask.size == vocab:
                t2d = np.ascontiguousarray(meta.selected_token_mask, dtype=bool)
            else:
                t2d = t2d_from_ids(selected, vocab)
            generated["t2d"] = t2d
            tensors.append(PlannedTensor("t2d", "BOOL", (vocab,), generated=token_map_source))

    fc = next((t for t in tensors if t.name == "fc.weight"), None)
    aux_ids = aux_layer_ids_of(cfg) or (meta.aux_layer_ids if meta else None)
    if aux_layer_ids is not None:
        aux_ids = pinned_aux_ids(aux_ids, list(aux_layer_ids), algo, passthrough)
    n_aux = len(aux_ids) if aux_ids else 3
    hidden = config_int(cfg, "hidden_size")
    target_hidden = None
    if algo is Algorithm.EAGLE3 and fc is not None and len(fc.shape) == 2 and fc.shape[1] % n_aux == 0:
        target_hidden = fc.shape[1] // n_aux
        if target_hidden == hidden:
            target_hidden = None  # SGLang's default; keep the config minimal
    written_vocab, vocab_why = draft_vocab, ""
    if written_vocab is None and algo is Algorithm.EAGLE3 and not passthrough:
        if lm_head is not None and cfg.get("tie_word_embeddings") is not True:
            written_vocab = lm_head.shape[0]
            vocab_why = ("the stored lm_head's rows: with draft_vocab_size null SGLang replaces the trained lm_head "
                         "with the target's")
        elif cfg.get("tie_word_embeddings") is True and vocab:
            written_vocab, vocab_why = vocab, "tied: SGLang sizes the draft's vocab from it"
    vllm_only: list[str] = []
    new_cfg, changes = rewrite_config(
        cfg, algorithm=algo, num_layers=None if passthrough else num_layers, draft_vocab=written_vocab,
        draft_vocab_why=vocab_why,
        target_hidden=target_hidden, aux_layer_ids=aux_ids if algo is Algorithm.EAGLE3 and not passthrough else None,
        dtype=dtype if dtype != "keep" else None, keep_architecture=passthrough,
        untie=_untie_reason(cfg, algo, lm_head, vocab, draft_vocab), vllm_only=vllm_only,
        sizes=({k: stored for k, (_, stored) in class_default_sizes(cfg, {t.name: t.shape for t in tensors}).items()}
               if algo is Algorithm.EAGLE3 and not passthrough else None))
    if fmt is ExportFormat.speculators:
        new_cfg, changes = _as_speculators(ckpt, new_cfg, aux_ids, num_layers, tensors, dropped, generated, selected,
                                           verifier)
        vllm_only = []
    tensors.sort(key=lambda t: t.name)
    return ExportPlan(algo, reason, new_cfg, [*ckpt.config_notes, *changes], num_layers, tensors, dropped,
                      token_map_source, generated=generated, selected_ids=selected, vllm_only=vllm_only, format=fmt)


def _as_speculators(ckpt: Checkpoint, flat: dict[str, Any], aux_ids: list[int] | None, num_layers: int,
                    tensors: list[PlannedTensor], dropped: list[DroppedTensor], generated: dict[str, Any],
                    selected: Any, verifier: str | None) -> tuple[dict[str, Any], list[str]]:
    """The speculators form of a plan made for SGLang: its config, and d2t / t2d both present (a reduced draft
    vocabulary) or both gone (a full one: speculators builds neither, vLLM refuses a d2t)."""
    from eaglectl.export.speculators_format import kind_of, to_speculators

    vocab = config_int(flat, "vocab_size")
    draft_vocab = config_int(flat, "draft_vocab_size") or vocab
    names = {t.name for t in tensors}
    if draft_vocab == vocab:
        for t in [t for t in tensors if t.name in ("d2t", "t2d")]:
            tensors.remove(t)
            generated.pop(t.name, None)
            if t.source is not None:
                dropped.append(DroppedTensor(t.source, "a full-vocabulary head: speculators has no d2t / t2d, vLLM "
                                                       "refuses a d2t"))
    elif selected is not None and vocab:
        if "d2t" not in names:
            generated["d2t"] = d2t_from_ids(selected)
            tensors.append(PlannedTensor("d2t", "I64", (int(selected.size),), generated="the draft's token ids"))
        if "t2d" not in names:
            generated["t2d"] = t2d_from_ids(selected, vocab)
            tensors.append(PlannedTensor("t2d", "BOOL", (vocab,), generated="the draft's token ids (d2t)"))
    fc = next((t for t in tensors if t.name == "fc.weight"), None)
    kind = kind_of(ckpt.config, list(names))
    return to_speculators(flat, kind=kind, aux_ids=aux_ids, num_layers=num_layers,
                          fc_width=fc.shape[1] if fc is not None and len(fc.shape) == 2 else None, verifier=verifier)


def pinned_aux_ids(recorded: list[int] | None, given: list[int], algo: Algorithm, passthrough: bool) -> list[int]:
    """The ids `--aux-layer-ids` pins, checked: they name what the head was trained on, so they may add ids to a
    head that records none but never change recorded ones."""
    if algo is not Algorithm.EAGLE3 or passthrough:
        raise ConfigError(f"--aux-layer-ids is for Llama-style EAGLE-3 heads; this head is "
                          f"{'served by its own SGLang loader' if passthrough else algo.value}")
    if len(set(given)) != len(given) or min(given) < 0:
        raise ConfigError(f"--aux-layer-ids {given}: the ids must be distinct and not negative")
    given = sorted(given)  # SGLang captures in layer order whatever the order of the ids
    if recorded is not None and sorted(recorded) != given:
        raise ConfigError(f"the head records aux layer ids {list(recorded)}; --aux-layer-ids {given} would feed it "
                          f"other target layers than it was trained on", hint="drop --aux-layer-ids")
    return list(recorded) if recorded is not None else given


def _untie_reason(cfg: dict[str, Any], algo: Algorithm, lm_head: PlannedTensor | None, vocab: int | None,
                  draft_vocab: int | None) -> str | None:
    """Why `tie_word_embeddings: true` must become false for SGLang to serve the head as trained, if it must."""
    if cfg.get("tie_word_embeddings") is not True:
        return None
    if algo is Algorithm.EAGLE:
        return "SGLang's EAGLE start-up deletes a tied weight twice; the head comes from the target either way"
    reduced = vocab is not None and vocab != 0 and ((lm_head is not None and lm_head.shape[0] < vocab)
                                                    or (draft_vocab is not None and draft_vocab < vocab))
    if lm_head is not None and reduced:
        return f"the head's own lm_head.weight {list(lm_head.shape)} would be dropped for the tied embeddings"
    return None


def d2t_from_ids(ids: Any) -> Any:
    """SGLang's d2t for the draft's target ids (int64 numpy array): the offset of each draft row's target id."""
    import numpy as np

    return np.ascontiguousarray(ids - np.arange(ids.size, dtype=np.int64), dtype=np.int64)


def t2d_from_ids(ids: Any, vocab: int) -> Any:
    """t2d for the draft's target ids: a bool per target token, true for those in the draft vocab."""
    import numpy as np

    t2d = np.zeros(vocab, dtype=bool)
    t2d[ids] = True
    return t2d


def validate_selected_ids(ids: Any, *, vocab: int | None, draft_vocab: int | None, where: str) -> None:
    """A token map (an int64 numpy array) must be unique ids inside the target vocab, one per draft row."""
    import numpy as np

    n = int(ids.size)
    if n == 0:
        raise CheckpointError(f"{where}: empty selected token list")
    if draft_vocab is not None and n != draft_vocab:
        raise CheckpointError(f"{where}: {n} selected tokens but draft_vocab_size is {draft_vocab}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or (vocab is not None and hi >= vocab):
        raise CheckpointError(f"{where}: token ids must lie in [0, {vocab}); found range [{lo}, {hi}]")
    if int(np.unique(ids).size) != n:
        raise CheckpointError(f"{where}: selected token ids are not unique")
