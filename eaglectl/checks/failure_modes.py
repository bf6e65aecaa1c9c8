"""Checks for the ways users' EAGLE heads have been served wrong by SGLang without an error.

Each check reads a `HeadView` (a config, tensor names and shapes, and a way to load the small d2t tensor) and
returns findings. `inspect` runs them on the checkpoint as stored; `export` and `serve` run them on what the export
would write (`plan_view`): the mechanical fixes are already applied there, so an error left on the planned output
is a refusal. docs/failure-modes.md describes every mode, its source thread and what eaglectl does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eaglectl.checkpoint import specforge as sf
from eaglectl.checkpoint.arrays import as_numpy
from eaglectl.checkpoint.names import parse_name
from eaglectl.checkpoint.resolve import aux_layer_ids_of
from eaglectl.checkpoint.weights import readable_dtype
from eaglectl.checks.findings import Finding
from eaglectl.engines.sglang import aux_ids, rules
from eaglectl.engines.sglang.architectures import own_loader
from eaglectl.engines.sglang.loader import (
    DraftDims,
    class_default_sizes,
    default_rope_base,
    mlp_bias,
    original_context_fill,
    rope_only_in_parameters,
    rope_original_missing,
    simulate_load,
    unbuilt_reason,
)
from eaglectl.enums import Algorithm, Severity
from eaglectl.jsonfile import as_object, config_int
from eaglectl.output import shell_join

if TYPE_CHECKING:
    from eaglectl.checkpoint.resolve import Checkpoint
    from eaglectl.checkpoint.target import TargetInfo

MAX_D2T = 2**24  # the draft-vocab bound of check_config: d2t is read whole (int64, <= 128 MiB)


@dataclass(frozen=True)
class FailureMode:
    """One way a head is served wrong, as documented in docs/failure-modes.md."""

    code: str
    title: str
    sglang: str  # what SGLang does, with the file it does it in
    action: str  # "fixed by export" | "refused" | "warned" | "reported"


MODES: dict[str, FailureMode] = {m.code: m for m in (
    FailureMode("tied-lm-head", "tie_word_embeddings: true on a head with its own reduced lm_head",
                "llama_eagle3.py: lm_head = embed_tokens when tied; the stored lm_head.weight is dropped",
                "fixed by export"),
    FailureMode("tied-reduced-vocab", "tie_word_embeddings: true, a reduced draft vocab and no lm_head",
                "llama_eagle3.py: the tied [vocab, H] head is indexed through a draft-vocab d2t", "refused"),
    FailureMode("tied-embeddings", "tie_word_embeddings: true on an EAGLE-1 head",
                "llama_eagle.py: set_embed_and_head deletes the shared weight twice (AttributeError)",
                "fixed by export"),
    FailureMode("d2t-all-zero", "d2t present but all zeros with a reduced draft vocab",
                "llama_eagle3.py: hot_token_id = d2t + arange: draft id i is proposed as target id i", "refused"),
    FailureMode("t2d-mismatch", "t2d disagrees with d2t or with the vocab sizes",
                "llama_eagle3.py load_weights: t2d is skipped, only d2t is read; one of the two maps is stale",
                "warned"),
    FailureMode("draft-embeddings-missing", "draft narrower than the target without its own embed_tokens",
                "llama.py set_embed: target_hidden_size != hidden_size keeps the draft's (random) embeddings",
                "refused"),
    FailureMode("norm-before-residual", "norm_before_residual: true",
                "no SGLang release reads the key; the first layer keeps the raw hidden state as residual", "refused"),
    FailureMode("norm-before-fc", "norm_before_fc with input_norm.weight",
                "llama_eagle3.py 0.5.17+: input_norm applied; 0.5.9-0.5.16: key ignored, weight skipped",
                "kept by export, warned"),
    FailureMode("input-norm-missing", "norm_before_fc set but no input_norm.weight",
                "llama_eagle3.py 0.5.17+: input_norm keeps its initial weight of ones", "refused"),
    FailureMode("input-norm-unused", "input_norm.weight stored but norm_before_fc not set",
                "llama_eagle3.py: no input_norm parameter; the weight is skipped without a word", "refused"),
    FailureMode("speculators-format", "speculators-format config",
                "no Eagle3DraftModel class; dimensions missing at the top level; top-level aux ids ignored",
                "fixed by export"),
    FailureMode("speculators-aux-ids", "speculators aux ids that cannot be converted",
                "the target family's capture rule cannot name those layers", "refused"),
    FailureMode("target-hidden-size-null", "target_hidden_size: null",
                "llama_eagle3.py: hasattr() is true, fc is sized from None (start-up TypeError)",
                "fixed by export"),
    FailureMode("aux-ids-top-level", "aux ids at the top level only",
                "model_runner.py reads only eagle_config ids; the target captures its default layers",
                "fixed by export"),
    FailureMode("aux-layer-ids", "aux ids that SGLang never captures on this target",
                "set_eagle3_layers_to_capture per target family; a short capture breaks the fc width", "refused"),
    FailureMode("specforge-norm-output", "`norm_output` in a SpecForge training checkpoint's draft config",
                "SpecForge: the final norm before lm_head; llama_eagle3.py 0.5.12+: the normed state carried to the "
                "next draft step, lm_head always normed", "dropped by export, warned"),
    FailureMode("target-capture", "a target on which the draft fails or gets other hidden states in some releases",
                "set_eagle3_layers_to_capture missing or capturing nothing (Kimi-K2.5, Qwen3-VL, Qwen3.5, MiniMax-M3); "
                "the default capture kept under CUDA graphs through 0.5.10.post1 (model_runner.py)",
                "warned; serve refuses the release it would run on"),
    FailureMode("aux-ids-numbering", "aux ids that look like vLLM / HF hidden_states numbering",
                "SGLang ids count layer outputs (+1 before capture on Llama-style targets)", "warned"),
    FailureMode("aux-ids-unpinned", "no aux ids recorded, a config copied from a target of another depth",
                "eagle_utils / model_runner: no ids -> the default capture of the served target's layer count",
                "warned; --aux-layer-ids pins them"),
    FailureMode("sliding-window-ignored", "a sliding-window draft",
                "SGLang ignores the draft config's window; --speculative-draft-window-size sets one", "warned"),
    FailureMode("sglang-architecture", "a non-Llama EAGLE architecture SGLang serves with its own loader",
                "qwen2_eagle.py, mistral_eagle.py, kimi_k25_eagle3.py", "reported"),
    FailureMode("architecture-config", "a non-Llama EAGLE architecture missing a config key it requires",
                "the model class reads the key without a default (start-up failure)", "refused"),
    FailureMode("config-class-defaults", "a size the config leaves to its model_type's class, which differs",
                "AutoConfig picks the class by model_type: qwen3 head_dim 128, qwen2/qwen3 32 KV heads, qwen3_moe 4, "
                "llama4_text intermediate_size_mlp 16384; llama.py LlamaAttention reads them", "fixed by export"),
    FailureMode("weight-not-loaded", "a stored weight SGLang builds no parameter for",
                "llama_eagle3.py / llama_eagle.py load_weights: a name with no parameter is skipped without a word "
                "(q/k/v biases in EAGLE-3, biases the config does not switch on, EAGLE's layer-0 input norm)",
                "refused"),
    FailureMode("override-flag", "`serve -- FLAG` overriding a flag eaglectl sets",
                "argparse: the last occurrence of a flag wins (also `--flag=value` and unambiguous prefixes)",
                "refused"),
)}


@dataclass
class HeadView:
    """What the checks read: a config, canonical tensor names -> shapes, and a loader for small tensors."""

    config: dict[str, Any]
    algorithm: Algorithm | None
    shapes: dict[str, tuple[int, ...]]
    load: Callable[[str], Any] | None = field(default=None, repr=False)
    source: str = ""
    config_format: str = "hf"
    config_problem: str | None = None
    config_notes: list[str] = field(default_factory=list)
    planned: bool = False  # the export's output rather than the checkpoint as stored
    embeddings_dropped: bool = False  # the plan leaves them out because of --drop-embeddings
    unplaced: list[str] = field(default_factory=list)  # stored names the plan drops: no parameter takes them

    @property
    def export_cmd(self) -> str:
        return shell_join(["eaglectl", "export", self.source])


def checkpoint_view(ckpt: Checkpoint, algorithm: Algorithm | None) -> HeadView:
    assert ckpt.weights is not None
    ws = ckpt.weights
    stored = {parse_name(n).base: n for n in ws.tensors}

    def load(base: str) -> Any:  # None for a dtype torch cannot read (U32 d2t): the plan refuses it, by name
        info = ws.tensors[stored[base]]
        return ws.load_array(info.name) if readable_dtype(info.dtype) else None

    return HeadView(ckpt.config, algorithm, {b: ws.tensors[n].shape for b, n in stored.items()},
                    load=None if ws.remote else load, source=ckpt.source,
                    config_format=ckpt.config_format, config_problem=ckpt.config_problem,
                    config_notes=ckpt.config_notes)


# ------------------------------------------------------------------------------------------------------ checks
def _tied(v: HeadView) -> list[Finding]:
    cfg = v.config
    if cfg.get("tie_word_embeddings") is not True:
        return []
    if v.algorithm is Algorithm.EAGLE:
        return [Finding("tied-embeddings", Severity.error,
                        "tie_word_embeddings is true on an EAGLE head: SGLang makes lm_head the embedding module and "
                        "its set_embed_and_head then deletes the shared weight twice, so start-up fails with "
                        "AttributeError: 'VocabParallelEmbedding' object has no attribute 'weight' (SGLang PR #33964)",
                        f"run `{v.export_cmd}`: it writes tie_word_embeddings: false (an EAGLE head's lm_head comes "
                        f"from the target either way)")]
    if v.algorithm is not Algorithm.EAGLE3:
        return []
    vocab = config_int(cfg, "vocab_size")
    draft_vocab = config_int(cfg, "draft_vocab_size")
    lm = v.shapes.get("lm_head.weight")
    d2t = v.shapes.get("d2t")
    rows = lm[0] if lm else None
    reduced = vocab is not None and vocab != 0 and any(n is not None and n < vocab
                                                       for n in (rows, draft_vocab, d2t[0] if d2t else None))
    what = ("SGLang makes lm_head the embedding matrix (the target's, [vocab, hidden]) whenever "
            "tie_word_embeddings is true (llama_eagle3.py, every release)")
    if lm and reduced:
        return [Finding("tied-lm-head", Severity.error,
                        f"tie_word_embeddings is true but the head carries its own reduced lm_head.weight {list(lm)} "
                        f"(vocab {vocab}): {what} and drops the stored lm_head without a word, so drafts are "
                        f"scored over the wrong vocabulary (accept length ~1.0, or CUDA index errors)",
                        f"run `{v.export_cmd}`: it writes tie_word_embeddings: false and keeps lm_head.weight")]
    if reduced:
        return [Finding("tied-reduced-vocab", Severity.error,
                        f"tie_word_embeddings is true with a {draft_vocab or (d2t[0] if d2t else '?')}-token draft "
                        f"vocab (vocab {vocab}) and no lm_head.weight: {what}, which d2t then indexes as a "
                        f"draft-vocab head (garbage drafts or CUDA index errors)",
                        "re-export the head from training with its lm_head.weight [draft_vocab, hidden] and "
                        "tie_word_embeddings: false")]
    if lm:
        return [Finding("tied-lm-head", Severity.warning,
                        f"tie_word_embeddings is true and the head stores a full-vocab lm_head.weight {list(lm)}: "
                        f"{what} and ignores the stored one; right only if the head was trained tied",
                        f"if it was trained with its own lm_head, set tie_word_embeddings: false and "
                        f"draft_vocab_size: {vocab} in config.json")]
    return []


def _draft_vocab_size(v: HeadView) -> list[Finding]:
    """SGLang reads draft_vocab_size without a default, and with null replaces the head's own lm_head."""
    cfg = v.config
    if v.algorithm is not Algorithm.EAGLE3 or own_loader(cfg) is not None:
        return []
    vocab = config_int(cfg, "vocab_size")
    lm = v.shapes.get("lm_head.weight")
    if "draft_vocab_size" not in cfg:
        return [Finding("draft-vocab-size-missing", Severity.error,
                        f"config.json has no draft_vocab_size: SGLang reads it without a default and start-up fails "
                        f"with AttributeError, on every release ({rules.EAGLE3.draft_vocab_size_read.source})",
                        f"run `{v.export_cmd}`: it writes draft_vocab_size (the stored lm_head's rows, or null for "
                        f"a head without one)")]
    if cfg["draft_vocab_size"] is None and lm and cfg.get("tie_word_embeddings") is not True:
        if vocab and lm[0] != vocab:
            return [Finding("draft-vocab-size-null", Severity.error,
                            f"draft_vocab_size is null but lm_head.weight is {list(lm)}: SGLang then builds lm_head "
                            f"with vocab_size ({vocab}) rows and start-up fails in its weight loader "
                            f"(AssertionError, layers/vocab_parallel_embedding.py)",
                            f"run `{v.export_cmd}`: it writes draft_vocab_size: {lm[0]}")]
        return [Finding("lm-head-replaced", Severity.warning,
                        f"draft_vocab_size is null: SGLang loads the stored lm_head.weight {list(lm)} and then "
                        f"replaces it (and the embeddings) with the target's "
                        f"({rules.EAGLE3.lm_head_from_target.source}): the head's trained lm_head is not used",
                        f"run `{v.export_cmd}`: it writes draft_vocab_size: {lm[0]} so SGLang keeps the trained "
                        f"lm_head")]
    return []


