"""A replay of SGLang's Llama EAGLE / EAGLE-3 weight loaders, driven by the rule tables in `rules.py`.

SGLang skips every weight name it does not recognise without a message and leaves parameters nothing
loaded at their random initial values. Replaying its name matching against a checkpoint's tensors tells,
before any GPU is involved, what a real load of a given release would consume, skip and leave
uninitialised, and which config keys that release ignores. Nothing here branches on a version number:
`simulate_load` asks `rules.eagle3_loader(version)` / `rules.eagle_loader(version)` for the release's table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from eaglectl.engines.sglang import rules
from eaglectl.enums import Algorithm
from eaglectl.jsonfile import as_object, config_int

SGLANG_VERSIONS = rules.RELEASES  # every known release; the last is the newest
NEWEST_KNOWN = rules.NEWEST_KNOWN
ARCHITECTURE = {Algorithm.EAGLE3: "LlamaForCausalLMEagle3", Algorithm.EAGLE: "LlamaForCausalLMEagle"}
ALGORITHM_OF_ARCHITECTURE = {v: k for k, v in ARCHITECTURE.items()}
D2T_LENGTH = "d2t has"  # how a d2t of another length than the draft vocab is named in `problems`
_FC_NORM_NAME = re.compile(r"(^|\.)(fc_norm\.\d+|aux_norm_(low|mid|high))\.")


def _truthy_key(cfg: dict[str, Any], key: str) -> bool:
    return bool(cfg.get(key))


def norm_before_fc(cfg: dict[str, Any]) -> bool:
    """The flag as SGLang (0.5.17+) reads it: `eagle_config.norm_before_fc` when that key exists, else the
    top-level key (rules.EAGLE3.norm_before_fc_keys)."""
    eagle_cfg = as_object(cfg.get("eagle_config"))
    return bool(eagle_cfg["norm_before_fc"] if "norm_before_fc" in eagle_cfg else cfg.get("norm_before_fc"))


@dataclass
class DraftDims:
    """The sizes SGLang reads from a draft config (with SGLang's own defaults)."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    draft_vocab: int | None
    target_hidden: int
    num_layers: int
    num_aux: int
    tie_embeddings: bool
    fc_bias: bool
    attention_bias: bool
    fc_norm: bool
    norm_before_fc: bool = False
    has_target_hidden: bool = False  # the key is present (SGLang tests hasattr, not the value)
    num_aux_configured: bool = False  # num_aux came from the config, not the default 3
    has_draft_vocab: bool = True  # the key is present (null counts: SGLang reads it without a default)
    aux_ids: tuple[int, ...] = ()  # eagle_config's, as listed

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> DraftDims:
        model_type = cfg.get("model_type")
        class_defaults = rules.MODEL_TYPE_DEFAULTS.value.get(model_type, {}) if isinstance(model_type, str) else {}

        def num(key: str, default: int | None = None) -> int | None:
            return config_int(cfg, key, class_defaults.get(key, default))

        hidden = num("hidden_size") or 0
        heads = num("num_attention_heads") or 1
        eagle_cfg = as_object(cfg.get("eagle_config"))
        aux_ids = eagle_cfg.get("eagle_aux_hidden_state_layer_ids")
        configured = num("num_aux_hidden_states") or (len(aux_ids) if isinstance(aux_ids, list) and aux_ids else None)
        return cls(
            hidden=hidden, heads=heads, kv_heads=num("num_key_value_heads") or heads,
            head_dim=num("head_dim") or (hidden // heads if heads else 0),
            intermediate=(num("intermediate_size_mlp") if model_type == "llama4_text" else num("intermediate_size"))
            or 0, vocab=num("vocab_size") or 0,
            draft_vocab=num("draft_vocab_size"), target_hidden=num("target_hidden_size") or hidden,
            num_layers=num("num_hidden_layers", 1) or 0, num_aux=configured or 3,
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)), fc_bias=_truthy_key(cfg, "bias"),
            attention_bias=any(_truthy_key(cfg, k) for k in rules.EAGLE3.o_proj_bias_keys.value),
            fc_norm=bool(cfg.get("fc_norm") or cfg.get("use_aux_norm")),
            norm_before_fc=norm_before_fc(cfg), has_target_hidden="target_hidden_size" in cfg,
            num_aux_configured=configured is not None, has_draft_vocab="draft_vocab_size" in cfg,
            aux_ids=tuple(i for i in aux_ids if type(i) is int) if isinstance(aux_ids, list) else (),
        )


