"""The target's config (inspect --target, serve --target)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.hostile.core import CASES, Bases, Case, copy_base


# --- the target's config (inspect --target, serve --target) -------------------------------------------------
def _hostile_target(raw_extra: str | None = None, **changes) -> Callable[[Path, Bases], Path]:
    def build(tmp, bases):
        from eaglectl.demo.samples import target_config

        ck = copy_base(bases, "st", tmp)
        cfg = {**target_config(), **changes}
        text = json.dumps(cfg)
        if raw_extra is not None:
            text = text[:-1] + ', "extra": ' + raw_extra + "}"
        (tmp / "target").mkdir()
        (tmp / "target" / "config.json").write_text(text)
        return ck

    return build


for _name, _build, _expect in (
        ("target-int-5000-digits", _hostile_target("9" * 5000), "target config holds an integer with 5000 digits"),
        ("target-deeply-nested", _hostile_target("[" * 50_000 + "]" * 50_000), "target config nests JSON 50001 "
                                                                              "levels deep"),
        ("target-huge", _hostile_target('"' + "x" * (9 * 1024 * 1024) + '"'), "too large to be a target config")):
    CASES.append(Case(_name, _build, _expect, commands=("inspect", "serve"), target="target"))


CASES.append(Case("target-nan", _hostile_target("NaN"), "target config holds NaN, which is no JSON number",
                  commands=("inspect", "serve"), target="target"))


def _target_config_special(kind: str) -> Callable[[Path, Bases], Path]:
    """The target's config.json a link to /dev/zero or a FIFO: named as what it is (it was "target has no
    config.json"), never read."""
    def build(tmp, bases):
        import os

        ck = copy_base(bases, "st", tmp)
        (tmp / "target").mkdir()
        if kind == "fifo":
            os.mkfifo(tmp / "target" / "config.json")
        else:
            (tmp / "target" / "config.json").symlink_to("/dev/zero")
        return ck

    return build


for _kind in ("fifo", "devzero"):
    CASES.append(Case(f"target-config-{_kind}", _target_config_special(_kind),
                      "config.json: the target's config.json is not a regular file", commands=("inspect", "serve"),
                      target="target"))
