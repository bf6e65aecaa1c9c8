"""`export --format speculators`: the speculators 0.9 layout (vLLM's native drafter format) as a config and name
mapping over the plan every export makes. The tables it follows are `eaglectl.engines.vllm.speculators` (what
speculators writes and loads) and `eaglectl.engines.vllm.rules` (how vLLM reads it).

What it writes, beyond SGLang's export: `speculators_model_type` (`eagle3`, or `peagle` for a parallel-drafting
head, with its `mask_token_id` and `mask_hidden` [1, 1, N]), `speculators_config` (greedy proposal, the verifier),
`transformer_layer_config` (the decoder dimensions), the top-level aux ids in vLLM's numbering, every norm flag
written out (vLLM reads an absent `norm_before_residual` as true, speculators as false), `layers.N.*` names, and
d2t / t2d both or neither (a full-vocabulary head has neither: vLLM refuses a d2t there).
"""

from __future__ import annotations

import copy
from typing import Any

from eaglectl.engines.vllm import speculators as spec
from eaglectl.errors import ConfigError, UnsupportedDraftError
from eaglectl.hub import expand_user
from eaglectl.jsonfile import as_object, config_int, read_json_object

# keys of the flat (SGLang) config that become speculators' own top-level fields, or are dropped
TOP_LEVEL = ("draft_vocab_size", "target_hidden_size", "eagle_aux_hidden_state_layer_ids", *spec.FLAGS.value)
DROPPED = ("architectures", "eagle_config", "parallel_drafting", "mask_token_id", "auto_map", "num_aux_hidden_states",
           "use_aux_norm", "bias")
EXPORT_DIR = "speculators"  # the default output: a new directory beside the checkpoint's files


def kind_of(config: dict[str, Any], names: list[str]) -> str:
    """`peagle` for a parallel-drafting head (its mask_hidden stored, or the config says so), else `eagle3`."""
    if config.get("parallel_drafting") is True or any(n.rsplit(".", 1)[-1] == "mask_hidden" for n in names):
        return "peagle"
    return "eagle3"


def verifier_architectures(verifier: str | None) -> tuple[list[str], str | None]:
    """The verifier's `architectures`, read from its config.json when `verifier` is a local directory; a note
    when they had to be assumed (eaglectl's aux-id conversion assumes a Llama-style target too)."""
    if verifier is not None:
        p = expand_user(verifier, ConfigError)
        try:  # a name too long, a directory that may not be searched: said, not a traceback
            cfg_path = p / "config.json" if p.is_dir() else p if p.is_file() else None
        except OSError as exc:
            raise ConfigError(f"--verifier {verifier}: cannot access ({exc.strerror or exc})") from exc
        if cfg_path is not None:  # read as a regular file within the config limits: a FIFO or a weights file is
            doc = read_json_object(cfg_path, what="verifier config")  # refused before it is read
            archs = doc.get("architectures")
            if isinstance(archs, list) and archs and all(isinstance(a, str) for a in archs):
                return list(archs), None
    why = ("no --verifier given" if verifier is None else f"--verifier {verifier} is no local model directory")
    return ["LlamaForCausalLM"], (f"speculators_config.verifier.architectures: {why}; written as LlamaForCausalLM "
                                  f"(the Llama-style target the aux-id numbering assumes)")


