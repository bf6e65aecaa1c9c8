"""The draft config SGLang needs, edited as a plain dict (key order and unknown keys kept as they are)."""

from __future__ import annotations

import copy
from typing import Any

from eaglectl.engines.sglang.loader import ARCHITECTURE, rope_only_in_parameters
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
) -> tuple[dict[str, Any], list[str]]:
    """Return the rewritten config and a human line per change. `keep_architecture`: a head SGLang serves with
    its own (non-Llama) loader keeps its class; `untie`: why tie_word_embeddings must become false;
    `draft_vocab_why`: why `draft_vocab` is the value written."""
    cfg = copy.deepcopy(config)
    changes: list[str] = []

    def put(key: str, value: Any, why: str = "") -> None:
        if cfg.get(key) != value:
            changes.append(f"{key}: {cfg.get(key)!r} -> {value!r}" + (f" ({why})" if why else ""))
            cfg[key] = value

    if not keep_architecture:
        put("architectures", [ARCHITECTURE[algorithm]])
    if num_layers is not None:
        put("num_hidden_layers", num_layers)
    if untie:
        put("tie_word_embeddings", False, untie)
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
    if (lost := rope_only_in_parameters(cfg)) is not None:
        params = cfg["rope_parameters"]
        why = f"{lost}; SGLang 0.5.9 (transformers 4) reads only the top-level keys"
        if "rope_theta" in params and "rope_theta" not in cfg:
            put("rope_theta", params["rope_theta"], why)
        if params.get("rope_type", params.get("type", "default")) != "default" and cfg.get("rope_scaling") is None:
            put("rope_scaling", dict(params), why)
    if dtype in DTYPES:
        put("torch_dtype", dtype)
        if "dtype" in cfg:
            put("dtype", dtype)
    return cfg, changes

