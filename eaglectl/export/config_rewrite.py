"""The draft config SGLang needs, edited as a plain dict (key order and unknown keys kept as they are), with the
keys vLLM reads beside them, so that one directory reads right in both engines."""

from __future__ import annotations

import copy
from typing import Any

from eaglectl.engines.sglang.loader import ARCHITECTURE, original_context_fill, rope_only_in_parameters
from eaglectl.enums import DTYPES, Algorithm
from eaglectl.jsonfile import as_object


def rewrite_config(
    config: dict[str, Any],
    *,
    algorithm: Algorithm,
    num_layers: int | None,
    draft_vocab: int | None = None,
    target_hidden: int | None = None,
    aux_layer_ids: list[int] | None = None,
    dtype: str | None = None,
    keep_architecture: bool = False,
    untie: str | None = None,
    draft_vocab_why: str = "",
    vllm_only: list[str] | None = None,
    sizes: dict[str, int] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Return the rewritten config and a human line per change. `keep_architecture`: a head SGLang serves with
    its own (non-Llama) loader keeps its class; `untie`: why tie_word_embeddings must become false;
    `draft_vocab_why`: why `draft_vocab` is the value written. `vllm_only` receives the change lines of keys only
    vLLM reads (SGLang serves the head the same without them). `sizes`: sizes the config leaves to its model_type's
    config class, which builds other shapes than the weights hold, written as the weights hold them."""
    cfg = copy.deepcopy(config)
    changes: list[str] = []

    def put(key: str, value: Any, why: str = "", *, vllm: bool = False) -> None:
        if cfg.get(key) != value:
            changes.append(f"{key}: {cfg.get(key)!r} -> {value!r}" + (f" ({why})" if why else ""))
            cfg[key] = value
            if vllm and vllm_only is not None:
                vllm_only.append(changes[-1])

    if not keep_architecture:
        put("architectures", [ARCHITECTURE[algorithm]])
    if num_layers is not None:
        put("num_hidden_layers", num_layers)
    if untie:
        put("tie_word_embeddings", False, untie)
    for key, value in (sizes or {}).items():
        put(key, value, f"absent, so SGLang would take {cfg.get('model_type')}'s config class default; the weights "
                        f"hold {value}")
    if "target_hidden_size" in cfg and cfg["target_hidden_size"] is None:
        del cfg["target_hidden_size"]
        changes.append("target_hidden_size: None dropped (SGLang would size fc from None)")
    if algorithm is Algorithm.EAGLE3:
        if draft_vocab is not None and cfg.get("draft_vocab_size") is None:
            put("draft_vocab_size", draft_vocab, draft_vocab_why)
        elif "draft_vocab_size" not in cfg and not keep_architecture:
            cfg["draft_vocab_size"] = None
            changes.append("draft_vocab_size: absent -> None (SGLang reads the key without a default and fails to "
                           "start without it; null: it serves the target's lm_head)")
        if target_hidden is not None and cfg.get("target_hidden_size") is None:
            put("target_hidden_size", target_hidden)
        if aux_layer_ids is not None:
            eagle_cfg = as_object(cfg.get("eagle_config"))
            if eagle_cfg.get("eagle_aux_hidden_state_layer_ids") != aux_layer_ids:
                changes.append(f"eagle_config.eagle_aux_hidden_state_layer_ids: "
                               f"{eagle_cfg.get('eagle_aux_hidden_state_layer_ids')!r} -> {aux_layer_ids!r}")
                cfg["eagle_config"] = {**eagle_cfg, "eagle_aux_hidden_state_layer_ids": list(aux_layer_ids)}
        if not keep_architecture:
            _vllm_keys(cfg, aux_layer_ids, put)
    if (lost := rope_only_in_parameters(cfg)) is not None:
        params = cfg["rope_parameters"]
        why = f"{lost}; SGLang 0.5.9 (transformers 4) reads only the top-level keys"
        if "rope_theta" in params and "rope_theta" not in cfg:
            put("rope_theta", params["rope_theta"], why)
        if params.get("rope_type", params.get("type", "default")) != "default" and cfg.get("rope_scaling") is None:
            put("rope_scaling", dict(params), why)
    if (fill := original_context_fill(cfg)) is not None:
        scaling, original = fill
        put("rope_scaling", {**scaling, "original_max_position_embeddings": original},
            "transformers 5 (SGLang >= 0.5.10) fills it from max_position_embeddings; SGLang 0.5.9 fails to start "
            "without it")
    if dtype in DTYPES:
        put("torch_dtype", dtype)
        if "dtype" in cfg:
            put("dtype", dtype)
    return cfg, changes



def _vllm_keys(cfg: dict[str, Any], aux_layer_ids: list[int] | None, put) -> None:
    """What vLLM reads and SGLang does not: the aux ids at the top level in vLLM's numbering (both of its model
    runners read them first; the V2 runner never reads eagle_config's), their count when it is not 3 (vLLM sizes
    fc from it, not from the top-level ids), and norm_before_residual written out (absent, a speculators-format
    reading of the directory would take it as true)."""
    if aux_layer_ids is not None:
        put("eagle_aux_hidden_state_layer_ids", [i + 1 for i in aux_layer_ids],
            "for vLLM, which reads these first, in its numbering: eagle_config's ids + 1", vllm=True)
        if len(aux_layer_ids) != 3 and cfg.get("num_aux_hidden_states") is None:
            put("num_aux_hidden_states", len(aux_layer_ids), "vLLM sizes fc from it, else from 3", vllm=True)
    eagle_cfg = as_object(cfg.get("eagle_config"))
    if "norm_before_residual" not in cfg and "norm_before_residual" not in eagle_cfg:
        put("norm_before_residual", False, "written out for vLLM", vllm=True)
