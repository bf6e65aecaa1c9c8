"""A simulation of SGLang's Llama EAGLE / EAGLE-3 weight loaders, read from SGLang's source.

SGLang skips every weight name it does not recognise without a message and leaves parameters nothing
loaded at their random initial values. Replaying its name matching against a checkpoint's tensors tells,
before any GPU is involved, what a real load would consume, skip and leave uninitialised.

Rules per version (python/sglang/srt/models/llama_eagle3.py, llama_eagle.py, llama.py):
- 0.5.9: one decoder layer as `model.midlayer`; `num_hidden_layers` must be 1.
- 0.5.15: `model.layers.{i}` for i < num_hidden_layers; names containing `midlayer` are rewritten to
  `layers.0` first; optional per-aux `fc_norm`; the fc width follows the aux-layer count.
- EAGLE3: a name is tried bare, then with `model.`; names containing `d2t` become the hot-token map,
  `t2d` is ignored; q/k/v and gate/up are stacked shards. Draft embeddings are replaced by the target's.
- EAGLE: every name but `lm_head*` gets `model.` prepended; embeddings and lm_head come from the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eaglectl.enums import Algorithm
from eaglectl.jsonfile import config_int

SGLANG_VERSIONS = ("0.5.9", "0.5.15")
ARCHITECTURE = {Algorithm.EAGLE3: "LlamaForCausalLMEagle3", Algorithm.EAGLE: "LlamaForCausalLMEagle"}
ALGORITHM_OF_ARCHITECTURE = {v: k for k, v in ARCHITECTURE.items()}
_STACKED = ((".qkv_proj", ".q_proj", "q"), (".qkv_proj", ".k_proj", "k"), (".qkv_proj", ".v_proj", "v"),
            (".gate_up_proj", ".gate_proj", 0), (".gate_up_proj", ".up_proj", 1))
_LEGACY_0_5_15 = {"midlayer": "layers.0", "aux_norm_low": "fc_norm.0", "aux_norm_mid": "fc_norm.1",
                  "aux_norm_high": "fc_norm.2"}


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

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> DraftDims:
        def num(key: str, default: int | None = None) -> int | None:
            return config_int(cfg, key, default)

        hidden = num("hidden_size") or 0
        heads = num("num_attention_heads") or 1
        eagle_cfg = cfg.get("eagle_config") if isinstance(cfg.get("eagle_config"), dict) else {}
        aux_ids = eagle_cfg.get("eagle_aux_hidden_state_layer_ids")
        num_aux = num("num_aux_hidden_states") or (len(aux_ids) if isinstance(aux_ids, list) and aux_ids else 3)
        return cls(
            hidden=hidden, heads=heads, kv_heads=num("num_key_value_heads") or heads,
            head_dim=num("head_dim") or (hidden // heads if heads else 0),
            intermediate=num("intermediate_size") or 0, vocab=num("vocab_size") or 0,
            draft_vocab=num("draft_vocab_size"), target_hidden=num("target_hidden_size") or hidden,
            num_layers=num("num_hidden_layers", 1) or 0, num_aux=num_aux,
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)), fc_bias=bool(cfg.get("bias", False)),
            attention_bias=bool(cfg.get("attention_bias", False)),
            fc_norm=bool(cfg.get("fc_norm") or cfg.get("use_aux_norm")),
        )


@dataclass
class LoadSimulation:
    """What one SGLang version's loader would do with a checkpoint."""

    version: str
    algorithm: Algorithm
    loaded: dict[str, str] = field(default_factory=dict)  # stored name -> SGLang parameter
    skipped: list[str] = field(default_factory=list)  # stored names dropped without a message
    ignored_by_design: list[str] = field(default_factory=list)  # t2d; lm_head for EAGLE
    uninitialized: list[str] = field(default_factory=list)  # parameters nothing loaded
    shape_errors: list[str] = field(default_factory=list)
    misshapen: set[str] = field(default_factory=set)  # stored names whose shape SGLang refuses
    from_target: list[str] = field(default_factory=list)  # parameters SGLang takes from the target
    problems: list[str] = field(default_factory=list)  # start-up failures (e.g. layer count)
    hot_token_map: bool = False

    @property
    def ok(self) -> bool:
        return not (self.skipped or self.uninitialized or self.shape_errors or self.problems)


def _layer_params(prefix: str, d: DraftDims, in_dim: int, *, eagle3: bool, first: bool) -> dict[str, Any]:
    q, kv = d.heads * d.head_dim, d.kv_heads * d.head_dim
    p: dict[str, Any] = {
        f"{prefix}self_attn.qkv_proj.weight": {"q": (q, in_dim), "k": (kv, in_dim), "v": (kv, in_dim)},
        f"{prefix}self_attn.o_proj.weight": (d.hidden, q),
        f"{prefix}mlp.gate_up_proj.weight": {0: (d.intermediate, d.hidden), 1: (d.intermediate, d.hidden)},
        f"{prefix}mlp.down_proj.weight": (d.hidden, d.intermediate),
        f"{prefix}post_attention_layernorm.weight": (d.hidden,),
    }
    if d.attention_bias:
        p[f"{prefix}self_attn.qkv_proj.bias"] = {"q": (q,), "k": (kv,), "v": (kv,)}
        p[f"{prefix}self_attn.o_proj.bias"] = (d.hidden,)
    if eagle3:
        p[f"{prefix}hidden_norm.weight"] = (d.hidden,)
    if eagle3 or not first:  # SGLang's EAGLE layer 0 has no input_layernorm
        p[f"{prefix}input_layernorm.weight"] = (d.hidden,)
    return p


