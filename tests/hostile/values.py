"""Values, not just shapes: aux layer ids and token-map dtypes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.hostile.core import CASES, Bases, Case, _cfg, _pt, _st, case, edit_pt, load_st


# --- values, not just shapes ---------------------------------------------------------------------------------
@case("meta-aux-ids-bools", "eagle3_meta.pt: eagle_aux_hidden_state_layer_ids must be integer layer indices, "
      "got [True, False, True]")
def _(tmp, bases):
    ck, _f = _pt(tmp, bases)
    edit_pt(ck / "eagle3_meta.pt", lambda m: m.__setitem__("eagle_aux_hidden_state_layer_ids", [True, False, True]))
    return ck


@case("meta-aux-ids-bool-tensor", "eagle_aux_hidden_state_layer_ids must be a 1-D integer tensor")
def _(tmp, bases):
    import torch

    ck, _f = _pt(tmp, bases)
    edit_pt(ck / "eagle3_meta.pt", lambda m: m.__setitem__("eagle_aux_hidden_state_layer_ids",
                                                           torch.tensor([True, False, True])))
    return ck


@case("meta-aux-ids-float-tensor", "eagle_aux_hidden_state_layer_ids must be a 1-D integer tensor")
def _(tmp, bases):
    import torch

    ck, _f = _pt(tmp, bases)
    edit_pt(ck / "eagle3_meta.pt", lambda m: m.__setitem__("eagle_aux_hidden_state_layer_ids",
                                                           torch.tensor([1.5, 3.0, 4.0])))
    return ck


@case("meta-selected-mask-float", "selected_token_mask must be a 1-D bool (or integer) tensor")
def _(tmp, bases):
    ck, _f = _pt(tmp, bases)
    edit_pt(ck / "eagle3_meta.pt", lambda m: m.__setitem__("selected_token_mask",
                                                           m["selected_token_mask"].float() * 0.5))
    return ck


@case("config-aux-ids-bools", "eagle_config.eagle_aux_hidden_state_layer_ids must be integer layer indices")
def _(tmp, bases):
    return _cfg(tmp, bases, eagle_config={"eagle_aux_hidden_state_layer_ids": [True, False, True]})


@case("config-aux-ids-negative", "aux_hidden_state_layer_ids must be layer indices in [0, 4096), got [-1, 3, 4]")
def _(tmp, bases):
    return _cfg(tmp, bases, aux_hidden_state_layer_ids=[-1, 3, 4])


@case("config-aux-ids-a-string", "eagle_aux_hidden_state_layer_ids must be a list of layer indices, got '1,3,4'")
def _(tmp, bases):
    return _cfg(tmp, bases, eagle_aux_hidden_state_layer_ids="1,3,4")


@case("config-aux-ids-floats", "must be integer layer indices, got [1.0, 3.0, 4.0]")
def _(tmp, bases):
    return _cfg(tmp, bases, eagle_config={"eagle_aux_hidden_state_layer_ids": [1.0, 3.0, 4.0]})


def _st_tensor_case(name: str, make) -> Callable[[Path, Bases], Path]:
    def build(tmp, bases):
        from eaglectl.demo.samples import save_safetensors

        ck, f = _st(tmp, bases)
        t = load_st(f)
        t[name] = make(t[name])
        save_safetensors(f, t)
        return ck

    return build


CASES.append(Case("d2t-float-with-fractions", _st_tensor_case("d2t", lambda t: t.double() + 0.5),
                  "d2t has dtype F64; a token map holds integer ids (refused rather than truncated)",
                  inspect_finding=True))
CASES.append(Case("t2d-float", _st_tensor_case("t2d", lambda t: t.float()),
                  "t2d has dtype F32; a token map holds integer ids or bools", inspect_finding=True))
CASES.append(Case("d2t-bool", _st_tensor_case("d2t", lambda t: t != 0), "d2t has dtype BOOL", inspect_finding=True))
# Unsigned 16-64 bit ids: safetensors stores them (written with safetensors' own writer; eaglectl's writes none),
# torch has no arithmetic on them: inspect's d2t / t2d checks must not read them as if it had.
def _st_unsigned_case(name: str, bits: int) -> Callable[[Path, Bases], Path]:
    def build(tmp, bases):
        import torch
        from safetensors.torch import save_file

        ck, f = _st(tmp, bases)
        t = load_st(f)
        t[name] = t[name].to(getattr(torch, f"uint{bits}"))
        save_file(t, str(f))
        return ck

    return build


CASES.append(Case("d2t-uint32", _st_unsigned_case("d2t", 32), "d2t has dtype U32; a token map holds integer ids",
                  inspect_finding=True))
CASES.append(Case("d2t-uint64", _st_unsigned_case("d2t", 64), "d2t has dtype U64; a token map holds integer ids",
                  inspect_finding=True))
CASES.append(Case("t2d-uint16", _st_unsigned_case("t2d", 16),
                  "t2d has dtype U16; a token map holds integer ids or bools", inspect_finding=True))
CASES.append(Case("d2t-two-dimensional", _st_tensor_case("d2t", lambda t: t.reshape(2, -1)),
                  "d2t is a 1-D tensor of integer id offsets", inspect_finding=True))
CASES.append(Case("int8-weight-matrix", _st_tensor_case("model.fc.weight", lambda t: t.to(__import__("torch").int8)),
                  "model.fc.weight has dtype I8; SGLang loads it into a floating-point parameter",
                  inspect_finding=True))
CASES.append(Case("bool-norm-weight", _st_tensor_case("model.norm.weight", lambda t: t != 0),
                  "model.norm.weight has dtype BOOL", inspect_finding=True))
