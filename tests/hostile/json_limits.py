"""Bounded cost: JSON limits and declared counts."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from tests.hostile.core import INDEX, Bases, _cfg, _sharded, _st, case, copy_base, edit_header, edit_json, read_st


# --- bounded cost: JSON limits -----------------------------------------------------------------------------
def _config_with_raw(tmp: Path, bases: Bases, raw: str) -> Path:
    """A config whose last key holds `raw` verbatim (text json.dumps could not write)."""
    ck = copy_base(bases, "st", tmp)
    text = (ck / "config.json").read_text().rstrip().removesuffix("}")
    (ck / "config.json").write_text(text + ', "extra": ' + raw + "}")
    return ck


@case("config-int-5000-digits", "config holds an integer with 5000 digits (at most 40)")
def _(tmp, bases):
    return _config_with_raw(tmp, bases, "9" * 5000)  # past Python's int-string limit: a ValueError unbounded


@case("config-negative-int-5000-digits", "config holds an integer with 5000 digits")
def _(tmp, bases):
    return _config_with_raw(tmp, bases, "-" + "1" * 5000)


@case("config-nested-100-deep", "config nests JSON 101 levels deep (at most 32)")
def _(tmp, bases):
    return _config_with_raw(tmp, bases, "[" * 100 + "]" * 100)


@case("config-nested-objects-in-strings-are-text", "hidden_size must be a positive integer, got '64'")
def _(tmp, bases):
    """Brackets inside strings are text, not nesting: the limits must not refuse this config for them."""
    ck = _config_with_raw(tmp, bases, json.dumps("[" * 5000 + "{" * 5000))
    edit_json(ck / "config.json", lambda c: c.__setitem__("hidden_size", "64"))
    return ck


@case("config-millions-of-values", "config holds over 3500042 JSON values, more than a config has (at most 2000000)")
def _(tmp, bases):
    return _config_with_raw(tmp, bases, "[" + "0," * 3_500_000 + "0]")  # 7 MB: under the size cap


@case("config-many-empty-objects", "config holds 150003 JSON arrays / objects, more than a config has (at most 100000)")
def _(tmp, bases):
    return _config_with_raw(tmp, bases, "[" + "{}," * 149_999 + "{}]")


@case("st-header-int-5000-digits", "safetensors header holds an integer with 5000 digits")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    header, data = read_st(f)
    hb = json.dumps(header).encode()[:-1] + b', "x": {"dtype": "U8", "shape": [' + b"7" * 5000 + b'], ' \
        b'"data_offsets": [0, 0]}}'
    hb += b" " * (-len(hb) % 8)
    f.write_bytes(struct.pack("<Q", len(hb)) + hb + data)
    return ck


@case("st-header-deeply-nested", "safetensors header nests JSON 5 levels deep (at most 3)")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    edit_header(f, lambda h: h["model.fc.weight"].__setitem__("shape", [[[64]], 192]))
    return ck


def _empty_tensors_header(f, names) -> None:
    """`f` rewritten as a safetensors file whose header lists one empty U8 tensor per name (no data)."""
    entry = b'{"dtype":"U8","shape":[0],"data_offsets":[0,0]}'
    hb = b"{" + b",".join(b'"' + name + b'":' + entry for name in names) + b"}"
    hb += b" " * (-len(hb) % 8)
    f.write_bytes(struct.pack("<Q", len(hb)) + hb)


@case("st-header-200k-entries", "safetensors header holds 600001 JSON arrays / objects")
def _(tmp, bases):
    ck, f = _st(tmp, bases)
    _empty_tensors_header(f, (b"t%d" % i for i in range(200_000)))
    return ck


@case("st-header-10001-tensors", "safetensors header lists 10001 tensors (at most 10000)")
def _(tmp, bases):
    """Within the JSON limits, one tensor past the cap: 100,000 one-element tensors (a 7 MB header) cost inspect
    90 s and 0.9 GB, every one replayed against each SGLang release."""
    ck, f = _st(tmp, bases)
    _empty_tensors_header(f, (b"layers.%d.x" % i for i in range(10_001)))
    return ck


@case("index-int-5000-digits", "weight index holds an integer with 5000 digits")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    text = (ck / INDEX).read_text().rstrip().removesuffix("}")
    (ck / INDEX).write_text(text + ', "total_size": ' + "1" * 5000 + "}")
    return ck


@case("index-deeply-nested", "weight index nests JSON 501 levels deep (at most 32)")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    edit_json(ck / INDEX, lambda d: d.__setitem__("metadata", 0))
    text = (ck / INDEX).read_text().replace('"metadata": 0', '"metadata": ' + "[" * 500 + "]" * 500)
    (ck / INDEX).write_text(text)
    return ck


@case("index-5000-shards", "names 5002 shards (at most 4096)")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    edit_json(ck / INDEX, lambda d: d["weight_map"].update(
        {f"ghost.{i}": f"model-{i:05d}-of-05000.safetensors" for i in range(5000)}))
    return ck


# --- bounded cost: declared counts ---------------------------------------------------------------------------
@case("config-num-aux-hidden-states-huge", "num_aux_hidden_states 1000000000 is implausibly large (at most 4096)")
def _(tmp, bases):
    return _cfg(tmp, bases, num_aux_hidden_states=10**9, fc_norm=True)  # one fc_norm parameter each


@case("config-num-aux-hidden-states-bool", "num_aux_hidden_states must be a positive integer, got True")
def _(tmp, bases):
    return _cfg(tmp, bases, num_aux_hidden_states=True)


@case("config-aux-ids-5000-long", "eagle_aux_hidden_state_layer_ids lists 5000 layers (at most 4096)")
def _(tmp, bases):
    return _cfg(tmp, bases, eagle_config={"eagle_aux_hidden_state_layer_ids": list(range(5000))})
