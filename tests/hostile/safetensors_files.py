"""Safetensors files broken in their header, offsets, dtypes, shapes or file type."""

from __future__ import annotations

import os

from tests.hostile.core import _st, case, edit_header, raw_header, replaced_case

# --- safetensors -------------------------------------------------------------------------------------------
replaced_case("st-empty", "truncated safetensors file (0 bytes", "st", b"")
replaced_case("st-shorter-than-header-length", "truncated safetensors file (3 bytes", "st", b"\x01\x02\x03")


@case("st-header-length-huge", "corrupt safetensors header length 9223372036854775808")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    raw_header(f, 2**63, b"{}")
    return ck


@case("st-header-length-past-eof", "corrupt safetensors header length 4096")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    raw_header(f, 4096, b"{}" + b" " * 100)
    return ck


@case("st-header-not-json", "safetensors header is not valid JSON")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    raw_header(f, 16, b"{not json at all")
    return ck


@case("st-header-not-utf8", "safetensors header is not valid JSON")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    raw_header(f, 8, b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8")
    return ck


@case("st-header-a-list", "safetensors header is not a JSON object")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    raw_header(f, 8, b"[1,2,3] ")
    return ck


@case("st-offsets-past-eof", "lies past the end of the file")
def _(tmp, bases):
    ck, f = _st(tmp, bases)

    def edit(h):
        b, e = h["model.fc.weight"]["data_offsets"]
        h["model.fc.weight"]["data_offsets"] = [b + 10**9, e + 10**9]

    edit_header(f, edit)
    return ck


@case("st-offsets-wrong-span", "spans 24578 bytes but BF16[64, 192] needs 24576")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h["model.fc.weight"]["data_offsets"].__setitem__(
        1, h["model.fc.weight"]["data_offsets"][1] + 2))
    return ck


@case("st-offsets-reversed", "invalid data offsets")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h["model.fc.weight"].__setitem__(
        "data_offsets", h["model.fc.weight"]["data_offsets"][::-1]))
    return ck


@case("st-offsets-overlap", "corrupt safetensors file")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h["model.norm.weight"].__setitem__(
        "data_offsets", list(h["model.layers.0.input_layernorm.weight"]["data_offsets"])))
    return ck


@case("st-dtype-unknown", "unknown dtype 'F17'")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h["model.fc.weight"].__setitem__("dtype", "F17"))
    return ck


@case("st-shape-negative", "invalid shape [-64, 192]")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h["model.fc.weight"].__setitem__("shape", [-64, 192]))
    return ck


@case("st-shape-overflowing", "needs 2417851639229258349412352")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h["model.fc.weight"].__setitem__("shape", [2**40, 2**40]))
    return ck


@case("st-entry-malformed", "malformed header entry for tensor 'model.fc.weight'")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h.__setitem__("model.fc.weight", "oops"))
    return ck


@case("st-metadata-not-strings", "corrupt safetensors file")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h.__setitem__("__metadata__", {"format": 1}))
    return ck


@case("st-truncated-data", "lies past the end of the file")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) * 2 // 3])
    return ck


@case("st-fifo", "not a regular file")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    f.unlink()
    os.mkfifo(f)  # reading it would block forever
    return ck


@case("st-directory", "not a regular file")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    f.unlink()
    f.mkdir()
    return ck
