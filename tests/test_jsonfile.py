"""JSON read within limits: what the limits refuse, and that real files of each kind stay far inside them."""

from __future__ import annotations

import json

import pytest

from eaglectl.checkpoint.weights import HEADER_LIMITS, MAX_TENSORS
from eaglectl.errors import ConfigError
from eaglectl.jsonfile import CONFIG_LIMITS, INDEX_LIMITS, JsonLimits, loads_bounded, read_json_object

SMALL = JsonLimits(max_bytes=1000, max_containers=10, max_values=50, max_depth=3)


def load(raw: bytes, limits: JsonLimits = SMALL):
    return loads_bounded(raw, limits, where="f.json", what="config")


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"a": ' + b"9" * 41 + b"}", "holds an integer with 41 digits (at most 40)"),
    (b'{"a": -' + b"9" * 41 + b"}", "holds an integer with 41 digits"),
    (b'{"a": [[[1]]]}', "nests JSON 4 levels deep (at most 3)"),
    (b"[" + b"[]," * 10 + b"[]]", "holds 12 JSON arrays / objects"),
    (b"[" + b"0," * 60 + b"0]", "holds over 61 JSON values"),
    (b"[" + b" " * 1000 + b"]", "is 1002 bytes, too large to be a config (at most 1000)"),
    (b'{"a": 1', "is not valid JSON"),
    (b'{"a": "\xff"}', "is not UTF-8 text"),
])
def test_limits_refuse_with_one_clear_error(raw, message):
    with pytest.raises(ConfigError, match=r"^f\.json: config ") as err:
        load(raw)
    assert message in str(err.value)


def test_brackets_and_digits_inside_strings_are_text():
    raw = json.dumps({"a": "[[[[{{{{" * 20, "b": "9" * 100, "c": [1, 2]}).encode()
    assert load(raw)["b"] == "9" * 100


def test_escaped_quotes_do_not_end_a_string():
    raw = json.dumps({"a": 'x\\"[[[[[[' + '"]]]]', "b": [[1]]}).encode()
    assert load(raw)["b"] == [[1]]


def test_floats_and_40_digit_integers_are_fine():
    assert load(b'{"eps": 1e-05, "big": 1.7e308, "n": ' + b"9" * 40 + b"}")["n"] == int("9" * 40)


def test_a_real_header_of_max_tensors_entries_fits_the_header_limits():
    """The largest checkpoint eaglectl accepts (MAX_TENSORS tensors, 8-D shapes, metadata) passes the pre-scan."""
    from eaglectl.jsonfile import check_json_shape

    entry = '"model.layers.{i}.mlp.experts.{i}.down_proj.weight":{{"dtype":"BF16","shape":[1,2,3,4,5,6,7,8],' \
            '"data_offsets":[0,0]}}'
    raw = ("{" + '"__metadata__":{"format":"pt","note":"{[(json in a string)]}"},'
           + ",".join(entry.format(i=i) for i in range(MAX_TENSORS)) + "}").encode()
    check_json_shape(raw, HEADER_LIMITS, where="h", what="safetensors header")


def test_real_config_and_index_sizes_are_far_inside_the_limits():
    assert CONFIG_LIMITS.max_bytes >= 4 * 1024 * 1024 and CONFIG_LIMITS.max_depth >= 8
    index = {"metadata": {"total_size": 2**41}, "weight_map": {f"t{i}": f"s{i % 400}" for i in range(MAX_TENSORS)}}
    raw = json.dumps(index).encode()
    assert loads_bounded(raw, INDEX_LIMITS, where="i", what="weight index")["metadata"]["total_size"] == 2**41


def test_read_json_object_refuses_non_objects_and_special_files(tmp_path):
    import os

    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError, match="is a JSON list, not an object"):
        read_json_object(tmp_path / "list.json")
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(ConfigError, match="not a regular file"):
        read_json_object(tmp_path / "fifo.json")
