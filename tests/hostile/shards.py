"""Sharded checkpoints whose shards or index disagree."""

from __future__ import annotations

import json

from tests.hostile.core import INDEX, SHARD1, SHARD2, _sharded, case, edit_json, load_st


# --- shards and index ----------------------------------------------------------------------------------
@case("shards-duplicate-key", "appears in two shards")
def _(tmp, bases):
    from eaglectl.demo.samples import save_safetensors

    ck = _sharded(tmp, bases)
    one, two = load_st(ck / SHARD1), load_st(ck / SHARD2)
    name = sorted(one)[0]
    save_safetensors(ck / SHARD2, {**two, name: one[name]})
    return ck


@case("index-missing-shard", f"points at missing shard {SHARD2}")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    (ck / SHARD2).unlink()
    return ck


@case("index-not-json", "weight index is not valid JSON")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    (ck / INDEX).write_text('{"weight_map": {')
    return ck


@case("index-without-weight-map", "has no weight_map")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    (ck / INDEX).write_text('{"metadata": {}}')
    return ck


@case("index-weight-map-a-list", "has no weight_map")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    (ck / INDEX).write_text(json.dumps({"weight_map": [SHARD1, SHARD2]}))
    return ck


@case("index-shard-outside-dir", "points outside the directory")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    edit_json(ck / INDEX, lambda d: d["weight_map"].__setitem__("d2t", "../" + SHARD1))
    return ck


@case("index-shard-name-nul", "invalid shard name")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    edit_json(ck / INDEX, lambda d: d["weight_map"].__setitem__("d2t", "model\x00.safetensors"))
    return ck


@case("index-wrong-shard", "says 'd2t' is in")
def _(tmp, bases):
    ck = _sharded(tmp, bases)

    def edit(d):
        wm = d["weight_map"]
        wm["d2t"] = SHARD2 if wm["d2t"] == SHARD1 else SHARD1

    edit_json(ck / INDEX, edit)
    return ck


@case("index-lists-ghost-tensor", "lists tensor 'ghost.weight' but no shard holds it")
def _(tmp, bases):
    ck = _sharded(tmp, bases)
    edit_json(ck / INDEX, lambda d: d["weight_map"].__setitem__("ghost.weight", SHARD1))
    return ck
