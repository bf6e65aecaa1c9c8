"""A replay of what vLLM 0.33 does with an EAGLE-3 draft directory, driven by `rules.py`: its config parser
(speculators configs flattened, the architecture renamed), `Eagle3LlamaForCausalLM.load_weights` (stored name ->
parameter, what is skipped, what raises, what nothing loads), the aux layers each model runner captures, and what is
taken from the target. Pure: a config dict and `{stored name: shape}` in, a `VllmLoad` out.

vLLM leaves a parameter nothing loaded at its initial value without a word (`load_weights` returns None, so the
loader's own check is off), so "uninitialised" here is what a real launch serves silently wrong.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from eaglectl.engines.vllm import rules

RELEASE = rules.RELEASE
MODEL_CLASS = "llama_eagle3.Eagle3LlamaForCausalLM"


def _int(cfg: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = cfg.get(key)
    return value if type(value) is int else default


def _ids(value: Any) -> list[int] | None:
    if isinstance(value, (list, tuple)) and value and all(type(i) is int for i in value):
        return list(value)
    return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class VllmConfig:
    """The draft config as vLLM's parser leaves it (`hf_config`): flattened when it is a speculators config."""

    config: dict[str, Any]
    format: str  # "hf" | "speculators"
    architecture: str | None  # after EAGLEConfig's rename: the registry name vLLM resolves
    parallel_drafting: bool = False  # a speculators peagle config sets it
    problems: list[str] = field(default_factory=list)  # start-up failures
    notes: list[str] = field(default_factory=list)


def is_speculators(raw: dict[str, Any]) -> bool:
    """A config vLLM reads as a speculators config: no model_type, a speculators_config (rules.SPECULATORS_ROUTE)."""
    return raw.get("model_type") is None and raw.get("speculators_config") is not None


def parse_config(raw: dict[str, Any]) -> VllmConfig:
    """What vLLM makes of a draft config.json given with `--speculative-config '{"method": "eagle3", ...}'`."""
    if is_speculators(raw):
        return _speculators(raw)
    cfg = copy.deepcopy(raw)
    out = VllmConfig(cfg, "hf", None)
    archs = cfg.get("architectures")
    if not (isinstance(archs, list) and archs and isinstance(archs[0], str)):
        out.problems.append("config.json names no architectures: vLLM cannot pick a model class")
        return out
    original = archs[0]
    if original in rules.REFUSED_ARCHITECTURES.value:
        out.problems.append(f"architectures {archs!r}: no vLLM model class has that name, so vLLM refuses to start "
                            f"(not supported for now; {rules.ORIGINAL_ARCH_CHECKED.source})")
        return out
    renamed = original if original.startswith("Eagle3") or original.endswith("Eagle3") else f"Eagle3{original}"
    out.architecture = renamed
    if renamed != original:
        out.notes.append(f"architectures {original} -> {renamed} ({rules.ARCH_RENAME.source})")
    return out


def _speculators(raw: dict[str, Any]) -> VllmConfig:
    kind = raw.get("speculators_model_type")
    layer = raw.get("transformer_layer_config")
    out = VllmConfig({}, "speculators", None)
    if kind not in rules.SPECULATORS_ARCH.value:
        out.problems.append(f"speculators_model_type {kind!r}: eaglectl replays vLLM's eagle3 and peagle only")
        return out
    if not isinstance(layer, dict):
        out.problems.append("speculators config without a transformer_layer_config object")
        return out
    cfg = copy.deepcopy(layer)
    for key in ("draft_vocab_size",):
        cfg[key] = raw.get(key)
    if raw.get("target_hidden_size") is not None:
        cfg["target_hidden_size"] = raw["target_hidden_size"]
    for key, default in rules.SPECULATORS_DEFAULTS.value[kind].items():
        cfg[key] = raw.get(key, default)
        if key not in raw and key == "norm_before_residual" and default:
            out.notes.append(f"norm_before_residual absent: vLLM reads True ({rules.SPECULATORS_DEFAULTS.source}); "
                             f"speculators' own default is False")
    model_type = layer.get("model_type", "llama")
    arch = rules.SPECULATORS_ARCH.value[kind].get(model_type)
    if arch is None:
        out.problems.append(f"transformer_layer_config.model_type {model_type!r}: vLLM has no {kind} class for it "
                            f"(ValueError; {rules.SPECULATORS_ARCH.source})")
        return out
    cfg["architectures"] = [arch]
    if kind == "peagle":
        if "mask_token_id" not in raw:
            out.problems.append(f"a peagle config without mask_token_id: KeyError at start-up "
                                f"({rules.SPECULATORS_PEAGLE_MASK_TOKEN.source})")
        cfg["pard_token"] = raw.get("mask_token_id")
        out.parallel_drafting = True
    if raw.get("eagle_aux_hidden_state_layer_ids"):
        cfg["eagle_aux_hidden_state_layer_ids"] = raw["eagle_aux_hidden_state_layer_ids"]
    out.config, out.architecture = cfg, arch
    return out


