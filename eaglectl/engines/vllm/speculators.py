"""The speculators 0.9 format (vLLM's drafter trainer and vLLM's native drafter format), as data with its source,
and what speculators' own `from_pretrained` expects of a directory in it.

Read from `speculators-0.9.0-py3-none-any.whl` (`pip download --no-deps speculators==0.9.0`); paths are the wheel's.
vLLM's reading of the same files is in `rules.py` (SPECULATORS_*) and `loader.parse_config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eaglectl.engines.vllm.rules import Rule, Source

RELEASE = "0.9.0"
E3_CONFIG = "speculators/models/eagle3/config.py"
E3_CORE = "speculators/models/eagle3/core.py"
PE_CONFIG = "speculators/models/peagle/config.py"
PE_CORE = "speculators/models/peagle/core.py"
MODEL = "speculators/model.py"
CONFIG = "speculators/config.py"
DEFINITIONS = "speculators/models/eagle3/model_definitions.py"


def _src(file: str, where: str) -> Source:
    return Source(RELEASE, file, where, project="speculators")


KINDS = Rule(("eagle3", "peagle"), _src(E3_CONFIG, "Eagle3SpeculatorConfig l.14-27; " + PE_CONFIG + " l.13-24"))
ARCHITECTURES = Rule({"eagle3": "Eagle3Speculator", "peagle": "PEagleSpeculator"}, _src(
    E3_CONFIG, "architectures default l.28-31; " + PE_CONFIG + " l.25-28"))
LAYER_MODEL_TYPES = Rule(("llama", "qwen3"), _src(DEFINITIONS, "model_classes l.135-142"))
FLAGS = Rule({"norm_before_residual": False, "norm_before_fc": False, "fc_norm": False, "norm_output": False},
             _src(E3_CONFIG, "Eagle3SpeculatorConfig fields l.43-82 (vLLM reads an absent norm_before_residual as "
                             "true: every flag is written)"))
EXCLUSIVE_FLAGS = Rule(("norm_before_fc", "fc_norm"), _src(E3_CONFIG, "_check_norm_flags l.89-96"))
EMBED_REQUIRES_GRAD = Rule({"eagle3": False, "peagle": True}, _src(E3_CONFIG, "l.84-87; " + PE_CONFIG + " l.37-44"))
PROPOSAL = Rule({"proposal_type": "greedy", "speculative_tokens": 3, "verifier_accept_k": 1, "accept_tolerance": 0.0},
                _src("speculators/proposals/greedy.py", "GreedyTokenProposalConfig l.25-70"))
VERIFIER = Rule("{name_or_path: Hub id or path | null, architectures: [the verifier's]}", _src(
    CONFIG, "VerifierConfig l.40-113"))
NUM_AUX = Rule("len(eagle_aux_hidden_state_layer_ids), else 3", _src(E3_CORE, "Eagle3DraftModel.__init__ l.72-79"))
FC_WIDTH = Rule("the aux count x the draft's hidden_size (target_hidden_size is not used)", _src(
    E3_CORE, "Eagle3DraftModel.__init__ l.75-79"))
FIRST_LAYER = Rule("layer 0: q/k/v over 2 x hidden and a hidden_norm; later layers: the plain decoder layer", _src(
    DEFINITIONS, "Eagle3FirstLayerMixin l.14-40; " + E3_CORE + " l.81-94"))
VOCAB_BUFFERS = Rule("d2t [draft_vocab] int64 and t2d [vocab] bool, only when draft_vocab_size differs from "
                     "transformer_layer_config.vocab_size", _src(MODEL, "DraftVocabMixin._init_vocab l.37-55"))
MASK_HIDDEN = Rule("mask_hidden [1, 1, aux count x hidden]", _src(PE_CORE, "PEagleDraftModel.__init__ l.44-52"))
IGNORED_MISSING = Rule(("embed_tokens.weight", "verifier_norm.weight", "verifier_lm_head.weight", "d2t", "t2d",
                        "input_norm.weight"),
                       _src(E3_CORE, "Eagle3DraftModel._keys_to_ignore_on_load_missing l.31-38 (a missing d2t is "
                                     "an all-zero map: never rely on it)"))
NOT_SAVED = Rule(("verifier_lm_head.weight", "verifier_norm.weight"), _src(E3_CORE, "_keys_to_ignore_on_save l.39-42"))
NO_TOP_LEVEL_MODEL_TYPE = Rule(True, _src(CONFIG, "SpeculatorModelConfig.to_dict l.309-338 (class variables, "
                                                  "model_type among them, are left out)"))


@dataclass
class KeyCheck:
    """speculators' `from_pretrained` over a directory: what its model class would miss, not take, or refuse."""

    missing: list[str]  # required, not stored (beyond the ignored ones)
    unexpected: list[str]
    shape_errors: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_errors)