def to_speculators(flat: dict[str, Any], *, kind: str, aux_ids: list[int] | None, num_layers: int,
                   fc_width: int | None, verifier: str | None,
                   speculative_tokens: int = 3) -> tuple[dict[str, Any], list[str]]:
    """The speculators config of a head whose SGLang-dialect config is `flat` (as export rewrites it). `aux_ids`:
    SGLang's numbering (eagle_config's); written in vLLM's (+ 1). Returns the config and a line per decision."""
    notes: list[str] = []
    eagle_cfg = as_object(flat.get("eagle_config"))
    flags = {k: bool(eagle_cfg[k] if k in eagle_cfg else flat.get(k, default))
             for k, default in spec.FLAGS.value.items()}
    if flags["norm_before_fc"] and flags["fc_norm"]:
        raise UnsupportedDraftError("the head sets both norm_before_fc and fc_norm, which speculators' config refuses "
                                    f"({spec.EXCLUSIVE_FLAGS.source})")
    if eagle_cfg.get("use_aux_hidden_state", True) is False:
        raise UnsupportedDraftError("eagle_config.use_aux_hidden_state is false: speculators has no such switch")
    hidden = config_int(flat, "hidden_size") or 0
    num_aux = len(aux_ids) if aux_ids else 3
    if fc_width is not None and hidden and fc_width != num_aux * hidden:
        target_hidden = config_int(flat, "target_hidden_size") or hidden
        if fc_width == num_aux * target_hidden:
            notes.append(f"fc takes {num_aux} x target_hidden_size {target_hidden}: vLLM reads target_hidden_size; "
                         f"speculators' own model sizes fc from the draft's hidden_size {hidden} and cannot load it "
                         f"({spec.FC_WIDTH.source})")
        else:
            raise UnsupportedDraftError(
                f"fc.weight takes {fc_width} inputs but "
                f"{'the aux ids name' if aux_ids else 'no aux ids are recorded: '}{num_aux} aux states of {hidden}: "
                f"a speculators config sizes fc from the aux-id count ({spec.NUM_AUX.source})",
                hint="pass --aux-layer-ids with the ids the head was trained with")
    layer = copy.deepcopy({k: v for k, v in flat.items() if k not in (*TOP_LEVEL, *DROPPED)})
    layer.setdefault("model_type", "llama")
    if layer["model_type"] not in spec.LAYER_MODEL_TYPES.value:
        raise UnsupportedDraftError(f"model_type {layer['model_type']!r}: speculators (and vLLM) build EAGLE-3 heads "
                                    f"of {', '.join(spec.LAYER_MODEL_TYPES.value)} layers only")
    layer["num_hidden_layers"] = num_layers
    layer["tie_word_embeddings"] = False
    if num_aux != 3:  # vLLM's speculators route reads the count from here, never from the top-level ids
        layer["num_aux_hidden_states"] = num_aux
    archs, note = verifier_architectures(verifier)
    if note:
        notes.append(note)
    vocab = config_int(flat, "vocab_size")
    draft_vocab = config_int(flat, "draft_vocab_size") or vocab
    out: dict[str, Any] = {
        "architectures": [spec.ARCHITECTURES.value[kind]],
        "speculators_model_type": kind,
        "speculators_version": spec.RELEASE,
        "speculators_config": {
            "algorithm": kind, "default_proposal_method": spec.PROPOSAL.value["proposal_type"],
            "proposal_methods": [{**spec.PROPOSAL.value, "speculative_tokens": speculative_tokens}],
            "verifier": {"name_or_path": verifier, "architectures": archs},
        },
        "draft_vocab_size": draft_vocab,
        "target_hidden_size": config_int(flat, "target_hidden_size"),
        "eagle_aux_hidden_state_layer_ids": [i + 1 for i in aux_ids] if aux_ids else None,
        **flags,
        "embed_requires_grad": spec.EMBED_REQUIRES_GRAD.value[kind],
        "tie_word_embeddings": False,
        "transformer_layer_config": layer,
    }
    for key in ("dtype", "torch_dtype"):
        if key in flat:
            out[key] = flat[key]
    if kind == "peagle":
        mask = flat.get("mask_token_id")
        if not (type(mask) is int and mask >= 0):
            raise UnsupportedDraftError("a P-EAGLE head without mask_token_id in its config: vLLM reads it as the "
                                        "parallel-drafting pad token and fails to start without it",
                                        hint="add the mask_token_id it was trained with to config.json")
        out["mask_token_id"] = mask
    ids = out["eagle_aux_hidden_state_layer_ids"]
    notes.insert(0, f"speculators {spec.RELEASE} format ({kind}): transformer_layer_config holds the decoder "
                    f"dimensions; " + (f"aux ids {ids} in vLLM's numbering; " if ids else
                                      "no aux ids recorded (the target's default layers); ")
                    + ", ".join(f"{k}: {str(v).lower()}" for k, v in flags.items()))
    return out, notes