def _rope(v: HeadView) -> list[Finding]:
    out = []
    missing = rope_original_missing(v.config, rules.OLDEST_SUPPORTED)
    if missing is not None:
        fixable = original_context_fill(v.config) is not None
        out.append(Finding("rope-original-missing", Severity.warning,
                           f"{missing}, which makes the context SGLang derives max_position_embeddings, not "
                           f"max_position_embeddings x factor",
                           f"run `{v.export_cmd}`: it writes original_max_position_embeddings as transformers 5 "
                           f"does" if fixable else "add original_max_position_embeddings to rope_scaling"))
    why = rope_only_in_parameters(v.config)
    if why is None:
        return out
    return [*out, Finding("rope-parameters-only", Severity.warning,
                          f"{why} (a config saved by transformers 5): SGLang 0.5.9, which pins transformers 4.57.1, "
                          f"reads only the top-level rope_theta / rope_scaling and runs the head with base "
                          f"{default_rope_base(v.config)} (llama.py LlamaDecoderLayer, no error); 0.5.10+ read "
                          f"rope_parameters",
                          f"run `{v.export_cmd}`: it writes rope_theta (and rope_scaling) beside rope_parameters")]


def _class_defaults(v: HeadView) -> list[Finding]:
    """Sizes SGLang takes from the draft config's model_type class (rules.MODEL_TYPE_DEFAULTS) that the weights
    contradict: q/k/v loads fail (RuntimeError), or gate/up/down load zero-padded or cut short without an error."""
    if v.algorithm is not Algorithm.EAGLE3 or own_loader(v.config) is not None:
        return []
    found = class_default_sizes(v.config, v.shapes)
    if not found:
        return []
    sizes = ", ".join(f"{k} (the {v.config.get('model_type')} default {d}; the weights hold {w})"
                      for k, (d, w) in found.items())
    return [Finding("config-class-defaults", Severity.error,
                    f"config.json has no {sizes}: SGLang builds the draft from the config class its model_type picks "
                    f"({rules.MODEL_TYPE_DEFAULTS.source}), so it fails to load the attention weights (RuntimeError) "
                    f"or loads the MLP zero-padded or cut short without an error",
                    f"run `{v.export_cmd}`: it writes {', '.join(f'{k}: {w}' for k, (_, w) in found.items())}")]