# ------------------------------------------------------------------------------------------------------ capture
def runner_capture(cfg: dict[str, Any]) -> tuple[list[int] | None, list[int] | None]:
    """(V2 runner, V1 runner): the ids each reads from a parsed config (vLLM numbering, sorted, deduplicated), or
    None when it reads none (then the target's default is captured)."""
    def norm(ids: Any) -> list[int] | None:
        found = _ids(ids)
        return sorted(set(found)) if found else None

    top = norm(cfg.get("eagle_aux_hidden_state_layer_ids"))
    v2 = top
    if v2 is None:
        dflash = _obj(cfg.get("dflash_config"))
        for candidate in ([i + 1 for i in dflash.get("target_layer_ids") or [] if type(i) is int],
                          [i + 1 for i in cfg.get("dspark_target_layer_ids") or [] if type(i) is int],
                          [i + 1 for i in cfg.get("target_layer_ids") or [] if type(i) is int],
                          dflash.get("layer_ids"), _obj(cfg.get("eagle_config")).get("layer_ids")):
            if (v2 := norm(candidate)) is not None:
                break
    v1 = top
    if v1 is None:
        eagle_cfg = cfg.get("eagle_config")
        if isinstance(eagle_cfg, dict) and eagle_cfg:
            v1 = norm(eagle_cfg.get("eagle_aux_hidden_state_layer_ids"))
    return v2, v1


def trained_capture(raw: dict[str, Any]) -> list[int] | None:
    """The target layers the head was trained on, in vLLM's numbering, as its config records them: a speculators
    config's top-level ids (vLLM numbering already), else SGLang's eagle_config ids + 1 (Llama-style targets)."""
    if is_speculators(raw):
        ids = _ids(raw.get("eagle_aux_hidden_state_layer_ids"))
        return sorted(set(ids)) if ids else None
    ids = _ids(_obj(raw.get("eagle_config")).get("eagle_aux_hidden_state_layer_ids"))
    return sorted({i + 1 for i in ids}) if ids else None


# ------------------------------------------------------------------------------------------------------ the load
@dataclass
class VllmLoad:
    """What vLLM 0.33 would do with one draft directory (config + stored tensor names and shapes)."""

    release: str
    format: str
    architecture: str | None
    model_class: str | None  # None: not a class eaglectl replays (the load is not simulated)
    parallel_drafting: bool
    runner: str  # "V2" | "V1"
    loaded: dict[str, str] = field(default_factory=dict)  # stored name -> vLLM parameter
    skipped: list[str] = field(default_factory=list)  # stored names vLLM drops (t2d; mask_hidden; stray biases)
    uninitialized: list[str] = field(default_factory=list)  # parameters nothing loads: served at initial values
    unused: list[str] = field(default_factory=list)  # parameters built but never read (nothing needs loading)
    from_target: list[str] = field(default_factory=list)  # taken from the target after loading
    errors: list[str] = field(default_factory=list)  # start-up or load failures (vLLM raises)
    warnings: list[str] = field(default_factory=list)  # served, but not as trained (capture, defaults)
    notes: list[str] = field(default_factory=list)
    num_aux: int = 3
    fc_width: int | None = None
    norm_before_residual: bool = False
    capture_v2: list[int] | None = None
    capture_v1: list[int] | None = None
    capture: list[int] | None = None  # what the runner in use captures (None: the default, target depth unknown)
    trained: list[int] | None = None  # what the head was trained on (vLLM numbering), when the config says

    @property
    def ok(self) -> bool:
        """Loads completely and is fed the layers it was trained on (as far as the config tells)."""
        return self.model_class is not None and not (self.errors or self.uninitialized or self.warnings)


