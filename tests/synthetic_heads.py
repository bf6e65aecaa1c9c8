"""Synthetic EAGLE-3 (and EAGLE-1) heads for the SGLang rule tests: a config and tensor shapes (or files) with one
feature each.

Sizes follow eaglectl.demo.samples (hidden 64, 4 heads of 16, 2 KV heads, vocab 512, draft vocab 128).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eaglectl.demo.samples import DRAFT_VOCAB, HEAD_DIM, HEADS, INTER, KV, VOCAB, H, draft_config, save_json

Shapes = dict[str, tuple[int, ...]]


def layer(prefix: str, *, first: bool, o_bias: bool = False, qkv_bias: bool = False) -> Shapes:
    q, kv, width = HEADS * HEAD_DIM, KV * HEAD_DIM, 2 * H if first else H
    t: Shapes = {f"{prefix}self_attn.q_proj.weight": (q, width), f"{prefix}self_attn.k_proj.weight": (kv, width),
                 f"{prefix}self_attn.v_proj.weight": (kv, width), f"{prefix}self_attn.o_proj.weight": (H, q),
                 f"{prefix}mlp.gate_proj.weight": (INTER, H), f"{prefix}mlp.up_proj.weight": (INTER, H),
                 f"{prefix}mlp.down_proj.weight": (H, INTER)}
    for n in ("input_layernorm", "hidden_norm", "post_attention_layernorm"):
        t[f"{prefix}{n}.weight"] = (H,)
    if o_bias:
        t[f"{prefix}self_attn.o_proj.bias"] = (H,)
    if qkv_bias:
        t.update({f"{prefix}self_attn.q_proj.bias": (q,), f"{prefix}self_attn.k_proj.bias": (kv,),
                  f"{prefix}self_attn.v_proj.bias": (kv,)})
    return t


def head(*, layers: int = 1, names: str | None = None, n_aux: int = 3, norms: str | None = None,
         input_norm: bool = False, o_bias: bool = False, fc_bias: bool = False, qkv_bias: bool = False,
         embed: bool = False, **config: Any) -> tuple[dict[str, Any], Shapes]:
    """(config, shapes). names: "midlayer" or "layers" (default: midlayer for one layer, layers.N otherwise);
    norms: "fc_norm" (fc_norm.N.weight) or "aux_norm" (the legacy aux_norm_low/mid/high names)."""
    cfg = draft_config(architectures=["LlamaForCausalLMEagle3"], num_layers=layers, **config)
    names = names or ("midlayer" if layers == 1 else "layers")
    shapes: Shapes = {"fc.weight": (H, n_aux * H), "norm.weight": (H,), "lm_head.weight": (DRAFT_VOCAB, H),
                      "d2t": (DRAFT_VOCAB,), "t2d": (VOCAB,)}
    for i in range(layers):
        prefix = "midlayer." if names == "midlayer" else f"layers.{i}."
        shapes.update(layer(prefix, first=i == 0, o_bias=o_bias, qkv_bias=qkv_bias))
    if fc_bias:
        shapes["fc.bias"] = (H,)
    if norms == "fc_norm":
        shapes.update({f"fc_norm.{i}.weight": (H,) for i in range(n_aux)})
    elif norms == "aux_norm":
        shapes.update({f"aux_norm_{p}.weight": (H,) for p in ("low", "mid", "high")})
    if input_norm:
        shapes["input_norm.weight"] = (n_aux * H,)
    if embed:
        shapes["embed_tokens.weight"] = (VOCAB, H)
    return cfg, shapes


def eagle1_head(*, o_bias: bool = False, qkv_bias: bool = False, extra: Shapes | None = None,
                **config: Any) -> tuple[dict[str, Any], Shapes]:
    """(config, shapes) of an EAGLE-1 head as eaglectl.demo.samples builds one (LlamaForCausalLMEagle, one layer
    without input_layernorm, fc 2H -> H with a bias, embeddings), plus `extra` tensors."""
    cfg = draft_config(architectures=["LlamaForCausalLMEagle"], num_layers=1, eagle3=False, **config)
    shapes = layer("layers.0.", first=False, o_bias=o_bias, qkv_bias=qkv_bias)
    del shapes["layers.0.input_layernorm.weight"], shapes["layers.0.hidden_norm.weight"]
    shapes.update({"fc.weight": (H, 2 * H), "fc.bias": (H,), "embed_tokens.weight": (VOCAB, H), **(extra or {})})
    return cfg, shapes


def write(directory: Path, cfg: dict[str, Any], shapes: Shapes) -> Path:
    """The head as an SGLang-style directory (config.json + model.safetensors; constant weights, a d2t
    mapping draft id i to target id 2i, the matching t2d)."""
    import torch

    from eaglectl.demo.samples import save_safetensors

    def tensor(name: str, shape: tuple[int, ...]) -> Any:
        if name == "d2t":  # draft id i -> target id 2i
            return torch.arange(shape[0], dtype=torch.int64)
        if name == "t2d":
            mask = torch.zeros(shape, dtype=torch.bool)
            mask[torch.arange(DRAFT_VOCAB) * 2] = True
            return mask
        return torch.full(shape, 0.01, dtype=torch.bfloat16)

    save_json(directory / "config.json", cfg)
    save_safetensors(directory / "model.safetensors", {n: tensor(n, s) for n, s in shapes.items()})
    return directory