def expected_parameters(cfg: dict[str, Any], algorithm: Algorithm, version: str) -> dict[str, Any]:
    """SGLang's `named_parameters()` for the draft model: name -> shape, or {shard_id: shape} when stacked."""
    d = DraftDims.from_config(cfg)
    params: dict[str, Any] = {"model.embed_tokens.weight": (d.vocab, d.hidden)}
    if algorithm is Algorithm.EAGLE3:
        num_aux = 3 if version == "0.5.9" else d.num_aux
        params["model.fc.weight"] = (d.hidden, d.target_hidden * num_aux)
        if d.fc_bias:
            params["model.fc.bias"] = (d.hidden,)
        if d.fc_norm and version != "0.5.9":
            for i in range(num_aux):
                params[f"model.fc_norm.{i}.weight"] = (d.target_hidden,)
        prefixes = ["model.midlayer."] if version == "0.5.9" else [f"model.layers.{i}." for i in range(d.num_layers)]
        for i, prefix in enumerate(prefixes):
            params.update(_layer_params(prefix, d, 2 * d.hidden if i == 0 else d.hidden, eagle3=True, first=i == 0))
        params["model.norm.weight"] = (d.hidden,)
        if not d.tie_embeddings:
            params["lm_head.weight"] = (d.draft_vocab or d.vocab, d.hidden)
    else:
        for i in range(d.num_layers):
            params.update(_layer_params(f"model.layers.{i}.", d, d.hidden, eagle3=False, first=i == 0))
        params["model.fc.weight"] = (d.hidden, 2 * d.hidden)
        params["model.fc.bias"] = (d.hidden,)
        params["lm_head.weight"] = (d.vocab, d.hidden)
    return params


def simulate_load(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]], algorithm: Algorithm,
                  version: str) -> LoadSimulation:
    """Replay `load_weights` of `version` over stored tensor names and shapes."""
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
        filled.setdefault(param, set()).add(shard if shard is not None else "all")

    def load_stacked_or_plain(stored: str, name: str, lookup: Any) -> None:
        """Both loaders' last step: a q/k/v or gate/up weight goes into its fused parameter as a shard,
        anything else loads whole; `lookup(name)` gives the parameter name (or None: skipped)."""
        shard = None
        for param_part, weight_part, stacked_shard in _STACKED:
            if weight_part in name:
                name, shard = name.replace(weight_part, param_part), stacked_shard
                break
        param = lookup(name)
        take(stored, param, shard) if param is not None else sim.skipped.append(stored)

    for stored in shapes:
        if algorithm is Algorithm.EAGLE3:
            name = stored
            if version != "0.5.9":
                for legacy, new in _LEGACY_0_5_15.items():
                    if legacy in name:
                        name = name.replace(legacy, new)
            if "d2t" in name:
                sim.hot_token_map = True
                sim.loaded[stored] = "hot_token_id"
                want = (d.draft_vocab or d.vocab,)
                if tuple(shapes[stored]) != want:
                    sim.shape_errors.append(f"{stored}: stored {list(shapes[stored])}, expected {list(want)}")
                    sim.misshapen.add(stored)
                continue
            if "t2d" in name:
                sim.ignored_by_design.append(stored)
                continue
            load_stacked_or_plain(stored, name, lambda n: next((p for p in (n, f"model.{n}") if p in params), None))
        else:
            if "lm_head" in stored:
                sim.ignored_by_design.append(stored)
                continue
            name = f"model.{stored}"
            if "rotary_emb.inv_freq" in name:
                sim.skipped.append(stored)
                continue
            load_stacked_or_plain(stored, name, lambda n: n if n in params else None)

    from_target = {"model.embed_tokens.weight"}
    if algorithm is Algorithm.EAGLE or (not d.tie_embeddings and d.draft_vocab is None):
        from_target.add("lm_head.weight")
    for param, spec in params.items():
        need = set(spec) if isinstance(spec, dict) else {"all"}
        have = filled.get(param, set())
        if "all" in have or need <= have:
            continue
        if param in from_target:
            sim.from_target.append(param)
        else:
            missing = sorted(map(str, need - have)) if have else []
            sim.uninitialized.append(param + (f" (shards {', '.join(missing)})" if missing else ""))
    if algorithm is Algorithm.EAGLE3 and version == "0.5.9" and d.num_layers != 1:
        sim.problems.append(f"SGLang 0.5.9 builds exactly one EAGLE-3 layer; config says {d.num_layers}")
    return sim