def _d2t(v: HeadView) -> list[Finding]:
    if v.algorithm is not Algorithm.EAGLE3 or "d2t" not in v.shapes or v.load is None:
        return []
    shape = v.shapes["d2t"]
    vocab = config_int(v.config, "vocab_size")
    if len(shape) != 1 or not vocab or shape[0] >= vocab or shape[0] > MAX_D2T:
        return []
    d2t_values = v.load("d2t")
    if d2t_values is None:
        return []
    d2t = as_numpy(d2t_values)
    if d2t.size == 0 or bool(d2t.any()):
        return []
    return [Finding("d2t-all-zero", Severity.error,
                    f"d2t holds only zeros for a {shape[0]}-token draft vocab (vocab {vocab}): a map that was never "
                    f"filled (SpecForge and speculators create it with torch.zeros). SGLang computes hot_token_id = "
                    f"d2t + arange, so draft token i is proposed as target token i: accept length ~1.0, no message",
                    "rebuild d2t from the token map the head was trained with (the training run's vocab mapping) "
                    "and save it in the weights; it cannot be recovered from the other tensors")]


def _t2d(v: HeadView) -> list[Finding]:
    """t2d (target id -> in the draft vocab) against the vocab, the draft vocab and d2t. SGLang never reads t2d,
    but a t2d that disagrees says one of the two maps is not the one the head was trained with, and SGLang serves
    with d2t whichever it is."""
    import numpy as np

    if v.algorithm is not Algorithm.EAGLE3 or "t2d" not in v.shapes or v.load is None:
        return []
    shape = v.shapes["t2d"]
    vocab = config_int(v.config, "vocab_size")
    d2t_shape = v.shapes.get("d2t")
    draft = d2t_shape[0] if d2t_shape and len(d2t_shape) == 1 else config_int(v.config, "draft_vocab_size")
    problems = []
    if len(shape) != 1:
        problems.append(f"t2d has shape {list(shape)}, not [vocab]")
    elif vocab and shape[0] != vocab:
        problems.append(f"t2d has {shape[0]} entries for a {vocab}-token vocab")
    t2d_values = v.load("t2d") if len(shape) == 1 and shape[0] <= MAX_D2T else None
    if t2d_values is not None:
        marked = as_numpy(t2d_values).reshape(-1) != 0
        count = int(marked.sum())
        if draft is not None and count != draft:
            problems.append(f"t2d marks {count} tokens as in the draft vocab, which has {draft}")
        d2t_values = (v.load("d2t") if d2t_shape is not None and len(d2t_shape) == 1 and 0 < d2t_shape[0] <= MAX_D2T
                      else None)
        if d2t_values is not None:
            d2t = as_numpy(d2t_values).reshape(-1).astype(np.int64)
            named = d2t + np.arange(d2t.size, dtype=np.int64)
            inside = named[(named >= 0) & (named < marked.size)]
            from_d2t = np.zeros_like(marked)
            from_d2t[inside] = True
            extra, missed = marked & ~from_d2t, from_d2t & ~marked
            if bool(extra.any()) or bool(missed.any()) or inside.size != named.size:
                first = int(np.flatnonzero(extra | missed)[0]) if bool((extra | missed).any()) else None
                problems.append(f"t2d marks {int(extra.sum())} target tokens d2t does not name and misses "
                                f"{int(missed.sum()) + named.size - inside.size} it names"
                                + (f" (first: target id {first})" if first is not None else ""))
    if not problems:
        return []
    return [Finding("t2d-mismatch", Severity.warning,
                    f"{'; '.join(problems)}. SGLang skips t2d and maps draft ids with d2t alone, so the head is "
                    f"served with d2t whichever map is right; if d2t is the stale one, drafts name the wrong target "
                    f"tokens (accept length ~1.0, no message)",
                    "check which vocab mapping the head was trained with (the training run's token map) and save "
                    "d2t and t2d from it")]


