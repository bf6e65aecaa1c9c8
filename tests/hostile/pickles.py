"""Torch pickles: code in them, the wrong object, bad dtypes, truncation; broken eagle3_meta.pt."""

from __future__ import annotations

import pickle

from tests.hostile.core import MARKER, Evil, _pt, case, copy_base, edit_pt, replaced_case


# --- pickles ---------------------------------------------------------------------------------------------
@case("pt-pickled-code", "refused to unpickle: it needs objects beyond tensors (global io.open)")
def _(tmp, bases):
    import torch

    ck, f = _pt(tmp, bases)
    state = torch.load(f, weights_only=True)
    torch.save({**state, "optimizer_hook": Evil(tmp / MARKER)}, f)
    return ck


@case("pt-raw-pickled-code", "not a readable torch checkpoint")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    f.write_bytes(pickle.dumps({"fc.weight": Evil(tmp / MARKER)}))
    return ck


@case("meta-pickled-code", "refused to unpickle: it needs objects beyond tensors (global io.open)")
def _(tmp, bases):
    import torch

    ck, _f = _pt(tmp, bases)
    meta = torch.load(ck / "eagle3_meta.pt", weights_only=True)
    torch.save({**meta, "callback": Evil(tmp / MARKER)}, ck / "eagle3_meta.pt")
    return ck


@case("bin-pickled-code", "refused to unpickle: it needs objects beyond tensors (global io.open)")
def _(tmp, bases):
    import torch

    from eaglectl.demo.samples import d2t_t2d, eagle3_tensors

    ck = copy_base(bases, "st", tmp)
    (ck / "model.safetensors").unlink()
    torch.save({**eagle3_tensors("midlayer.", ""), **d2t_t2d(), "hook": Evil(tmp / MARKER)},
               ck / "pytorch_model.bin")
    return ck


@case("pt-holds-a-list", "holds a list, not a dict of tensors")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    edit_pt(f, lambda s: list(s.values()))
    return ck


@case("pt-holds-an-int", "holds an int, not a dict of tensors")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    edit_pt(f, lambda s: 42)
    return ck


@case("pt-holds-a-string", "holds a str, not a dict of tensors")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    edit_pt(f, lambda s: "draft_model")
    return ck


@case("pt-nested-non-tensors", "holds no tensors (keys: state_dict, epoch)")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    edit_pt(f, lambda s: {"state_dict": {"fc.weight": [[1.0, 2.0]], "opt": {"lr": 0.1}}, "epoch": 3})
    return ck


@case("pt-complex-dtype", "'draft_model.fc.weight' has unsupported dtype torch.complex64")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    edit_pt(f, lambda s: s.__setitem__("draft_model.fc.weight", s["draft_model.fc.weight"].float().to(
        __import__("torch").complex64)))
    return ck


replaced_case("pt-empty", "draft_model.pt: empty file", "pt", b"")
replaced_case("pt-garbage", "not a readable torch checkpoint", "pt", bytes(range(256)) * 64)


@case("pt-truncated", "not a readable torch checkpoint")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    return ck


@case("meta-not-a-dict", "meta file holds a list, not a dict")
def _(tmp, bases):
    ck, _f = _pt(tmp, bases)
    edit_pt(ck / "eagle3_meta.pt", lambda m: [m["selected_token_ids"]])
    return ck


@case("meta-float-ids", "selected_token_ids must be a 1-D integer tensor")
def _(tmp, bases):
    ck, _f = _pt(tmp, bases)
    edit_pt(ck / "eagle3_meta.pt", lambda m: m.__setitem__("selected_token_ids", m["selected_token_ids"].float()))
    return ck


@case("meta-empty", "eagle3_meta.pt: empty file")
def _(tmp, bases):
    ck, _f = _pt(tmp, bases)
    (ck / "eagle3_meta.pt").write_bytes(b"")
    return ck