def default_rope_base(cfg: dict[str, Any]) -> int:
    """The RoPE base a config without `rope_theta` gets: its model_type's config class default
    (rules.MODEL_TYPE_DEFAULTS), else SGLang's (rules.EAGLE3.rope_default_base)."""
    model_type = cfg.get("model_type")
    defaults = rules.MODEL_TYPE_DEFAULTS.value.get(model_type, {}) if isinstance(model_type, str) else {}
    return defaults.get("rope_theta", rules.EAGLE3.rope_default_base.value)


_LAYER0 = r"(^|\.)(midlayer|layers\.0)\."


def _layer0_rows(shapes: dict[str, tuple[int, ...]], suffix: str) -> int | None:
    pattern = re.compile(_LAYER0 + re.escape(suffix) + "$")
    shape = next((s for n, s in shapes.items() if pattern.search(n)), None)
    return shape[0] if shape and len(shape) == 2 else None


def class_default_sizes(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Sizes the config leaves to its model_type's config class (rules.MODEL_TYPE_DEFAULTS) where the stored weights
    say otherwise: key -> (the class default SGLang builds with, the size the weights hold). `head_dim` from the first
    layer's q_proj rows per head, `num_key_value_heads` from its k_proj rows per head_dim, `intermediate_size_mlp`
    (llama4_text) from its gate_proj rows."""
    model_type = cfg.get("model_type")
    defaults = rules.MODEL_TYPE_DEFAULTS.value.get(model_type, {}) if isinstance(model_type, str) else {}
    heads = config_int(cfg, "num_attention_heads")
    q, k = _layer0_rows(shapes, "self_attn.q_proj.weight"), _layer0_rows(shapes, "self_attn.k_proj.weight")
    gate = _layer0_rows(shapes, "mlp.gate_proj.weight")
    found: dict[str, tuple[int, int]] = {}
    head_dim = config_int(cfg, "head_dim")
    if head_dim is None and q and heads and q % heads == 0:
        head_dim = q // heads
        if "head_dim" in defaults and defaults["head_dim"] != head_dim:
            found["head_dim"] = (defaults["head_dim"], head_dim)
    if (config_int(cfg, "num_key_value_heads") is None and "num_key_value_heads" in defaults and k and head_dim
            and k % head_dim == 0 and defaults["num_key_value_heads"] != k // head_dim):
        found["num_key_value_heads"] = (defaults["num_key_value_heads"], k // head_dim)
    if (config_int(cfg, "intermediate_size_mlp") is None and "intermediate_size_mlp" in defaults and gate
            and defaults["intermediate_size_mlp"] != gate):
        found["intermediate_size_mlp"] = (defaults["intermediate_size_mlp"], gate)
    return found


def rope_only_in_parameters(cfg: dict[str, Any]) -> str | None:
    """Why a config's RoPE settings are lost on a release that reads only the top-level `rope_theta` /
    `rope_scaling` (transformers 4 configs; rules.Eagle3Loader.rope_parameters False), or None. A config saved by
    transformers 5 carries only `rope_parameters`: such a release runs with base 10000 and no scaling."""
    params = cfg.get("rope_parameters")
    if not isinstance(params, dict):
        return None
    lost = []
    theta = params.get("rope_theta")
    if theta is not None and "rope_theta" not in cfg and theta != default_rope_base(cfg):
        lost.append(f"base {theta} (read as {default_rope_base(cfg)})")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in (None, "default") and cfg.get("rope_scaling") is None:
        lost.append(f"{kind} scaling (read as none)")
    return f"RoPE {' and '.join(lost)}: only rope_parameters holds them" if lost else None


def _rope_type(scaling: dict[str, Any]) -> Any:
    return scaling.get("rope_type", scaling.get("type"))


def context_length(cfg: dict[str, Any]) -> int:
    """The context length SGLang derives from a (text) config (rules.CONTEXT_LENGTH_KEYS): a stale
    `max_sequence_length` or `seq_length` wins over `max_position_embeddings` (its config class's default when the
    config has none, rules.MODEL_TYPE_DEFAULTS), and a RoPE scaling factor multiplies it. Under transformers 5
    `rope_scaling` is the `rope_parameters` dict, where llama3 / yarn / longrope always carry
    `original_max_position_embeddings` (rules.ROPE_ORIGINAL_FILLED): no factor for them (0.5.9, on transformers 4,
    fails to start on such a scaling without it)."""
    text = cfg["text_config"] if isinstance(cfg.get("text_config"), dict) else cfg
    scaling = text.get("rope_scaling") or text.get("rope_parameters")
    factor: float = 1
    if isinstance(scaling, dict):
        raw = scaling.get("factor", 1)
        factor = raw if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0 else 1
        if "original_max_position_embeddings" in scaling or _rope_type(scaling) in rules.ROPE_ORIGINAL_FILLED.value:
            factor = 1
    model_type = text.get("model_type")
    defaults = rules.MODEL_TYPE_DEFAULTS.value.get(model_type, {}) if isinstance(model_type, str) else {}
    for key in rules.CONTEXT_LENGTH_KEYS.value:
        value = text.get(key, defaults.get(key))
        if isinstance(value, int) and not isinstance(value, bool):
            return int(factor * value)
    return 2048


def original_context_fill(cfg: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
    """The top-level `rope_scaling` that lacks the `original_max_position_embeddings` transformers 5 fills in from
    `max_position_embeddings` (rules.ROPE_ORIGINAL_FILLED), and that value; None when there is none to fill. Written
    into the config, every release builds the scaling transformers 5 builds (0.5.9 otherwise fails to start)."""
    scaling = cfg.get("rope_scaling")
    if (not isinstance(scaling, dict) or "original_max_position_embeddings" in scaling
            or _rope_type(scaling) not in rules.ROPE_ORIGINAL_FILLED.value):
        return None
    model_type = cfg.get("model_type")
    defaults = rules.MODEL_TYPE_DEFAULTS.value.get(model_type, {}) if isinstance(model_type, str) else {}
    mpe = config_int(cfg, "max_position_embeddings", defaults.get("max_position_embeddings"))
    return (scaling, mpe) if mpe else None


def rope_original_missing(cfg: dict[str, Any], version: str) -> str | None:
    """Why `version` fails to build the draft's rotary embedding: a RoPE scaling that needs
    `original_max_position_embeddings` (rules.ROPE_NEEDS_ORIGINAL) without it, where the release's transformers does
    not fill it in (rules.ROPE_ORIGINAL_FILLED, transformers 5: 0.5.10+), or None. The release reads the top-level
    `rope_scaling` on transformers 4, `rope_parameters` first on transformers 5."""
    reads_parameters = rules.eagle3_loader(version).rope_parameters.value
    scaling = (cfg.get("rope_parameters") or cfg.get("rope_scaling")) if reads_parameters else cfg.get("rope_scaling")
    if not isinstance(scaling, dict) or "original_max_position_embeddings" in scaling:
        return None
    kind = _rope_type(scaling)
    if kind not in rules.ROPE_NEEDS_ORIGINAL.value or (reads_parameters and kind in rules.ROPE_ORIGINAL_FILLED.value):
        return None
    return (f"rope_scaling {kind} has no original_max_position_embeddings: SGLang {version} fails to start with "
            f"KeyError building the rotary embedding ({rules.ROPE_NEEDS_ORIGINAL.source}); transformers 5 (SGLang "
            f">= 0.5.10) fills it from max_position_embeddings")


def fc_bypassed(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why SGLang would skip fc (and fc_norm / input_norm): it runs them only when the aux width differs from the
    draft's hidden size (rules.EAGLE3.fc_skipped_when_widths_equal), or None."""
    d = DraftDims.from_config(cfg)
    fc = shapes.get("fc.weight") or shapes.get("model.fc.weight")
    width = fc[1] if fc and len(fc) == 2 else d.target_hidden * d.num_aux
    if d.hidden and width == d.hidden:
        return (f"the aux width ({width}: aux states x target hidden) equals the draft's hidden size, so SGLang "
                f"skips fc, fc_norm and input_norm ({rules.EAGLE3.fc_skipped_when_widths_equal.source}): the head "
                f"runs without the layers it was trained with")
    return None


def unsorted_aux_ids(cfg: dict[str, Any]) -> str | None:
    """Why the head would get its aux states in another order than trained: the target concatenates them in
    ascending layer order whatever order the ids are listed in (rules.EAGLE3.aux_ascending), or None."""
    ids = list(DraftDims.from_config(cfg).aux_ids)
    if len(ids) > 1 and ids != sorted(ids):
        return (f"eagle_config.eagle_aux_hidden_state_layer_ids {ids} are not in ascending order: the target "
                f"concatenates the aux states in layer order ({sorted(ids)}), so fc's input blocks arrive permuted "
                f"({rules.EAGLE3.aux_ascending.source})")
    return None


def aux_capture_off(cfg: dict[str, Any]) -> str | None:
    """How `eagle_config.use_aux_hidden_state` switches the target's aux capture off, or None: SGLang reads it with
    a default of True and tests it for truth (rules.EAGLE3.use_aux_hidden_state), so `null` and `0` switch it off as
    `false` does."""
    eagle_cfg = as_object(cfg.get("eagle_config"))
    if "use_aux_hidden_state" not in eagle_cfg or eagle_cfg["use_aux_hidden_state"]:
        return None
    value = eagle_cfg["use_aux_hidden_state"]
    return "false" if value is False else f"{json.dumps(value)} (SGLang tests it for truth: false)"


def repeated_aux_ids(cfg: dict[str, Any]) -> str | None:
    """Why fewer aux states than ids would reach fc: the target captures a layer once however often its id is
    listed (`i in layers_to_capture`, rules.EAGLE3.aux_ascending), or None."""
    ids = list(DraftDims.from_config(cfg).aux_ids)
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if not twice:
        return None
    return (f"eagle_config.eagle_aux_hidden_state_layer_ids {ids} name layer(s) {twice} more than once: the target "
            f"captures each layer once ({rules.EAGLE3.aux_ascending.source}), so {len(set(ids))} aux states reach "
            f"fc, which takes {len(ids)} (a shape error at the first request)")


@dataclass
class LoadSimulation:
    """What one SGLang release's loader would do with a checkpoint."""

    version: str
    algorithm: Algorithm
    loaded: dict[str, str] = field(default_factory=dict)  # stored name -> SGLang parameter
    skipped: list[str] = field(default_factory=list)  # stored names dropped (EAGLE-3: without a message)
    ignored_by_design: list[str] = field(default_factory=list)  # t2d; lm_head for EAGLE
    uninitialized: list[str] = field(default_factory=list)  # parameters nothing loaded
    unused: list[str] = field(default_factory=list)  # parameters nothing loaded that forward never reads
    zero_initialised: list[str] = field(default_factory=list)  # parameters nothing loaded that start at zero
    shape_errors: list[str] = field(default_factory=list)
    misshapen: set[str] = field(default_factory=set)  # stored names whose shape SGLang refuses
    from_target: list[str] = field(default_factory=list)  # parameters SGLang takes from the target
    problems: list[str] = field(default_factory=list)  # start-up failures (e.g. layer count)
    ignored_config: list[str] = field(default_factory=list)  # config keys set that this release does not read
    overwritten: list[str] = field(default_factory=list)  # parameters two stored tensors load into (last wins)
    hot_token_map: bool = False

    @property
    def ok(self) -> bool:
        return not (self.skipped or self.uninitialized or self.shape_errors or self.problems or self.ignored_config
                    or self.overwritten)

    def verdict(self) -> tuple:
        """What the load does, without the release number: equal verdicts mean the releases load alike."""
        strip = re.compile(r"SGLang \S+ expects")
        same = re.compile(r"model\.midlayer\.")  # one layer under either prefix is the same layer
        return (sorted((k, same.sub("model.layers.0.", v)) for k, v in self.loaded.items()), self.skipped,
                self.ignored_by_design, [same.sub("model.layers.0.", u) for u in self.uninitialized], self.unused,
                [strip.sub("SGLang expects", e) for e in self.shape_errors], self.from_target,
                [p.replace(self.version, "") for p in self.problems], self.ignored_config, self.overwritten,
                self.hot_token_map, [same.sub("model.layers.0.", z) for z in self.zero_initialised])


def _layer_params(prefix: str, d: DraftDims, in_dim: int, *, eagle3: bool, input_layernorm: bool,
                  qkv_bias: bool) -> dict[str, Any]:
    q, kv = d.heads * d.head_dim, d.kv_heads * d.head_dim
    p: dict[str, Any] = {
        f"{prefix}self_attn.qkv_proj.weight": {"q": (q, in_dim), "k": (kv, in_dim), "v": (kv, in_dim)},
        f"{prefix}self_attn.o_proj.weight": (d.hidden, q),
        f"{prefix}mlp.gate_up_proj.weight": {0: (d.intermediate, d.hidden), 1: (d.intermediate, d.hidden)},
        f"{prefix}mlp.down_proj.weight": (d.hidden, d.intermediate),
        f"{prefix}post_attention_layernorm.weight": (d.hidden,),
    }
    if d.attention_bias:
        if qkv_bias:
            p[f"{prefix}self_attn.qkv_proj.bias"] = {"q": (q,), "k": (kv,), "v": (kv,)}
        p[f"{prefix}self_attn.o_proj.bias"] = (d.hidden,)
    if eagle3:
        p[f"{prefix}hidden_norm.weight"] = (d.hidden,)
    if input_layernorm:
        p[f"{prefix}input_layernorm.weight"] = (d.hidden,)
    return p


def expected_parameters(cfg: dict[str, Any], algorithm: Algorithm, version: str) -> dict[str, Any]:
    """SGLang's `named_parameters()` for the draft model: name -> shape, or {shard_id: shape} when stacked."""
    d = DraftDims.from_config(cfg)
    params: dict[str, Any] = {"model.embed_tokens.weight": (d.vocab, d.hidden)}
    if algorithm is Algorithm.EAGLE3:
        r = rules.eagle3_loader(version)
        num_aux = d.num_aux if r.num_aux_from_config.value else 3
        width = d.target_hidden * num_aux
        params["model.fc.weight"] = (d.hidden, width)
        if d.fc_bias:
            params["model.fc.bias"] = (d.hidden,)
        if d.norm_before_fc and r.norm_before_fc.value:
            params["model.input_norm.weight"] = (width,)
        if d.fc_norm and r.fc_norm.value:
            for i in range(num_aux):
                params[f"model.fc_norm.{i}.weight"] = (d.target_hidden,)
        prefixes = (["model.midlayer."] if r.layer_prefix.value == "midlayer"
                    else [f"model.layers.{i}." for i in range(d.num_layers)])
        for i, prefix in enumerate(prefixes):
            params.update(_layer_params(prefix, d, 2 * d.hidden if i == 0 else d.hidden, eagle3=True,
                                        input_layernorm=True, qkv_bias=rules.EAGLE3.qkv_bias.value))
        params["model.norm.weight"] = (d.hidden,)
        if not d.tie_embeddings:
            params["lm_head.weight"] = (d.draft_vocab or d.vocab, d.hidden)
    else:
        e = rules.eagle_loader(version)
        for i in range(d.num_layers):
            params.update(_layer_params(f"model.layers.{i}.", d, d.hidden, eagle3=False,
                                        input_layernorm=i > 0 or e.layer0_input_layernorm.value, qkv_bias=True))
        params["model.fc.weight"] = (d.hidden, 2 * d.hidden)
        if e.fc_bias.value:
            params["model.fc.bias"] = (d.hidden,)
        if e.final_norm.value:
            params["model.norm.weight"] = (d.hidden,)
        params["lm_head.weight"] = (d.vocab, d.hidden)
    return params


def embeddings_shared(cfg: dict[str, Any]) -> bool:
    """EAGLE-3: SGLang replaces the draft embeddings with the target's unless target_hidden_size is present and
    differs from hidden_size (rules.EAGLE3.embed_shared)."""
    d = DraftDims.from_config(cfg)
    return not (d.has_target_hidden and d.target_hidden != d.hidden)


def ignored_config(cfg: dict[str, Any], algorithm: Algorithm, version: str, names: Any = ()) -> list[str]:
    """Config keys the head relies on that `version`'s EAGLE-3 loader does not read. A key counts when the
    head holds what it switches on (`names`: its stored tensors; fc's width for the aux count): a flag set
    without its weights was not trained with, and a release that ignores it loads the head as it was trained."""
    if algorithm is not Algorithm.EAGLE3:
        return []
    d, r = DraftDims.from_config(cfg), rules.eagle3_loader(version)
    names = list(names)
    found = []
    if d.norm_before_fc and not r.norm_before_fc.value and any("input_norm." in n for n in names):
        found.append("norm_before_fc")
    if d.fc_norm and not r.fc_norm.value and any(_FC_NORM_NAME.search(n) for n in names):
        found.append("fc_norm" if cfg.get("fc_norm") else "use_aux_norm")
    if cfg.get("norm_output") and not r.norm_output.value:  # no weight: the flag alone is what training did
        found.append("norm_output")
    if not r.rope_parameters.value and rope_only_in_parameters(cfg) is not None:
        found.append("rope_parameters")
    if d.num_aux_configured and d.num_aux != 3 and not r.num_aux_from_config.value:
        found.append("num_aux_hidden_states" if config_int(cfg, "num_aux_hidden_states")
                     else "eagle_config.eagle_aux_hidden_state_layer_ids (count)")
    return found


def simulate_load(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]], algorithm: Algorithm,
                  version: str) -> LoadSimulation:
    """Replay `load_weights` of `version` (any release from rules.OLDEST_SUPPORTED on; one newer than the newest
    known gets the newest rules) over stored tensor names and shapes."""
    sim = LoadSimulation(version=version, algorithm=algorithm)
    d = DraftDims.from_config(cfg)
    params = expected_parameters(cfg, algorithm, version)
    filled: dict[str, set] = {}

    def take(stored: str, param: str, shard: Any = None) -> None:
        spec = params[param]
        want = spec[shard] if shard is not None else spec
        got = tuple(shapes[stored])
        if isinstance(want, dict):  # a fused tensor stored whole (e.g. qkv_proj)
            rows = sum(s[0] for s in want.values())
            want = (rows, *next(iter(want.values()))[1:])
        if got != tuple(want):
            sim.shape_errors.append(f"{stored}: stored {list(got)}, SGLang {version} expects {list(want)}")
            sim.misshapen.add(stored)
        sim.loaded[stored] = param
        part = shard if shard is not None else "all"
        have = filled.setdefault(param, set())
        if part in have or (part == "all" and have) or (part != "all" and "all" in have):
            sim.overwritten.append(param if part == "all" else f"{param} (shard {part})")
        have.add(part)

    def load_stacked_or_plain(stored: str, name: str, lookup: Any, stacked: Any) -> None:
        """Both loaders' last step: a q/k/v or gate/up weight goes into its fused parameter as a shard,
        anything else loads whole; `lookup(name)` gives the parameter name (or None: skipped)."""
        shard = None
        for param_part, weight_part, stacked_shard in stacked:
            if weight_part in name:
                name, shard = name.replace(weight_part, param_part), stacked_shard
                break
        param = lookup(name)
        take(stored, param, shard) if param is not None else sim.skipped.append(stored)

    if algorithm is Algorithm.EAGLE3:
        r, common = rules.eagle3_loader(version), rules.EAGLE3
        renames = r.legacy_renames.value

        def lookup3(n: str) -> str | None:
            return next((p for p in (f"{pre}{n}" for pre in common.lookup.value) if p in params), None)

        for stored in shapes:
            name = stored
            for legacy, new in renames:
                if legacy in name:
                    name = name.replace(legacy, new)
            if common.d2t.value in name:
                sim.hot_token_map = True
                sim.loaded[stored] = "hot_token_id"
                want = (d.draft_vocab or d.vocab,)
                if tuple(shapes[stored]) != want:  # loaded unchecked (hot_token_id = d2t + arange): wrong at run time
                    sim.problems.append(f"{D2T_LENGTH} {list(shapes[stored])} entries for a {want[0]}-token draft "
                                        f"vocab: SGLang loads it unchecked ({common.d2t.source}) and maps draft ids "
                                        f"to the wrong target ids, or past the end, while serving")
                continue
            if common.t2d.value in name:
                sim.ignored_by_design.append(stored)
                continue
            load_stacked_or_plain(stored, name, lookup3, common.stacked.value)
        if not r.multi_layer.value and d.num_layers != 1:
            sim.problems.append(f"SGLang {version} builds exactly one EAGLE-3 layer; config says {d.num_layers}")
        if (why := rope_original_missing(cfg, version)) is not None:
            sim.problems.append(why)
        if d.has_target_hidden and cfg.get("target_hidden_size") is None:
            sim.problems.append("target_hidden_size is null: SGLang sizes fc from it and fails to start")
        if not d.has_draft_vocab:
            sim.problems.append(f"config.json has no draft_vocab_size: SGLang reads "
                                f"{common.draft_vocab_size_read.value} without a default and fails to start with "
                                f"AttributeError ({common.draft_vocab_size_read.source})")
        for why in (fc_bypassed(cfg, shapes), unsorted_aux_ids(cfg), repeated_aux_ids(cfg)):
            if why:
                sim.problems.append(why)
        sim.ignored_config = ignored_config(cfg, algorithm, version, shapes)
        from_target = {"model.embed_tokens.weight"} if embeddings_shared(cfg) else set()
        if not d.tie_embeddings and d.draft_vocab is None:
            # set_embed_and_head: the head and the embeddings, whatever target_hidden_size says
            from_target |= {"lm_head.weight", "model.embed_tokens.weight"}
        unused = [re.compile(p) for p in r.unused_params.value]
        zeros = [re.compile(p) for p in common.zero_initialised.value]
        if (off := aux_capture_off(cfg)) is not None:
            sim.problems.append(f"eagle_config.use_aux_hidden_state is {off}: the target captures no aux states "
                                f"and hands the draft its last hidden state ({common.use_aux_hidden_state.source}), "
                                f"which fc was not trained on")
    else:
        e = rules.eagle_loader(version)
        for stored in shapes:
            if e.dropped.value in stored:
                sim.ignored_by_design.append(stored)
                continue
            name = f"{e.prepend.value}{stored}"
            if any(s in name for s in e.skipped.value):
                sim.skipped.append(stored)
                continue
            load_stacked_or_plain(stored, name, lambda n: n if n in params else None, rules.STACKED)
        from_target = {"model.embed_tokens.weight", "lm_head.weight"}
        unused, zeros = [], [re.compile(p) for p in e.zero_initialised.value]

    for param, spec in params.items():
        need = set(spec) if isinstance(spec, dict) else {"all"}
        have = filled.get(param, set())
        if "all" in have or need <= have:
            continue
        if param in from_target:
            sim.from_target.append(param)
        elif not have and any(u.match(param) for u in unused):
            sim.unused.append(param)
        elif not have and any(z.search(param) for z in zeros):
            sim.zero_initialised.append(param)
        else:
            missing = sorted(map(str, need - have)) if have else []
            sim.uninitialized.append(param + (f" (shards {', '.join(missing)})" if missing else ""))
    return sim


