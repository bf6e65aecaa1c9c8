"""Drafter configs that are not JSON objects, too big, or hold wrong-typed fields."""

from __future__ import annotations

import os

from tests.hostile.core import _DELETE, _cfg, case, copy_base


# --- configs ---------------------------------------------------------------------------------------------
@case("config-not-json", "config is not valid JSON")
def _(tmp, bases):
    return _cfg(tmp, bases, '{"hidden_size": 64,')


@case("config-a-list", "config is a JSON list, not an object")
def _(tmp, bases):
    return _cfg(tmp, bases, "[64, 4, 2]")


@case("config-empty", "config is not valid JSON")
def _(tmp, bases):
    return _cfg(tmp, bases, "")


@case("config-not-utf8", "config is not UTF-8 text")
def _(tmp, bases):
    return _cfg(tmp, bases, b'{"model_type": "\xff\xfe"}')


@case("config-huge", "too large to be a config")
def _(tmp, bases):
    ck = _cfg(tmp, bases)
    with open(ck / "config.json", "r+b") as fh:  # sparse: costs no disk
        fh.truncate(65 * 1024 * 1024)
    return ck


@case("config-deeply-nested", "config holds 200001 JSON arrays / objects, more than a config has")
def _(tmp, bases):
    return _cfg(tmp, bases, '{"eagle_config": ' + "[" * 200_000 + "]" * 200_000 + "}")


@case("config-hidden-size-string", "hidden_size must be a positive integer, got '64'")
def _(tmp, bases):
    return _cfg(tmp, bases, hidden_size="64")


@case("config-hidden-size-bool", "hidden_size must be a positive integer, got True")
def _(tmp, bases):
    return _cfg(tmp, bases, hidden_size=True)


@case("config-num-layers-null", "num_hidden_layers must be a positive integer, got None")
def _(tmp, bases):
    return _cfg(tmp, bases, num_hidden_layers=None)


@case("config-num-layers-huge", "num_hidden_layers 1000000000 is implausibly large")
def _(tmp, bases):
    return _cfg(tmp, bases, num_hidden_layers=10**9)


@case("config-vocab-huge", "vocab_size 1000000000000000 is implausibly large")
def _(tmp, bases):
    return _cfg(tmp, bases, vocab_size=10**15)


@case("config-architectures-not-a-list", "architectures must be a list of strings, got 'LlamaForCausalLMEagle3'")
def _(tmp, bases):
    return _cfg(tmp, bases, architectures="LlamaForCausalLMEagle3")


@case("config-tie-embeddings-a-string", "tie_word_embeddings must be true or false, got 'yes'")
def _(tmp, bases):
    """Truthy to SGLang (it would tie lm_head to the target's embeddings), not `True` to eaglectl's checks."""
    return _cfg(tmp, bases, tie_word_embeddings="yes")


@case("config-norm-before-residual-false-string", "eagle_config.norm_before_residual must be true or false, got "
      "'false'")
def _(tmp, bases):
    return _cfg(tmp, bases, eagle_config={"norm_before_residual": "false"})


@case("config-missing-hidden-size", "config.json: missing hidden_size")
def _(tmp, bases):
    return _cfg(tmp, bases, hidden_size=_DELETE)


@case("config-missing-file", "weights but no config.json")
def _(tmp, bases):
    ck = copy_base(bases, "st", tmp)
    (ck / "config.json").unlink()
    return ck


@case("config-fifo", "config.json: not a regular file")
def _(tmp, bases):
    ck = copy_base(bases, "st", tmp)
    (ck / "config.json").unlink()
    os.mkfifo(ck / "config.json")
    return ck


# --- non-finite numbers: Python's json reads NaN / Infinity, no JSON parser should, and NaN passes every range check
def _with_number(name: str, text: str):
    def build(tmp, bases):
        ck = _cfg(tmp, bases)
        raw = (ck / "config.json").read_text()
        (ck / "config.json").write_text(raw.replace("{", '{"' + name + '": ' + text + ", ", 1))
        return ck

    return build


for _name, _key, _text, _expect in (
        ("config-rope-theta-nan", "rope_theta", "NaN", "config holds NaN, which is no JSON number"),
        ("config-rms-eps-infinity", "rms_norm_eps", "Infinity", "config holds Infinity, which is no JSON number"),
        ("config-minus-infinity", "rope_theta", "-Infinity", "config holds -Infinity, which is no JSON number"),
        ("config-float-beyond-range", "rope_theta", "1e999", "config holds the number 1e999, beyond a float's range")):
    case(_name, _expect)(_with_number(_key, _text))
