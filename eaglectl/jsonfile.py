"""Reading JSON files as plain dicts (never through transformers: a round trip adds and renames keys), within
limits checked before and while parsing: size, nesting depth, number of containers and values, integer digits.

Python's own parser has none of these: a 5000-digit integer hits the int-string limit (a ValueError), deep
nesting exhausts the recursion limit, and millions of small entries cost seconds and gigabytes before anyone
looks at them. Here a hostile file fails fast with one `ConfigError` naming the limit.
"""

from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

from eaglectl.errors import ConfigError


@dataclass(frozen=True)
class JsonLimits:
    """Upper bounds for one kind of JSON file; each is far above what a real file of that kind holds."""

    max_bytes: int
    max_containers: int  # arrays + objects
    max_values: int  # commas + colons + containers: a bound on the number of JSON values parsed
    max_depth: int = 32  # real configs nest 3-4 levels (text_config.rope_scaling...), safetensors headers 2


MAX_INT_DIGITS = 40  # 2**128 has 39 digits; no size, offset or id in a checkpoint is anywhere near
# config.json of real models is a few KB; the largest (VLMs with id2label maps) stay well under 1 MB.
CONFIG_LIMITS = JsonLimits(max_bytes=8 * 1024 * 1024, max_containers=100_000, max_values=2_000_000)
# A shard index names every tensor once (~80 bytes each): 100k tensors ~ 8 MB (a drafter is refused past 10k).
INDEX_LIMITS = JsonLimits(max_bytes=64 * 1024 * 1024, max_containers=1_000, max_values=400_000)

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[]{},:")
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("[")] = _DEPTH_STEP[ord("{")] = 1
_DEPTH_STEP[ord("]")] = _DEPTH_STEP[ord("}")] = -1


class _TooLarge(ValueError):
    """Raised from inside `json.loads` by the integer hook; turned into a ConfigError by `loads_bounded`."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _TooLarge(f"an integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: Python makes it inf
        raise _TooLarge(f"the number {text[:40]}, beyond a float's range")
    return value


def _no_constant(name: str) -> float:
    """`NaN`, `Infinity`, `-Infinity`: Python's json reads and writes them, but they are no JSON (RFC 8259), and a
    config value of NaN passes every range check."""
    raise _TooLarge(f"{name}, which is no JSON number (only finite numbers are)")


def _structure_outside_strings(raw: bytes, chunk: int = 1 << 20) -> bytes:
    """The structural bytes (`[]{},:`) of JSON text that lie outside strings, in bounded extra memory: escaped
    backslashes are dropped first, then escaped quotes (left to right, as JSON reads them); every remaining
    quote toggles in-string, and the text is split on quotes one chunk at a time (a split of the whole text
    would build a Python object per string)."""
    cleaned = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    inside = False
    parts = []
    for lo in range(0, len(cleaned), chunk):
        pieces = cleaned[lo:lo + chunk].split(b'"')
        parts.append(b"".join(pieces[int(inside)::2]).translate(None, _NOT_STRUCTURE))
        inside ^= len(pieces) % 2 == 0  # an odd number of quotes in this chunk
    return b"".join(parts)


def check_json_shape(raw: bytes, limits: JsonLimits, *, where: str, what: str) -> None:
    """Refuse `raw` before parsing when it is larger, holds more containers / values, or nests deeper than
    `limits`. Counting is done on the bytes at C speed: a first count over everything (strings included, an
    upper bound) and, only when that exceeds a limit, an exact count with the strings taken out."""
    if len(raw) > limits.max_bytes:
        raise ConfigError(f"{where}: {what} is {len(raw)} bytes, too large to be a {what} "
                          f"(at most {limits.max_bytes})")
    structure = raw.translate(None, _NOT_STRUCTURE)
    exact = False
    while True:
        containers = structure.count(b"[") + structure.count(b"{")
        values = len(structure) - structure.count(b"]") - structure.count(b"}")
        over = containers > limits.max_containers or values > limits.max_values or containers > limits.max_depth
        if not over or exact:
            break
        structure = _structure_outside_strings(raw)  # brackets inside strings are text
        exact = True
    if containers > limits.max_containers:
        raise ConfigError(f"{where}: {what} holds {containers} JSON arrays / objects, more than a {what} has "
                          f"(at most {limits.max_containers})")
    if values > limits.max_values:
        raise ConfigError(f"{where}: {what} holds over {values} JSON values, more than a {what} has "
                          f"(at most {limits.max_values})")
    if containers > limits.max_depth:
        depth = max(accumulate(map(_DEPTH_STEP.__getitem__, structure.translate(None, b",:"))), default=0)
        if depth > limits.max_depth:
            raise ConfigError(f"{where}: {what} nests JSON {depth} levels deep (at most {limits.max_depth})")


def loads_bounded(raw: bytes, limits: JsonLimits, *, where: str, what: str) -> Any:
    """Parse UTF-8 JSON bytes within `limits`; every failure is one `ConfigError` naming `where`."""
    check_json_shape(raw, limits, where=where, what=what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: {what} is not UTF-8 text") from exc
    try:
        return json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except _TooLarge as exc:
        raise ConfigError(f"{where}: {what} holds {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: {what} is not valid JSON ({exc})") from exc


def read_json_object(path: Path, *, what: str = "config", limits: JsonLimits = CONFIG_LIMITS) -> dict[str, Any]:
    """A regular file's JSON object, read within `limits` (a FIFO would block the read forever)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if st.st_size > limits.max_bytes:
            raise ConfigError(f"{path}: {what} is {st.st_size} bytes, too large to be a {what} "
                              f"(at most {limits.max_bytes})")
        with path.open("rb") as fh:
            raw = fh.read(limits.max_bytes + 1)  # the file may have grown since the stat
    except ConfigError:
        raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    data = loads_bounded(raw, limits, where=str(path), what=what)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} is a JSON {type(data).__name__}, not an object")
    return data


def dumps_config(config: dict[str, Any]) -> bytes:
    """Deterministic JSON for written configs: key order kept, 2-space indent, trailing newline. A string that
    is no valid Unicode (a lone surrogate, read from a `\\udc80` escape) has no UTF-8 form: then every non-ASCII
    character is written as its escape, the same values as read."""
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(config, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def as_object(value: Any) -> dict[str, Any]:
    """A config value that should be an object (`eagle_config`): the object, or {} for anything else."""
    return value if isinstance(value, dict) else {}


def config_int(cfg: dict[str, Any], key: str, default: int | None = None) -> int | None:
    """`cfg[key]` when it is an int (not a bool: JSON `true` is no size), else `default`."""
    value = cfg.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default
