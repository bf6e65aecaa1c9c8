"""Bounded cost: pickles (zip records, bombs, views that are not dense tensors)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

from tests.hostile.core import CASES, Bases, Case, _pt, case, edit_pt


# --- bounded cost: pickles --------------------------------------------------------------------------------
def rewrite_zip(path: Path, replace: dict[str, bytes], *, compress: tuple[str, ...] = (),
                extra: int = 0) -> None:
    """Rewrite a torch zip: records whose name ends with a key of `replace` get new bytes, those ending with
    one of `compress` are deflated, and `extra` empty records are added."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        entries = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    prefix = entries[0][0].split("/")[0]
    tmp = path.with_suffix(".rewrite")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in entries:
            payload = next((v for k, v in replace.items() if name.endswith(k)), payload)
            kind = zipfile.ZIP_DEFLATED if name.endswith(compress) else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(name), payload, compress_type=kind)
        for i in range(extra):
            zf.writestr(zipfile.ZipInfo(f"{prefix}/pad/{i}"), b"")
    tmp.replace(path)


def pickle_bomb_bytes(size: int) -> bytes:
    """A valid pickle (protocol 4) of one `size`-byte bytes object: deflates ~1000x."""
    return b"\x80\x04\x8e" + struct.pack("<Q", size) + b"\x00" * size + b"."


@case("pt-pickle-deflated-bomb", "is compressed; torch never compresses its records")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    rewrite_zip(f, {"/data.pkl": pickle_bomb_bytes(32 * 1024 * 1024)}, compress=("/data.pkl",))  # ~32 KB
    return ck


@case("meta-pickle-deflated", "eagle3_meta.pt: zip record")
def _(tmp, bases):
    ck, _f = _pt(tmp, bases)
    rewrite_zip(ck / "eagle3_meta.pt", {}, compress=("/data.pkl",))  # even a benign deflated record
    return ck


@case("pt-storage-deflated", "is compressed")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    rewrite_zip(f, {}, compress=("/data/0",))
    return ck


@case("meta-pickle-oversized", "eagle3_meta.pt: its pickle")
def _(tmp, bases):
    """3 MB of empty-dict opcodes (stored, not compressed): the weights-only unpickler would build ~200 MB of
    Python dicts from them."""
    ck, _f = _pt(tmp, bases)
    payload = b"\x80\x02](" + b"}" * 3_000_000 + b"e."
    rewrite_zip(ck / "eagle3_meta.pt", {"/data.pkl": payload})
    return ck


@case("pt-zip-150k-records", "its zip declares 150")
def _(tmp, bases):
    ck, f = _pt(tmp, bases)
    rewrite_zip(f, {}, extra=150_000)
    return ck


@case("pt-record-past-eof", "past the end of the file")
def _(tmp, bases):
    """A central directory declaring a record larger than the file (sizes patched in place)."""
    import zipfile

    ck, f = _pt(tmp, bases)
    raw = bytearray(f.read_bytes())
    with zipfile.ZipFile(f) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    at = raw.find(b"PK\x01\x02")
    while at >= 0:  # the central record of `info`: patch its compressed and uncompressed sizes
        name_len = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46:at + 46 + name_len].decode() == info.filename:
            struct.pack_into("<LL", raw, at + 20, 10**9, 10**9)
            break
        at = raw.find(b"PK\x01\x02", at + 4)
    f.write_bytes(bytes(raw))
    return ck


def _view_case(key: str, make) -> Callable[[Path, Bases], Path]:
    def build(tmp, bases):
        ck, f = _pt(tmp, bases)
        if key == "meta":
            edit_pt(ck / "eagle3_meta.pt", lambda m: m.__setitem__("selected_token_ids",
                                                                   make(m["selected_token_ids"])))
        else:
            edit_pt(f, lambda s: s.__setitem__("draft_model.fc.weight", make(s["draft_model.fc.weight"])))
        return ck

    return build


def _stride_zero(t):
    import torch

    return torch.ones(1, dtype=t.dtype).as_strided((10**6, 10**6) if t.dim() == 2 else (10**9,),
                                                   (0, 0) if t.dim() == 2 else (0,))


def _sparse(t):
    return t.to_sparse()


def _meta_device(t):
    import torch

    return torch.empty(t.shape, dtype=t.dtype, device="meta")


for _key, _what in (("weights", "draft_model.pt: tensor 'draft_model.fc.weight'"),
                    ("meta", "eagle3_meta.pt: tensor 'selected_token_ids'")):
    CASES.append(Case(f"{_key}-stride-zero-view", _view_case(_key, _stride_zero),
                      f"{_what} is not a dense tensor: its strides"))
    CASES.append(Case(f"{_key}-sparse-tensor", _view_case(_key, _sparse),
                      f"{_what} is a sparse_coo tensor, not a dense tensor"))
    CASES.append(Case(f"{_key}-meta-device-tensor", _view_case(_key, _meta_device),
                      f"{_what} is on the meta device (no data), not a dense tensor"))


@case("pt-views-repeating-one-storage", "views repeating the same stored bytes are refused")
def _(tmp, bases):
    """200 full views of one 24 KB storage: 4.8 MB declared from a ~60 KB file (an export would write it all)."""
    ck, f = _pt(tmp, bases)
    edit_pt(f, lambda s: s.update({f"copy.{i}": s["draft_model.fc.weight"][:] for i in range(200)}))
    return ck


# --- bounded cost: nesting ----------------------------------------------------------------------------------
def nested_lists(depth: int) -> bytes:
    """Pickle opcodes (2 bytes a level) that leave one list nested `depth` levels deep on the stack."""
    return b"]" * depth + b"a" * (depth - 1)


@case("meta-aux-ids-nested-200k-lists", "eagle3_meta.pt: it nests containers over 100 levels deep")
def _(tmp, bases):
    """Aux ids as a list nested 200,000 deep: naming the bad value (its repr) overflowed the recursion limit, and
    walking it built a path string per level (quadratic time)."""
    ck, _f = _pt(tmp, bases)
    payload = b"\x80\x02}X\x20\x00\x00\x00eagle_aux_hidden_state_layer_ids" + nested_lists(200_000) + b"s."
    rewrite_zip(ck / "eagle3_meta.pt", {"/data.pkl": payload})
    return ck


@case("pt-value-nested-5000-tuples", "draft_model.pt: its pickle nests tuples over 100 levels deep")
def _(tmp, bases):
    """A value of 5,000 nested tuples (one byte a level, `TUPLE1`): refused before torch unpickles it."""
    ck, f = _pt(tmp, bases)
    rewrite_zip(f, {"/data.pkl": b"\x80\x02}X\x01\x00\x00\x00x)" + b"\x85" * 5000 + b"s."})
    return ck