def expected_keys(raw: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The saved state-dict keys of the model class a speculators config builds, with shapes."""
    found = raw.get("transformer_layer_config")
    layer: dict[str, Any] = found if isinstance(found, dict) else {}
    hidden = int(layer.get("hidden_size") or 0)
    heads = int(layer.get("num_attention_heads") or 1)
    kv = int(layer.get("num_key_value_heads") or heads)
    head_dim = int(layer.get("head_dim") or hidden // heads)
    inter = int(layer.get("intermediate_size") or 0)
    vocab = int(layer.get("vocab_size") or 0)
    draft_vocab = int(raw.get("draft_vocab_size") or 32000)
    layers = int(layer.get("num_hidden_layers") or 1)
    ids = raw.get("eagle_aux_hidden_state_layer_ids")
    num_aux = len(ids) if isinstance(ids, list) and ids else 3
    keys: dict[str, tuple[int, ...]] = {"embed_tokens.weight": (vocab, hidden), "fc.weight": (hidden, num_aux * hidden),
                                        "norm.weight": (hidden,), "lm_head.weight": (draft_vocab, hidden)}
    if draft_vocab != vocab:
        keys.update({"d2t": (draft_vocab,), "t2d": (vocab,)})
    for i in range(layers):
        width = 2 * hidden if i == 0 else hidden
        p = f"layers.{i}."
        keys.update({f"{p}self_attn.q_proj.weight": (heads * head_dim, width),
                     f"{p}self_attn.k_proj.weight": (kv * head_dim, width),
                     f"{p}self_attn.v_proj.weight": (kv * head_dim, width),
                     f"{p}self_attn.o_proj.weight": (hidden, heads * head_dim),
                     f"{p}mlp.gate_proj.weight": (inter, hidden), f"{p}mlp.up_proj.weight": (inter, hidden),
                     f"{p}mlp.down_proj.weight": (hidden, inter), f"{p}input_layernorm.weight": (hidden,),
                     f"{p}post_attention_layernorm.weight": (hidden,)})
        if layer.get("attention_bias"):
            keys.update({f"{p}self_attn.q_proj.bias": (heads * head_dim,),
                         f"{p}self_attn.k_proj.bias": (kv * head_dim,),
                         f"{p}self_attn.v_proj.bias": (kv * head_dim,), f"{p}self_attn.o_proj.bias": (hidden,)})
        if layer.get("model_type") == "qwen3":
            keys.update({f"{p}self_attn.q_norm.weight": (head_dim,), f"{p}self_attn.k_norm.weight": (head_dim,)})
        if i == 0:
            keys[f"{p}hidden_norm.weight"] = (hidden,)
    if raw.get("norm_before_fc"):
        keys["input_norm.weight"] = (num_aux * hidden,)
    if raw.get("fc_norm"):
        keys.update({f"fc_norm.{j}.weight": (hidden,) for j in range(num_aux)})
    if raw.get("speculators_model_type") == "peagle":
        keys["mask_hidden"] = (1, 1, num_aux * hidden)
    return keys


def check_keys(raw: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> KeyCheck:
    """What speculators' `from_pretrained` (strict about everything but IGNORED_MISSING) would say of `shapes`."""
    want = expected_keys(raw)
    ignored = set(IGNORED_MISSING.value) | ({"mask_hidden"} if raw.get("speculators_model_type") == "peagle" else set())
    missing = sorted(k for k in want if k not in shapes and k not in ignored)
    unexpected = sorted(k for k in shapes if k not in want)
    shape_errors = [f"{k}: stored {list(shapes[k])}, speculators builds {list(want[k])}"
                    for k in sorted(shapes) if k in want and tuple(shapes[k]) != want[k]]
    return KeyCheck(missing, unexpected, shape_errors)