_ATTENTION_BIAS = re.compile(r"(^|\.)self_attn\.(q|k|v|qkv|o)_proj\.bias$")
_MLP_BIAS = re.compile(r"(^|\.)(midlayer|layers\.\d+)\.mlp\.(gate|up|down|gate_up)_proj\.bias$")


def mlp_bias(name: str) -> bool:
    """A stored MLP bias, which no SGLang release builds a parameter for (rules.MLP_BIAS)."""
    return not rules.MLP_BIAS.value and bool(_MLP_BIAS.search(name))


def unbuilt_reason(name: str, cfg: dict[str, Any], algorithm: Algorithm,
                   version: str = NEWEST_KNOWN) -> tuple[str, str | None]:
    """Why `version` builds no parameter for a stored weight its loader knows by name (one `simulate_load` lists
    as skipped), and what would make SGLang load it, if anything: (reason, fix)."""
    bias = _ATTENTION_BIAS.search(name)
    if mlp_bias(name):
        return (f"SGLang's draft MLP has no biases in any release ({rules.MLP_BIAS.source})",
                "no SGLang release applies these biases: retrain without them")
    if algorithm is Algorithm.EAGLE3:
        common = rules.EAGLE3
        if bias and bias.group(2) != "o" and not common.qkv_bias.value:
            return (f"SGLang's EAGLE-3 attention has no q/k/v bias in any release ({common.qkv_bias.source})",
                    "no SGLang release applies these biases: retrain without them, or serve the head with an engine "
                    "that loads them")
        if bias:
            keys = common.o_proj_bias_keys
            return (f"the config sets neither {' nor '.join(keys.value)}, so SGLang builds o_proj without a bias "
                    f"({keys.source})", f"set {keys.value[0]}: true in config.json if the head was trained with it")
        if re.search(r"(^|\.)fc\.bias$", name):
            key = common.fc_bias_key
            return (f"the config does not set {key.value}, so SGLang builds fc without a bias ({key.source})",
                    f"set {key.value}: true in config.json if the head was trained with it (o_proj.bias then starts "
                    f"at zero where it is not stored)")
        if _FC_NORM_NAME.search(name):
            return ("the config sets neither fc_norm nor use_aux_norm, so SGLang builds no per-aux norms "
                    f"({rules.eagle3_loader(version).fc_norm.source})",
                    "set fc_norm: true in config.json if the head was trained with them")
    else:
        e = rules.eagle_loader(version)
        if bias:
            keys = e.attention_bias_keys
            return (f"the config sets neither {' nor '.join(keys.value)}, so SGLang builds the attention without "
                    f"biases ({keys.source})",
                    f"set {keys.value[0]}: true in config.json if the head was trained with them (o_proj.bias then "
                    f"starts at zero where it is not stored)")
        if re.search(r"(^|\.)layers\.0\.input_layernorm\.weight$", name) and not e.layer0_input_layernorm.value:
            return (f"SGLang's EAGLE model has no input_layernorm on layer 0 ({e.layer0_input_layernorm.source})",
                    "no SGLang release applies it: retrain without it")
        if re.search(r"(^|\.)norm\.weight$", name) and not e.final_norm.value:
            return f"SGLang's EAGLE model has no final norm ({e.final_norm.source})", "no SGLang release applies it"
    return f"SGLang {version} builds no parameter for it", None