def _embeddings(v: HeadView) -> list[Finding]:
    cfg = v.config
    if v.algorithm is not Algorithm.EAGLE3:
        return []
    hidden, target_hidden = config_int(cfg, "hidden_size"), config_int(cfg, "target_hidden_size")
    if target_hidden is None or target_hidden == hidden or "embed_tokens.weight" in v.shapes:
        return []
    why = (f"target_hidden_size {target_hidden} != hidden_size {hidden}: SGLang does not share the target's "
           f"embeddings with a draft of another width (models/llama.py set_embed returns early) and uses the "
           f"draft's own embed_tokens")
    if v.embeddings_dropped:
        return [Finding("draft-embeddings-missing", Severity.error,
                        f"{why}; --drop-embeddings would leave them randomly initialised (accept length ~1.0)",
                        "export without --drop-embeddings")]
    return [Finding("draft-embeddings-missing", Severity.error,
                    f"{why}; this checkpoint has no embed_tokens.weight, so they stay randomly initialised (accept "
                    f"length ~1.0, no message)",
                    "export the head again with its embed_tokens.weight [vocab, hidden] (SpecForge's to_sglang drops "
                    "every key containing 'embed': take the training checkpoint instead)")]


def _flag(cfg: dict[str, Any], key: str) -> Any:
    """A flag SGLang >= 0.5.17 reads from eagle_config first, then from the top level."""
    eagle_cfg = cfg.get("eagle_config")
    if isinstance(eagle_cfg, dict) and key in eagle_cfg:
        return eagle_cfg[key]
    return cfg.get(key)