def _layer_params(prefix: str, cfg: dict[str, Any], in_dim: int) -> dict[str, Any]:
    hidden = _int(cfg, "hidden_size", 0) or 0
    heads = _int(cfg, "num_attention_heads", 1) or 1
    kv = _int(cfg, "num_key_value_heads", heads) or heads
    head_dim = _int(cfg, "head_dim") or (hidden // heads)
    inter = _int(cfg, "intermediate_size", 0) or 0
    q, k = heads * head_dim, kv * head_dim
    p: dict[str, Any] = {
        f"{prefix}self_attn.qkv_proj.weight": {"q": (q, in_dim), "k": (k, in_dim), "v": (k, in_dim)},
        f"{prefix}self_attn.o_proj.weight": (hidden, q),
        f"{prefix}mlp.gate_up_proj.weight": {0: (inter, hidden), 1: (inter, hidden)},
        f"{prefix}mlp.down_proj.weight": (hidden, inter),
        f"{prefix}input_layernorm.weight": (hidden,),
        f"{prefix}post_attention_layernorm.weight": (hidden,),
        f"{prefix}hidden_norm.weight": (hidden,),
    }
    if cfg.get(rules.QKV_BIAS_KEY.value):
        p[f"{prefix}self_attn.qkv_proj.bias"] = {"q": (q,), "k": (k,), "v": (k,)}
    if any(cfg.get(key) for key in rules.O_PROJ_BIAS_KEYS.value):
        p[f"{prefix}self_attn.o_proj.bias"] = (hidden,)
    if cfg.get(rules.MLP_BIAS_KEY.value):
        p[f"{prefix}mlp.gate_up_proj.bias"] = {0: (inter,), 1: (inter,)}
        p[f"{prefix}mlp.down_proj.bias"] = (hidden,)
    return p


def expected_parameters(cfg: dict[str, Any], *, target_vocab: int | None, parallel_drafting: bool
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters, facts): Eagle3LlamaForCausalLM's parameters (name -> shape, or {shard: shape} when fused) and
    the sizes they come from."""
    hidden = _int(cfg, "hidden_size", 0) or 0
    vocab = _int(cfg, "vocab_size", 0) or 0
    draft_vocab = _int(cfg, "draft_vocab_size") or vocab
    layers = _int(cfg, "num_hidden_layers", 1) or 0
    eagle_cfg = _obj(cfg.get("eagle_config"))
    use_aux = eagle_cfg.get("use_aux_hidden_state", True)
    nbfc = bool(eagle_cfg["norm_before_fc"] if "norm_before_fc" in eagle_cfg else cfg.get("norm_before_fc", False))
    num_aux = _int(cfg, "num_aux_hidden_states") or (
        len(ids) if (ids := eagle_cfg.get("eagle_aux_hidden_state_layer_ids")) and isinstance(ids, list) else 3)
    target_hidden = _int(cfg, "target_hidden_size") or hidden
    fc_width = target_hidden * num_aux
    params: dict[str, Any] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        params.update(_layer_params(f"model.layers.{i}.", cfg, 2 * hidden if i == 0 else hidden))
    if use_aux:
        params["model.fc.weight"] = (hidden, fc_width)
        if nbfc:
            params["model.input_norm.weight"] = (fc_width,)
        if cfg.get("fc_norm"):
            for j in range(num_aux):
                params[f"model.fc_norm.{j}.weight"] = (target_hidden,)
    params["model.norm.weight"] = (hidden,)
    params["lm_head.weight"] = (draft_vocab, hidden)
    if draft_vocab != (target_vocab or vocab):
        params["draft_id_to_target_id"] = (draft_vocab,)
    facts = {"use_aux": bool(use_aux), "norm_before_fc": nbfc, "num_aux": num_aux, "fc_width": fc_width if use_aux
             else None, "draft_vocab": draft_vocab, "vocab": target_vocab or vocab, "layers": layers,
             "mask_hidden": (1, fc_width) if parallel_drafting else None}
    return params, facts


_LATER_HIDDEN_NORM = re.compile(r"^model\.layers\.([1-9]\d*)\.hidden_norm\.weight$")


def simulate_load(raw: dict[str, Any], shapes: dict[str, tuple[int, ...]], *, target_vocab: int | None = None,
                  target_layers: int | None = None, parallel_drafting: bool | None = None) -> VllmLoad:
    """Replay vLLM 0.33 on a draft dir: `raw` its config.json as written, `shapes` its stored tensors.
    `target_vocab` / `target_layers`: the target's, when known (the draft config's vocab otherwise; the default
    capture is then left unresolved). `parallel_drafting`: set in the launch (a speculators peagle config sets it
    itself)."""
    parsed = parse_config(raw)
    cfg = parsed.config
    parallel = parsed.parallel_drafting if parallel_drafting is None else parallel_drafting
    sim = VllmLoad(RELEASE, parsed.format, parsed.architecture, None, parallel, "V1" if parallel else "V2",
                   notes=list(parsed.notes))
    sim.errors.extend(parsed.problems)
    sim.trained = trained_capture(raw)
    sim.capture_v2, sim.capture_v1 = runner_capture(cfg)
    if parsed.architecture is None or sim.errors:
        return sim
    if parsed.architecture not in rules.LLAMA_EAGLE3_ARCHITECTURES.value:
        other = rules.OTHER_EAGLE3_ARCHITECTURES.value.get(parsed.architecture)
        if other:
            sim.notes.append(f"{parsed.architecture}: vLLM loads it with {other} (not replayed by eaglectl)")
        else:
            sim.errors.append(f"architecture {parsed.architecture} (from {cfg.get('architectures')!r}): not one vLLM "
                              f"registers for EAGLE-3 ({rules.LLAMA_EAGLE3_ARCHITECTURES.source})")
        return sim
    sim.model_class = MODEL_CLASS
    params, facts = expected_parameters(cfg, target_vocab=target_vocab, parallel_drafting=parallel)
    sim.num_aux, sim.fc_width = facts["num_aux"], facts["fc_width"]
    sim.norm_before_residual = bool(cfg.get("norm_before_residual", rules.NORM_BEFORE_RESIDUAL.value))
    _load(sim, params, facts, shapes)
    _capture(sim, target_layers)
    return sim


def _load(sim: VllmLoad, params: dict[str, Any], facts: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    filled: dict[str, set] = {}
    names = list(shapes)
    has_d2t = any("d2t" in n for n in names if "t2d" not in n)
    has_embed = any("embed_tokens" in n for n in names)
    has_mask = False
    for stored in names:
        shape = tuple(shapes[stored])
        if rules.T2D_SKIPPED.value in stored:
            sim.skipped.append(stored)
            continue
        if "d2t" in stored:
            name = stored.replace(*rules.D2T_RENAMED.value)
        elif "mask_hidden" in stored:
            if not sim.parallel_drafting:
                sim.skipped.append(stored)
                sim.notes.append(f"{stored}: skipped with a warning (no parallel drafting)")
                continue
            has_mask = True
            want = facts["mask_hidden"]
            if want and (len(shape) == 0 or _numel(shape) != want[1]):
                sim.errors.append(f"{stored}: stored {list(shape)}, vLLM copies it into [1, {want[1]}] "
                                  f"({rules.MASK_HIDDEN.source})")
            sim.loaded[stored] = "mask_hidden"
            continue
        elif "lm_head" not in stored:
            name = rules.MODEL_PREFIX.value + stored
        else:
            name = stored
        # the mapper load_weights builds: names it drops
        if (not has_d2t and "draft_id_to_target_id" in name) or (not facts["use_aux"] and "fc." in name) or (
                not facts["norm_before_fc"] and "input_norm." in name):
            sim.skipped.append(stored)
            continue
        # LlamaModel's mapper, on the names below `model.`
        if name.startswith("model."):
            inner = name[len("model."):]
            for old, new in rules.LAYER_RENAME.value:
                inner = inner.replace(old, new)
            name = "model." + inner
        shard: Any = None
        for part, fused, shard_id in rules.STACKED.value:
            if part in name:
                name, shard = name.replace(part, fused), shard_id
                break
        spec = params.get(name)
        if spec is None:
            if name.endswith(rules.UNEXPECTED_BIAS.value):
                sim.skipped.append(stored)
                continue
            sim.errors.append(f"{stored}: vLLM has no parameter {name} (ValueError at load; "
                              f"{rules.UNKNOWN_NAME.source})")
            continue
        want = spec[shard] if shard is not None else spec
        if isinstance(want, dict):  # a fused tensor stored whole
            first = next(iter(want.values()))
            want = (sum(s[0] for s in want.values()), *first[1:])
        if shape != tuple(want):
            sim.errors.append(f"{stored}: stored {list(shape)}, vLLM's {name}"
                              f"{'' if shard is None else f' (shard {shard})'} is {list(want)} "
                              f"({rules.SHAPE_CHECKED.source})")
        sim.loaded[stored] = name if shard is None else f"{name} (shard {shard})"
        filled.setdefault(name, set()).add("all" if shard is None else shard)
    if sim.parallel_drafting and not has_mask:
        sim.errors.append(f"parallel drafting without mask_hidden in the weights: ValueError "
                          f"({rules.MASK_HIDDEN.source})")
    from_target = set()
    if not has_embed:
        from_target.add("model.embed_tokens.weight")
    if "lm_head.weight" not in filled:
        from_target.add("lm_head.weight")
    for param, spec in params.items():
        need = set(spec) if isinstance(spec, dict) else {"all"}
        have = filled.get(param, set())
        if "all" in have or need <= have:
            continue
        if param in from_target:
            if param == "lm_head.weight" and facts["draft_vocab"] != facts["vocab"]:
                sim.uninitialized.append(f"{param} (the target's full-vocabulary lm_head would be used with a "
                                         f"{facts['draft_vocab']}-token draft vocabulary; "
                                         f"{rules.LM_HEAD_SHARED.source})")
            else:
                sim.from_target.append(param)
        elif not have and _LATER_HIDDEN_NORM.match(param):
            sim.unused.append(param)
        else:
            missing = sorted(map(str, need - have)) if have else []
            sim.uninitialized.append(param + (f" (shards {', '.join(missing)})" if missing else ""))
    for param in filled:
        m = _LATER_HIDDEN_NORM.match(param)
        if m and f"model.layers.{m.group(1)}.input_layernorm.weight" not in filled:
            sim.warnings.append(f"{param} is loaded but vLLM's layers >= 1 apply input_layernorm, which nothing "
                                f"loads ({rules.LATER_LAYER_NORM.source})")


def _capture(sim: VllmLoad, target_layers: int | None) -> None:
    ids = sim.capture_v1 if sim.runner == "V1" else sim.capture_v2
    default = rules.default_capture(target_layers) if target_layers else None
    sim.capture = ids or default
    if sim.trained is None:
        if ids is None:
            sim.notes.append(f"no aux ids in the config: vLLM captures the target's default layers "
                             f"{rules.CAPTURE_DEFAULT.value} ({rules.CAPTURE_DEFAULT.source})")
        return
    if sim.capture is None:
        sim.warnings.append(f"the {sim.runner} model runner reads no aux ids from this config and captures the "
                            f"target's default {rules.CAPTURE_DEFAULT.value}; the head was trained on {sim.trained} "
                            f"(vLLM numbering): right only on a target whose default these are")
    elif sim.capture != sim.trained:
        how = "its default" if ids is None else f"{ids} from the config"
        sim.warnings.append(f"the {sim.runner} model runner captures {sim.capture} ({how}); the head was trained on "
                            f"{sim.trained} (vLLM numbering: SGLang's ids + 1)")
    other, other_ids = ("V1", sim.capture_v1) if sim.runner == "V2" else ("V2", sim.capture_v2)
    other_capture = other_ids or default
    if other_capture is not None and other_capture != sim.trained and not sim.warnings:
        sim.notes.append(f"the {other} model runner would capture {other_capture} (it reads the ids differently: "
                         f"{rules.CAPTURE_V1.source if other == 'V1' else rules.CAPTURE_V2.source})")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def speculative_config(draft: str, *, num_speculative_tokens: int, parallel_drafting: bool = False) -> dict[str, Any]:
    """`--speculative-config` for an EAGLE-3 draft dir: the method always named (rules.METHOD)."""
    out: dict[str, Any] = {"method": rules.METHOD.value, "model": draft,
                           "num_speculative_tokens": num_speculative_tokens}
    if parallel_drafting:
        out["parallel_drafting"] = True
    return out