# --- what a head needs, and which releases serve it ---------------------------------------------------------
def needed_features(cfg: dict[str, Any], names: list[str] | set[str], algorithm: Algorithm, *,
                    cuda_graph: bool = True) -> dict[str, str]:
    """EAGLE-3 loader features (bool fields of rules.Eagle3Loader) the head relies on -> why, read from its
    config and its stored tensor names (so a tensor the config forgot to switch on still counts). `cuda_graph`:
    the server captures CUDA graphs (SGLang's default), which some releases cannot for some heads."""
    if algorithm is not Algorithm.EAGLE3:
        return {}
    d = DraftDims.from_config(cfg)
    needs: dict[str, str] = {}
    if d.norm_before_fc or any("input_norm." in n for n in names):
        needs["norm_before_fc"] = "norm_before_fc with input_norm.weight (an RMSNorm over the concatenated aux states)"
    if d.fc_norm or any(_FC_NORM_NAME.search(n) for n in names):
        needs["fc_norm"] = "per-aux fc_norm (fc_norm.N / aux_norm_*)"
    if d.num_layers > 1:
        needs["multi_layer"] = f"{d.num_layers} decoder layers"
    if d.num_aux_configured and d.num_aux != 3:
        needs["num_aux_from_config"] = f"{d.num_aux} aux hidden states"
        if cuda_graph:
            needs["aux_count_with_cuda_graph"] = f"{d.num_aux} aux hidden states with CUDA graphs on"
    if (why := rope_only_in_parameters(cfg)) is not None:
        needs["rope_parameters"] = why
    if cfg.get("norm_output"):
        needs["norm_output"] = "norm_output (the normed hidden state carried to the next draft step)"
    return needs


