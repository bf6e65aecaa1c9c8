"""Weight names: from whatever a trainer wrote to the names SGLang's Llama EAGLE / EAGLE-3 loaders consume.

Trainers prefix names (`draft_model.`, `module.`, `_orig_mod.`, `model.`) and spell the decoder layer as
`layers.N` or `midlayer`. We strip the prefixes, read the layer index, and write the canonical name:
EAGLE-3 with one layer -> `midlayer.*` (loads in every known SGLang release), deeper EAGLE-3 -> `layers.N.*`,
EAGLE -> `layers.N.*` (its loader prepends `model.` itself).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from eaglectl.enums import Algorithm

STRIP_PREFIXES = ("draft_model.", "module.", "_orig_mod.", "model.")
_LAYER = re.compile(r"^(?:layers\.(\d+)|midlayer)\.(.+)$")

LAYER_SUFFIXES = frozenset(
    [f"self_attn.{p}_proj.{k}" for p in ("q", "k", "v", "o") for k in ("weight", "bias")]
    + ["self_attn.qkv_proj.weight", "self_attn.qkv_proj.bias", "mlp.gate_up_proj.weight"]
    + [f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    + ["input_layernorm.weight", "post_attention_layernorm.weight", "hidden_norm.weight"]
)
# input_norm.weight: the pre-fc norm of norm_before_fc heads (SGLang 0.5.17+ loads it; never dropped as unused)
TOP_LEVEL = frozenset(["fc.weight", "fc.bias", "norm.weight", "embed_tokens.weight", "lm_head.weight", "d2t", "t2d",
                       "input_norm.weight"])
_FC_NORM = re.compile(r"^(?:fc_norm\.(\d+)|aux_norm_(low|mid|high))\.weight$")
P_EAGLE_TENSORS = ("mask_hidden", "mask_token", "mask_embedding")


@dataclass(frozen=True)
class ParsedName:
    """A stored tensor name split into what matters for the loaders."""

    source: str
    base: str  # prefixes stripped, layer spelled `layers.N.`
    layer: int | None
    suffix: str  # inside the layer (or the whole base for top-level tensors)
    known: bool  # a parameter some SGLang Llama EAGLE loader consumes


def strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if name.startswith(prefix) and name != prefix:
                name = name[len(prefix):]
                changed = True
    return name


@functools.lru_cache(maxsize=65536)  # names are parsed by detection, planning and inspection alike
def parse_name(name: str) -> ParsedName:
    base = strip_prefixes(name)
    m = _LAYER.match(base)
    if m:
        layer = int(m.group(1)) if m.group(1) is not None else 0
        suffix = m.group(2)
        return ParsedName(name, f"layers.{layer}.{suffix}", layer, suffix, suffix in LAYER_SUFFIXES)
    fcn = _FC_NORM.match(base)
    if fcn:
        idx = int(fcn.group(1)) if fcn.group(1) is not None else ("low", "mid", "high").index(fcn.group(2))
        return ParsedName(name, f"fc_norm.{idx}.weight", None, f"fc_norm.{idx}.weight", True)
    return ParsedName(name, base, None, base, base in TOP_LEVEL)


def layer_indices(names) -> list[int]:
    return sorted({p.layer for p in map(parse_name, names) if p.layer is not None and p.known})


def canonical_name(parsed: ParsedName, *, algorithm: Algorithm, num_layers: int) -> str:
    """The name eaglectl writes for this tensor."""
    if parsed.layer is None:
        return parsed.base
    if algorithm is Algorithm.EAGLE3 and num_layers == 1:
        return f"midlayer.{parsed.suffix}"
    return f"layers.{parsed.layer}.{parsed.suffix}"


def is_p_eagle_tensor(name: str) -> bool:
    base = strip_prefixes(name)
    return any(base == t or base.startswith(t + ".") for t in P_EAGLE_TENSORS)