def _norms(v: HeadView) -> list[Finding]:
    cfg = v.config
    out = []
    if _flag(cfg, "norm_before_residual") is True:
        out.append(Finding("norm-before-residual", Severity.error,
                           "norm_before_residual is true (the head was trained with the normalised hidden state as "
                           "its residual, as speculators / vLLM can train): no SGLang release reads this key "
                           "(0.5.9-0.5.23), and SGLang's first layer keeps the raw hidden state as the residual, so "
                           "the served head computes something else than the trained one (lower accept length, no "
                           "message)",
                           f"serve it with vLLM, which honours norm_before_residual: `{v.export_cmd} --format "
                           f"speculators` writes the layout it reads (`eaglectl serve --engine vllm` serves it), or "
                           f"retrain with norm_before_residual: false"))
    if v.algorithm is not Algorithm.EAGLE3:
        return out
    before_fc = bool(_flag(cfg, "norm_before_fc"))
    weight = v.shapes.get("input_norm.weight")
    if before_fc and weight is not None:
        out.append(Finding("norm-before-fc", Severity.warning,
                           f"norm_before_fc with input_norm.weight {list(weight)}: SGLang 0.5.17+ applies it "
                           f"(llama_eagle3.py input_norm); 0.5.9-0.5.16 ignore norm_before_fc and skip "
                           f"input_norm.weight without a word (low acceptance, SGLang PR #32334)",
                           "serve with SGLang >= 0.5.17; eaglectl export keeps input_norm.weight and norm_before_fc"))
        expected = _fc_in(v)
        if expected and tuple(weight) != (expected,):
            out.append(Finding("shape", Severity.error,
                               f"input_norm.weight is {list(weight)} but SGLang builds it as [{expected}] "
                               f"(aux states x target hidden size)"))
    elif before_fc:
        out.append(Finding("input-norm-missing", Severity.error,
                           "norm_before_fc is set but there is no input_norm.weight: SGLang 0.5.17+ builds the "
                           "pre-fc RMSNorm and leaves its weight at the initial ones, not the trained values",
                           "export the head again with its input_norm.weight"))
    elif weight is not None:
        out.append(Finding("input-norm-unused", Severity.error,
                           f"input_norm.weight {list(weight)} is stored but norm_before_fc is not set: SGLang builds "
                           f"no pre-fc norm and skips the weight without a word, so the trained norm is not applied",
                           "set norm_before_fc: true in config.json if the head was trained with it (speculators and "
                           "ModelOpt write both), then serve with SGLang >= 0.5.17"))
    return out


def _fc_in(v: HeadView) -> int | None:
    fc = v.shapes.get("fc.weight")
    return fc[1] if fc and len(fc) == 2 else None


def _config_shape(v: HeadView) -> list[Finding]:
    cfg, out = v.config, []
    if "target_hidden_size" in cfg and cfg["target_hidden_size"] is None:
        out.append(Finding("target-hidden-size-null", Severity.error,
                           "target_hidden_size is null: SGLang tests hasattr(config, 'target_hidden_size'), takes "
                           "None as the width and fails at start-up building fc",
                           f"run `{v.export_cmd}`: it drops the key (the target width then equals hidden_size)"))
    if v.config_format == "speculators":
        notes = "; ".join(v.config_notes)
        out.append(Finding("speculators-format", Severity.error,
                           "speculators-format config (dimensions under transformer_layer_config, class "
                           "Eagle3DraftModel, aux ids at the top level in vLLM numbering): SGLang cannot load it "
                           "as it is (no such model class, no hidden_size at the top level) and its target capture "
                           "reads only eagle_config's ids",
                           f"run `{v.export_cmd}`: {notes}"))
    if v.config_problem:
        out.append(Finding("speculators-aux-ids", Severity.error, v.config_problem,
                           "set eagle_config.eagle_aux_hidden_state_layer_ids by hand in SGLang's numbering (layer "
                           "outputs; see docs/failure-modes.md)"))
    eagle_cfg = as_object(cfg.get("eagle_config"))
    top = cfg.get("eagle_aux_hidden_state_layer_ids")
    if (v.algorithm is Algorithm.EAGLE3 and top and v.config_format == "hf" and own_loader(cfg) is None
            and not eagle_cfg.get("eagle_aux_hidden_state_layer_ids")):
        out.append(Finding("aux-ids-top-level", Severity.error,
                           f"eagle_aux_hidden_state_layer_ids {top} sits at the top level: SGLang's target capture "
                           f"reads only eagle_config.eagle_aux_hidden_state_layer_ids, so it captures its default "
                           f"layers instead",
                           f"run `{v.export_cmd}`: it moves the ids into eagle_config"))
    eagle_ids = eagle_cfg.get("eagle_aux_hidden_state_layer_ids")
    if (v.algorithm is Algorithm.EAGLE3 and isinstance(top, list) and isinstance(eagle_ids, list) and eagle_ids
            and all(type(i) is int for i in (*top, *eagle_ids)) and sorted(top) != sorted(i + 1 for i in eagle_ids)):
        out.append(Finding("aux-ids-disagree", Severity.warning,
                           f"the config names aux layers twice and the two disagree: eagle_config's {eagle_ids} "
                           f"(SGLang's numbering: layer outputs; SGLang reads only these) and the top-level "
                           f"eagle_aux_hidden_state_layer_ids {top} (vLLM / speculators read these, counting layer "
                           f"inputs: SGLang id + 1 on Llama-style targets, so {[i + 1 for i in eagle_ids]} would "
                           f"match); the engines would feed the head different layers",
                           "keep the ids the head was trained with in eagle_config and write the top-level key as "
                           "those ids + 1 (or drop it)"))
    # What SGLang does instead of reading each: first-layer input norm on, final norm on, no MTP norm, one step.
    sglang_does = {"use_input_layernorm_in_first_layer": True, "use_last_layernorm": True,
                   "use_mtp_layernorm": False, "parallel_draft_step": 1}
    departs = [k for k in rules.EAGLE3.unread_eagle_config_keys.value
               if k in sglang_does and k in eagle_cfg and eagle_cfg[k] not in (None, sglang_does[k])]
    if v.algorithm is Algorithm.EAGLE3 and departs:
        out.append(Finding("eagle-config-unread", Severity.warning,
                           f"eagle_config sets {', '.join(f'{k}: {eagle_cfg[k]!r}' for k in departs)} (ModelOpt's "
                           f"switches): SGLang never reads them ({rules.EAGLE3.unread_eagle_config_keys.source}) "
                           f"and runs the head with the first layer's input norm and the final norm applied, no MTP "
                           f"norm and one draft step per position",
                           "serve with an engine that honours these keys, or retrain with ModelOpt's defaults"))
    layer_types = cfg.get("layer_types")
    sliding = cfg.get("use_sliding_window") is True or (
        isinstance(layer_types, list) and "sliding_attention" in layer_types)
    if sliding:
        window = cfg.get("sliding_window")
        out.append(Finding("sliding-window-ignored", Severity.warning,
                           f"the draft was trained with a sliding window ({window!r}); SGLang ignores the config's "
                           f"window and attends over the whole context unless told",
                           f"pass `-- --speculative-draft-window-size {window if isinstance(window, int) else 'N'}` "
                           f"to eaglectl serve (SGLang >= 0.5.12)"))
    return out


