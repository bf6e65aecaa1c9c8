"""The one output layer: results on stdout (a rich rendering or one JSON document), diagnostics on stderr.

`--json` prints a versioned envelope and nothing else on stdout, so scripts can always parse it; warnings,
progress and errors go to stderr in both modes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

SCHEMA_VERSION = 1


def __getattr__(name: str) -> Any:
    """`output.stdout` / `output.stderr`: rich consoles made on first use, so a TAB press (which never
    prints through them) does not pay for importing rich.console."""
    if name in ("stdout", "stderr"):
        return _console(name)
    raise AttributeError(name)


def _console(name: str) -> Console:
    console = globals().get(f"_{name}")
    if console is None:
        from rich.console import Console

        console = Console(stderr=name == "stderr", soft_wrap=name == "stdout", highlight=False)
        globals()[f"_{name}"] = console
    return console


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths, tuples and sets to plain JSON types (recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("internal")}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # a torch.device, a dtype, an engine's own object: readable, and never breaks json.dumps


def envelope(command: str, result: Any, *, ok: bool = True) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "command": command, "ok": ok, "result": to_jsonable(result)}


def emit(command: str, result: Any, *, as_json: bool, render: Callable[[Console], None], ok: bool = True) -> None:
    """Print `result` as one JSON document or through `render`, never both."""
    if as_json:
        sys.stdout.write(json.dumps(envelope(command, result, ok=ok), indent=2) + "\n")
        sys.stdout.flush()
    else:
        render(_console("stdout"))


def warn(message: str) -> None:
    _console("stderr").print(f"[yellow]warning:[/] {escape(message)}", markup=True, soft_wrap=True)


def note(message: str) -> None:
    _console("stderr").print(f"[dim]{escape(message)}[/]", markup=True, soft_wrap=True)


def error(message: str, hint: str | None = None) -> None:
    _console("stderr").print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    if hint:
        _console("stderr").print(f"[dim]hint:[/] {escape(hint)}", markup=True, soft_wrap=True)


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def debug_enabled() -> bool:
    return os.environ.get("EAGLECTL_DEBUG", "") not in ("", "0", "false", "no")