def minimum_release(cfg: dict[str, Any], names: list[str] | set[str], algorithm: Algorithm, *,
                    cuda_graph: bool = True) -> tuple[str, list[str]]:
    """The oldest known SGLang release that serves the head's features (and every later known one does too),
    with the features that set it; (OLDEST_SUPPORTED, []) when the head needs nothing new. "" when none does.
    `cuda_graph`: as `needed_features`."""
    needs = needed_features(cfg, names, algorithm, cuda_graph=cuda_graph)
    first = rules.first_release_with(set(needs))
    if first is None:
        return "", list(needs.values())
    ranges = rules.EAGLE3_LOADERS
    i = next(i for i, r in enumerate(ranges) if r.first == first)
    return first, [why for f, why in needs.items() if i and not getattr(ranges[i - 1], f).value]


@dataclass
class ReleaseSpan:
    """Consecutive known releases whose loaders do the same with a head (`sim` is the replay of `first`)."""

    first: str
    last: str
    sim: LoadSimulation

    @property
    def label(self) -> str:
        return self.first if self.first == self.last else f"{self.first}–{self.last}"


def replay_releases(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]], algorithm: Algorithm) -> list[ReleaseSpan]:
    """Replay one release per rule range and merge neighbours with equal verdicts: the oldest supported
    release, each release where the verdict changes, and (as the last span's end) the newest known."""
    spans: list[ReleaseSpan] = []
    for rng in rules.EAGLE3_LOADERS if algorithm is Algorithm.EAGLE3 else rules.EAGLE_LOADERS:
        sim = simulate_load(cfg, shapes, algorithm, rng.first)
        if spans and spans[-1].sim.verdict() == sim.verdict():
            spans[-1].last = rng.last
        else:
            spans.append(ReleaseSpan(rng.first, rng.last, sim))
    return spans


def serving_spans(spans: list[ReleaseSpan]) -> list[str]:
    """The release ranges (adjacent spans joined) whose replay loads the head completely."""
    out: list[list[str]] = []
    for i, s in enumerate(spans):
        if not s.sim.ok:
            continue
        if out and spans[i - 1].sim.ok:
            out[-1][1] = s.last
        else:
            out.append([s.first, s.last])
    return [a if a == b else f"{a}–{b}" for a, b in out]