def _architecture(v: HeadView) -> list[Finding]:
    arch = own_loader(v.config)
    if arch is None:
        return []
    out = [Finding("sglang-architecture", Severity.info,
                   f"{arch.name}: SGLang (since {arch.since}) serves it with its own loader ({arch.source}): "
                   f"{arch.rules}. eaglectl keeps its names and config as they are and checked the config sizes, "
                   f"tie_word_embeddings, d2t, embeddings and norm flags; it does not replay this loader, so tensor "
                   f"names and shapes are not verified and the head is not called sglang-ready")]
    missing = [k for k in arch.required_keys if v.config.get(k) is None]
    if missing:
        out.append(Finding("architecture-config", Severity.error,
                           f"{arch.name} reads {', '.join(missing)} from the config without a default: SGLang fails "
                           f"at start-up", "add the keys the head was trained with to config.json"))
    if arch.single_layer and config_int(v.config, "num_hidden_layers", 1) != 1:
        out.append(Finding("architecture-config", Severity.error,
                           f"{arch.name} builds exactly one decoder layer; config says "
                           f"{v.config.get('num_hidden_layers')}"))
    return out


# Weights another check owns: input_norm.weight (input-norm-unused), a tied head's lm_head.weight (tied-lm-head).
_OWNED_ELSEWHERE = ("input_norm.weight", "lm_head.weight")


def _not_loaded(v: HeadView) -> list[Finding]:
    """Weights the export would write that SGLang's newest loader builds no parameter for: it drops them without a
    word and serves the head without what they trained. Read on the planned output, where names are SGLang's."""
    if not v.planned or v.algorithm is None or own_loader(v.config) is not None:
        return []
    sim = simulate_load(v.config, v.shapes, v.algorithm, rules.NEWEST_KNOWN)
    skipped = [n for n in sim.skipped if parse_name(n).known and parse_name(n).base not in _OWNED_ELSEWHERE]
    skipped += [n for n in v.unplaced if mlp_bias(parse_name(n).base)]  # trained weights the plan cannot place
    if not skipped:
        return []
    groups: dict[tuple[str, str | None], list[str]] = {}
    for name in skipped:
        groups.setdefault(unbuilt_reason(name, v.config, v.algorithm), []).append(name)
    why = "; ".join(f"{', '.join(names)}: {reason}" for (reason, _), names in groups.items())
    fixes = [fix for (_, fix) in groups if fix]
    return [Finding("weight-not-loaded", Severity.error,
                    f"SGLang would drop {len(skipped)} stored weight(s) without a word and serve the head without "
                    f"them: {why}", "; ".join(dict.fromkeys(fixes)) or None)]


CHECKS: tuple[Callable[[HeadView], list[Finding]], ...] = (_config_shape, _architecture, _draft_vocab_size, _rope,
                                                           _class_defaults, _tied, _d2t, _t2d, _embeddings, _norms,
                                                           _not_loaded)


def head_findings(v: HeadView) -> list[Finding]:
    """Every failure-mode finding for one view of a head (target-independent)."""
    return [f for check in CHECKS for f in check(v)]


# ------------------------------------------------------------------------------------------------------ aux ids
def unpinned_aux_findings(trained_depth: int | None, cfg: dict[str, Any], layers_in_weights: int | None,
                          algorithm: Algorithm | None, target: TargetInfo, *, exported: bool = False
                          ) -> list[Finding]:
    """A head that records no aux ids gets SGLang's default capture for the target it is served with. A config
    copied from the model the head was trained on (NeMo AutoModel's: `num_hidden_layers` stale, more than the
    layers in the weights) names that model's depth, `trained_depth`; on a target of another depth the defaults
    capture other layers than training did, and acceptance drops without an error. `cfg`: the config as SGLang
    gets it (ids pinned by export count); `exported`: the head is an eaglectl export (the fix is on its source)."""
    served_depth = target.num_layers
    if (algorithm is not Algorithm.EAGLE3 or not served_depth or not layers_in_weights or not trained_depth
            or aux_layer_ids_of(cfg) or trained_depth <= layers_in_weights or trained_depth == served_depth):
        return []
    family = aux_ids.family_of(target.model_type, target.architectures)
    served = aux_ids.captured(None, family, served_depth)
    trained = aux_ids.captured(None, family, trained_depth)
    ids = aux_ids.ids_for_capture_in_every_release(trained, family, served_depth)
    if ids and exported:
        fix = (f"if the head was trained on that model's default layers, export the checkpoint this export came "
               f"from again with --aux-layer-ids {' '.join(map(str, ids))}")
    elif ids:
        fix = (f"if the head was trained on that model's default layers, pin them: --aux-layer-ids "
               f"{' '.join(map(str, ids))} on export, or on every serve / bench of this checkpoint (each exports it "
               f"again)")
    else:
        fix = f"serve with the target the head was trained on ({trained_depth} layers)"
    if ids:
        fix += (f"; SGLang's ids count layer outputs, so {', '.join(map(str, ids))} capture the inputs of layers "
                f"{', '.join(map(str, trained))}")
    return [Finding("aux-ids-unpinned", Severity.warning,
                    f"the head records no aux layer ids, so SGLang captures its default for this {served_depth}-layer "
                    f"target (the inputs of layers {served}); its config names {trained_depth} layers "
                    f"(num_hidden_layers, {layers_in_weights} in the weights). A config copied from the training "
                    f"target, as NeMo AutoModel's are, means the head was trained on layers {trained}: it gets other "
                    f"hidden states here (lower acceptance, no error)", fix)]


