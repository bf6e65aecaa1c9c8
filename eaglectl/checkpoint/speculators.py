"""speculators-format drafter configs (vLLM's `speculators` trainer) -> the flat config SGLang reads.

A speculators config keeps the decoder dimensions under `transformer_layer_config`, names the class
`Eagle3DraftModel` / `Eagle3Speculator`, and stores `eagle_aux_hidden_state_layer_ids` at the top level in vLLM's
numbering (id k = the input to target layer k, i.e. Hugging Face `hidden_states[k]`; speculators
models/utils.py, vLLM llama.py `aux_hidden_state_layers`). SGLang reads only `eagle_config.
eagle_aux_hidden_state_layer_ids` for the target capture (model_runner.py) and numbers them as layer outputs
(one less on Llama-style targets). The flattening follows vLLM's own translation
(vllm/transformers_utils/configs/speculators/{base,algos}.py), with SGLang's architecture names.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from eaglectl.engines.sglang.aux_ids import Family, family_of, from_input_numbering
from eaglectl.errors import ConfigError
from eaglectl.jsonfile import as_object

ARCHITECTURE = {"eagle3": "LlamaForCausalLMEagle3", "eagle": "LlamaForCausalLMEagle"}
# Trainer bookkeeping SGLang never reads; dropped from the served config.
DROPPED_KEYS = ("speculators_config", "speculators_model_type", "speculators_version", "auto_map",
                "transformer_layer_config", "embed_requires_grad", "eagle_aux_hidden_state_layer_ids")
# Top-level speculators keys that mean the same in SGLang's config (or that eaglectl's checks read).
CARRIED_KEYS = ("draft_vocab_size", "target_hidden_size", "norm_before_residual", "norm_before_fc", "fc_norm",
                "norm_output", "tie_word_embeddings", "torch_dtype", "dtype")


@dataclass
class NormalisedConfig:
    """The config as SGLang would need it, and what was done to get there from the file."""

    config: dict[str, Any]
    format: str = "hf"  # "hf" | "speculators"
    notes: list[str] = field(default_factory=list)  # one line per change, for the export report
    problem: str | None = None  # why the conversion cannot be completed (export refuses)
    verifier: list[str] | None = None  # the target architectures the file names


def is_speculators(config: dict[str, Any]) -> bool:
    return "speculators_model_type" in config or isinstance(config.get("transformer_layer_config"), dict)


def normalise(raw: dict[str, Any], where: str) -> NormalisedConfig:
    """Flatten a speculators config (anything else is returned as it is)."""
    if not is_speculators(raw):
        return NormalisedConfig(raw)
    layer = raw.get("transformer_layer_config")
    if not isinstance(layer, dict):
        raise ConfigError(f"{where}: speculators config without a transformer_layer_config object")
    kind = raw.get("speculators_model_type")
    cfg: dict[str, Any] = copy.deepcopy(layer)
    notes = ["speculators format: transformer_layer_config flattened to the top level, trainer keys dropped "
             "(" + ", ".join(k for k in DROPPED_KEYS if k in raw) + ")"]
    for key in CARRIED_KEYS:
        if key in raw:
            cfg[key] = copy.deepcopy(raw[key])
    if "target_hidden_size" in cfg and cfg["target_hidden_size"] is None:
        del cfg["target_hidden_size"]
        notes.append("target_hidden_size: null dropped (SGLang reads hasattr(): a null would size fc as None)")
    archs = raw.get("architectures")
    if isinstance(kind, str) and kind in ARCHITECTURE:
        cfg["architectures"] = [ARCHITECTURE[kind]]
        notes.append(f"architectures: {archs!r} -> {cfg['architectures']!r}")
    elif archs is not None:
        cfg["architectures"] = archs
    verifier = _verifier_architectures(raw)
    result = NormalisedConfig(cfg, format="speculators", notes=notes, verifier=verifier)
    ids = raw.get("eagle_aux_hidden_state_layer_ids")
    if ids is None:
        notes.append("no aux-layer ids: SGLang's default capture [2, L//2, L-3] is speculators' default too")
        return result
    if not (isinstance(ids, list) and ids and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise ConfigError(f"{where}: eagle_aux_hidden_state_layer_ids must be a list of integers, got {ids!r:.60}")
    family = family_of(None, verifier) if verifier else None
    if family is None:
        result.problem = (f"aux-layer ids {_ids(ids)} are in vLLM numbering (input to layer k) but the config names "
                          f"no verifier (speculators_config.verifier.architectures), so the target family that "
                          f"decides SGLang's numbering is unknown; for a Llama/Qwen-style target SGLang's ids are "
                          f"{_ids([i - 1 for i in ids])}")
        return result
    converted = from_input_numbering(ids, family)
    if converted is None:
        result.problem = _unconvertible(ids, family)
        return result
    cfg["eagle_config"] = {**as_object(cfg.get("eagle_config")),
                           "eagle_aux_hidden_state_layer_ids": converted}
    notes.append(f"eagle_aux_hidden_state_layer_ids {ids} (vLLM numbering, {family.value} target "
                 f"{'/'.join(verifier or [])}) -> eagle_config.eagle_aux_hidden_state_layer_ids {converted}")
    return result


def _unconvertible(ids: list[int], family: Family) -> str:
    if family is Family.deepseek and ids and ids[0] == 1:
        return (f"aux-layer ids {_ids(ids)} (vLLM numbering) start at 1: on a DeepSeek-style target SGLang >= 0.5.13 "
                f"shifts a list starting with 1 by one and takes any other as it is, so no id list captures the "
                f"input of layer 1 together with these layers")
    return f"aux-layer ids {_ids(ids)} (vLLM numbering) include a layer below 1, which SGLang's ids cannot name"


def _ids(ids: list[int], shown: int = 8) -> str:
    """Ids as a message shows them: a config may list a million (8 MB of JSON), a message line names a few."""
    if len(ids) <= shown:
        return str(ids)
    return "[" + ", ".join(str(i)[:20] for i in ids[:shown]) + f", ... ({len(ids)} ids)]"


def _verifier_architectures(raw: dict[str, Any]) -> list[str] | None:
    spec = raw.get("speculators_config")
    verifier = spec.get("verifier") if isinstance(spec, dict) else None
    archs = verifier.get("architectures") if isinstance(verifier, dict) else None
    if isinstance(archs, list) and archs and all(isinstance(a, str) for a in archs):
        return list(archs)
    return None
