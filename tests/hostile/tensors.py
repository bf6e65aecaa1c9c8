"""Tensors that contradict the config, and heads SGLang would serve wrong without a message."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from eaglectl.engines.sglang.rules import NEWEST_KNOWN
from tests.hostile.core import COMMANDS, Bases, _cfg, _pt, case, copy_base, edit_pt, load_st


# --- tensors vs config -------------------------------------------------------------------------------
@case("shapes-contradict-config", f"SGLang {NEWEST_KNOWN} expects", inspect_finding=True, succeeds=("token-map",))
def _(tmp, bases):
    return _cfg(tmp, bases, hidden_size=128)


@case("fc-wrong-width", "fc.weight: stored [64, 100]", inspect_finding=True, succeeds=("token-map",))
def _(tmp, bases):
    import torch

    from eaglectl.demo.samples import save_safetensors

    ck = copy_base(bases, "st", tmp)
    t = load_st(ck / "model.safetensors")
    t["model.fc.weight"] = torch.zeros(64, 100, dtype=torch.bfloat16)
    save_safetensors(ck / "model.safetensors", t)
    return ck


@case("layers-not-numbered-from-0", "decoder layers [1] are not numbered 0..0", inspect_finding=True)
def _(tmp, bases):
    from eaglectl.demo.samples import save_safetensors

    ck = copy_base(bases, "st", tmp)
    t = load_st(ck / "model.safetensors")
    save_safetensors(ck / "model.safetensors", {k.replace("layers.0.", "layers.1."): v for k, v in t.items()})
    return ck


@case("no-decoder-layers", "no decoder-layer weights", inspect_finding=True)
def _(tmp, bases):
    from eaglectl.demo.samples import save_safetensors

    ck = copy_base(bases, "st", tmp)
    t = load_st(ck / "model.safetensors")
    save_safetensors(ck / "model.safetensors", {k: v for k, v in t.items() if "layers." not in k})
    return ck


@case("nan-and-inf-weights", "", succeeds=COMMANDS, warning="non-finite")
def _(tmp, bases):
    import math

    from eaglectl.demo.samples import save_safetensors

    ck = copy_base(bases, "st", tmp)
    t = load_st(ck / "model.safetensors")
    t["model.fc.weight"][3, 5] = math.nan
    t["lm_head.weight"][7, 1] = math.inf
    t["lm_head.weight"][8, 2] = -math.inf
    save_safetensors(ck / "model.safetensors", t)
    return ck


@case("inf-weights-in-pickle", "", succeeds=COMMANDS, warning="non-finite")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    edit_pt(f, lambda s: s["draft_model.layers.0.mlp.down_proj.weight"].__setitem__((0, 0), math.inf))
    return ck


# --- heads SGLang would serve wrong without a message (docs/failure-modes.md): refused, nothing written --------------
def _st_edit(tmp: Path, bases: Bases, edit: Callable[[dict], None], **config) -> Path:
    from eaglectl.demo.samples import save_safetensors

    ck = _cfg(tmp, bases, **config)
    t = load_st(ck / "model.safetensors")
    edit(t)
    save_safetensors(ck / "model.safetensors", t)
    return ck


@case("d2t-all-zero", "d2t holds only zeros", inspect_finding=True)
def _(tmp, bases):
    return _st_edit(tmp, bases, lambda t: t["d2t"].zero_())


@case("norm-before-residual", "norm_before_residual is true", inspect_finding=True, succeeds=("token-map",))
def _(tmp, bases):
    return _cfg(tmp, bases, norm_before_residual=True)


@case("tied-reduced-vocab-no-lm-head", "tie_word_embeddings is true with a 128-token draft vocab",
      inspect_finding=True, succeeds=("token-map",))
def _(tmp, bases):
    return _st_edit(tmp, bases, lambda t: t.pop("lm_head.weight"), tie_word_embeddings=True)


@case("narrow-draft-without-embeddings", "target_hidden_size 128 != hidden_size 64", inspect_finding=True,
      succeeds=("token-map",))
def _(tmp, bases):
    import torch

    return _st_edit(tmp, bases, lambda t: t.update({"model.fc.weight": torch.zeros(64, 384, dtype=torch.bfloat16)}),
                    target_hidden_size=128)