def _valid_ids(cfg: dict[str, Any]) -> tuple[list[int] | None, Finding | None]:
    """The draft's aux-layer ids as the checks read them (eagle_config's, else wherever a trainer put them), or the
    finding that says why they are unusable."""
    ids = as_object(cfg.get("eagle_config")).get("eagle_aux_hidden_state_layer_ids") or aux_layer_ids_of(cfg)
    if ids is not None and not (isinstance(ids, list) and all(type(i) is int for i in ids)):
        return None, Finding("aux-layer-ids", Severity.error, f"aux layer ids {ids!r:.60} must be a list of integers")
    if ids and len(set(ids)) != len(ids):
        return None, Finding("aux-layer-ids", Severity.error, f"aux layer ids {ids} are not distinct")
    if ids and min(ids) < 0:
        return None, Finding("aux-layer-ids", Severity.error, f"aux layer ids {ids} must not be negative")
    return ids, None


def _merged(spans: list[tuple[str, str | None, Any]]) -> list[tuple[str, str | None, Any]]:
    """(first, last, value) of release spans in order, neighbours with the same value merged."""
    out: list[tuple[str, str | None, Any]] = []
    for first, last, value in spans:
        if out and out[-1][2] == value:
            out[-1] = (out[-1][0], last, value)
        else:
            out.append((first, last, value))
    return out


def _label(first: str, last: str | None) -> str:
    return first if last == first else f"{first}-{last}" if last is not None else f"{first}+"


