"""Reading JSON files as plain dicts (never through transformers: a round trip adds and renames keys)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from eaglectl.errors import ConfigError

MAX_JSON_BYTES = 64 * 1024 * 1024


def read_json_object(path: Path, *, what: str = "config") -> dict[str, Any]:
    try:
        st = path.stat()
        size = st.st_size
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever
            raise ConfigError(f"{path}: not a regular file")
        if size > MAX_JSON_BYTES:
            raise ConfigError(f"{path}: {what} is {size} bytes, too large to be a {what}")
        text = path.read_bytes().decode("utf-8")
    except ConfigError:
        raise
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: {what} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} is a JSON {type(data).__name__}, not an object")
    return data


def dumps_config(config: dict[str, Any]) -> bytes:
    """Deterministic JSON for written configs: key order kept, 2-space indent, trailing newline."""
    return (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def config_int(cfg: dict[str, Any], key: str, default: int | None = None) -> int | None:
    """`cfg[key]` when it is an int (not a bool: JSON `true` is no size), else `default`."""
    value = cfg.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default