def aux_id_findings(cfg: dict[str, Any], algorithm: Algorithm | None, target: TargetInfo) -> list[Finding]:
    """The draft's aux-layer ids against the target's family and depth, for every SGLang rule range (a range in
    which the target fails with any draft is `target_capture_findings`')."""
    num_layers = target.num_layers
    if algorithm is not Algorithm.EAGLE3 or not num_layers:
        return []
    family = aux_ids.family_of(target.model_type, target.architectures)
    ids, invalid = _valid_ids(cfg)
    if invalid is not None:
        return [invalid]
    spans = [(first, last, [c for c in aux_ids.captured(ids, family, num_layers, first)
                            if not aux_ids.reachable(c, family, num_layers, first)])
             for _, first, last in aux_ids.rule_ranges(family) if not aux_ids.fails(family, first)]
    merged = _merged(spans)
    failing = [(_label(first, last), lost) for first, last, lost in merged if lost]
    shown = ids if ids else f"none (default capture {aux_ids.captured(None, family, num_layers)})"
    out = []
    if failing:
        newest_fails = bool(merged[-1][2])
        if len(merged) == 1:
            ranges = f"no SGLang release ({merged[0][0]}+) captures layer input(s) {failing[0][1]}"
        else:
            ranges = ", ".join(f"SGLang {label} never captures layer input(s) {lost}" for label, lost in failing)
        msg = (f"aux layer ids {shown} on a {num_layers}-layer {family.value} target "
               f"({target.model_type or '?'}): {ranges} (the layer loop ends at {num_layers - 1}), so fewer hidden "
               f"states reach the draft than its fc expects (shape error at the first request)")
        works_from = None if newest_fails else merged[-1][0]
        out.append(Finding("aux-layer-ids", Severity.error if newest_fails else Severity.warning, msg,
                           _correction(ids, family, num_layers, works_from)))
    elif ids and aux_ids.adds_one(family) and list(ids) == [2, num_layers // 2, num_layers - 3]:
        fixed = [1, num_layers // 2 - 1, num_layers - 4]
        out.append(Finding("aux-ids-numbering", Severity.warning,
                           f"aux layer ids {ids} are vLLM's / speculators' default (input-to-layer numbering, HF "
                           f"hidden_states[k]); SGLang reads ids as layer outputs and captures one layer later",
                           f"if the head was trained with vLLM, speculators or HF hidden_states numbering, set "
                           f"eagle_config.eagle_aux_hidden_state_layer_ids to {fixed}"))
    return out


def _correction(ids: list[int] | None, family: aux_ids.Family, num_layers: int, works_from: str | None) -> str | None:
    if works_from is not None:
        return f"serve with SGLang >= {works_from}, whose {family.value} capture rule reaches these layers"
    if not ids:
        return None
    as_input = aux_ids.ids_for_capture(list(ids), family, num_layers)
    if as_input is not None and as_input != list(ids):
        return (f"if these ids count like vLLM / HF hidden_states (input to layer k), SGLang's ids for the same "
                f"layers are {as_input}")
    return (f"choose ids SGLang captures on this target (at most {aux_ids.highest_id(family, num_layers)} for a "
            f"{family.value} target)")


def _capture_problem(d: aux_ids.Delivery, cfg: dict[str, Any], release: str) -> tuple[str, bool] | None:
    """What goes wrong for the draft in one release (text with its source, and whether it fails rather than gets
    other hidden states), or None."""
    if d.failure is not None:
        return f"{d.failure.value} ({d.failure.source})", True
    if d.why is None:
        return None
    parts, fatal = [], False
    if d.eager != d.asked:
        takes = DraftDims.from_config(cfg).num_aux if rules.eagle3_loader(release).num_aux_from_config.value else 3
        fatal = len(d.eager) != takes
        parts.append(f"eager batches capture the inputs of layers {d.eager} instead of {d.asked}, the default's "
                     f"flags staying set ({len(d.eager)} states where fc takes {takes}"
                     + (": a shape error at the first request)" if fatal else ")"))
    if d.replayed != d.asked:
        parts.append(f"CUDA-graph-replayed batches capture the default layers' inputs {d.replayed} instead of "
                     f"{d.asked} (lower acceptance, no error)")
    return f"{'; '.join(parts)}: {d.why.value} ({d.why.source})", fatal


def target_capture_findings(cfg: dict[str, Any], algorithm: Algorithm | None, target: TargetInfo, *,
                            version: str | None = None, cuda_graph: bool = True) -> list[Finding]:
    """Where an EAGLE-3 draft fails on the target's family, or gets other hidden states than its ids ask for, per
    SGLang release range, with the release that fixes it (rules.CAPTURE_RULES, CAPTURE_ORDER). `version`: that
    release alone (serve's), where a failure is an error; `cuda_graph`: whether the target records CUDA graphs."""
    num_layers = target.num_layers
    if algorithm is not Algorithm.EAGLE3 or not num_layers:
        return []
    if as_object(cfg.get("eagle_config")).get("use_aux_hidden_state") is False:
        return []  # the target never asks for a capture
    ids, invalid = _valid_ids(cfg)
    if invalid is not None:
        return []  # aux_id_findings says why
    family = aux_ids.family_of(target.model_type, target.architectures)
    found = _merged([(first, last, _capture_problem(aux_ids.delivered(ids, family, num_layers, first,
                                                                        cuda_graph=cuda_graph), cfg, first))
                     for _, first, last in aux_ids.rule_ranges(family)])
    if version is not None and rules.release_key(version) and not rules.is_older_than_supported(version):
        found_here = [span for span in found if not rules.older(version, span[0])][-1:]
    else:
        version, found_here = None, found
    problems = [(first, last, p) for first, last, p in found_here if p is not None]
    if not problems:
        return []
    shown = ids if ids else "none (the default capture)"
    where = (f"SGLang {version}: {problems[0][2][0]}" if version is not None else
             "; ".join(f"SGLang {_label(first, last)}: {p[0]}" for first, last, p in problems))
    name = (target.architectures or [target.model_type or "?"])[0]
    msg = f"aux layer ids {shown} on this {num_layers}-layer {family.value} target ({name}): {where}"
    fixed = found[-1][0] if found[-1][2] is None else None
    fix = (f"serve with SGLang >= {fixed}" if fixed else "no SGLang release eaglectl knows serves it right")
    if all(aux_ids.rule(family, first).failure is None for first, _, _ in problems):
        fix += ", or with --disable-cuda-graph"
    if version is not None:  # the release that will serve it
        severity = Severity.error if problems[0][2][1] else Severity.warning
    elif fixed is None:
        severity = Severity.error if found[-1][2] is not None and found[-1][2][1] else Severity.warning
    else:  # older releases only: a failure there is a warning; other states only in graph replays, a note
        severity = Severity.warning if any(p[1] for _, _, p in problems) else Severity.info
    return [Finding("target-capture", severity, msg, fix)]


def specforge_findings(ckpt: Checkpoint) -> list[Finding]:
    """A SpecForge training checkpoint whose draft config set `norm_output`, which SGLang reads with another meaning
    (resolve took it out of the config: checkpoint.specforge.NORM_OUTPUT)."""
    if ckpt.training is None or "norm_output" not in ckpt.training.dropped:
        return []
    value = ckpt.training.dropped["norm_output"]
    trained = f"SpecForge {sf.RELEASE} reads as {sf.NORM_OUTPUT.value} ({sf.NORM_OUTPUT.source})"
    if value:
        carried = rules.eagle3_loader(rules.NEWEST_KNOWN).norm_output.source
        return [Finding("specforge-norm-output", Severity.warning,
                        f"the draft config sets norm_output: {value!r}, which {trained}; SGLang 0.5.12+ read it as "
                        f"handing the normed state to the next draft step ({carried}), so draft steps after the "
                        f"first would get inputs the head was not trained on",
                        "export writes the config without it (serve's export too): SGLang's default carries the "
                        "pre-norm state, as SpecForge trained")]
    return [Finding("specforge-norm-output", Severity.warning,
                    f"the draft config sets norm_output: {value!r}, which {trained}: the head was trained with "
                    f"lm_head on the un-normed state, while SGLang applies {rules.EAGLE3.logits_normed.value} "
                    f"({rules.EAGLE3.logits_normed.source}): its tokens differ from training's (lower acceptance, "
                    f"no error)", "train with norm_output true (SpecForge's default) or without the key")]
