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
    from rich.text import Text

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

        # No emoji codes either: a tensor called `a:fire:b` is printed as it is named.
        console = Console(stderr=name == "stderr", soft_wrap=name == "stdout", highlight=False, emoji=False)
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


def envelope(command: str | None, result: Any, *, ok: bool = True,
             error: BaseException | None = None) -> dict[str, Any]:
    doc = {"schema_version": SCHEMA_VERSION, "command": command, "ok": ok, "result": to_jsonable(result)}
    if error is not None:
        doc["error"] = error_object(error)
    return doc


def error_object(exc: BaseException, *, exit_code: int | None = None, hint: str | None = None,
                 message: str | None = None) -> dict[str, Any]:
    """`{type, message, hint, exit_code}` of a failure, as the `--json` envelope carries it."""
    if message is None:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    code = exit_code if exit_code is not None else getattr(exc, "exit_code", 1)
    doc = {"type": type(exc).__name__, "message": message or type(exc).__name__,
           "hint": hint if hint is not None else getattr(exc, "hint", None), "exit_code": code}
    if tail := getattr(exc, "log_tail", None):  # a server's last log lines, streamed to stderr above the message
        doc["log_tail"] = tail
    return doc


_emitted = False  # whether this run already printed its JSON document (a failure after it adds none)
errored = False  # whether this run already printed its `error:` line


def emit(command: str, result: Any, *, as_json: bool, render: Callable[[Console], None], ok: bool = True,
         error: BaseException | None = None) -> None:
    """Print `result` as one JSON document or through `render`, never both."""
    global _emitted
    if as_json:
        write_json(envelope(command, result, ok=ok, error=error))
        _emitted = True
    else:
        render(_console("stdout"))


def emit_failure(command: str | None, exc: BaseException, *, exit_code: int | None = None,
                 hint: str | None = None, message: str | None = None) -> None:
    """The `--json` envelope of a run that failed before producing a result: `ok: false`, `result: null`, and
    the error. Nothing when this run already printed its document."""
    global _emitted
    if _emitted:
        return
    doc = envelope(command, None, ok=False)
    doc["error"] = error_object(exc, exit_code=exit_code, hint=hint, message=message)
    write_json(doc)
    _emitted = True


def reset() -> None:
    """Start of a run (tests run many in one process)."""
    global _emitted, errored
    _emitted = errored = False


def write_json(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    _console("stderr").print(f"[yellow]warning:[/] {safe(message)}", markup=True, soft_wrap=True)


def note(message: str) -> None:
    _console("stderr").print(f"[dim]{safe(message)}[/]", markup=True, soft_wrap=True)


def error(message: str, hint: str | None = None, *, multiline: bool = False) -> None:
    """One `error:` line (and a `hint:` line). `multiline` keeps the newlines of a message that carries a log
    tail, indenting its continuation lines so that nothing in them can pose as an `error:` line of its own."""
    global errored
    errored = True
    text = "\n  ".join(safe(line) for line in str(message).split("\n")) if multiline else safe(message)
    _console("stderr").print(f"[bold red]error:[/] {text}", markup=True, soft_wrap=True)
    if hint:
        _console("stderr").print(f"[dim]hint:[/] {safe(hint)}", markup=True, soft_wrap=True)


def escape(text: str) -> str:
    """Rich markup escaped (`[` in a name is text, not a tag); see `safe` for anything read from a file."""
    from rich.markup import escape as _escape

    return _escape(text)


def printable(text: Any) -> str:
    """`text` with every character the terminal would act on (ESC, CR, NUL, newlines, bidi overrides, any
    other non-printable) written as its Python escape (`\\x1b`, `\\n`, `\\u202e`): a name cannot move the
    cursor, recolour the terminal, or fake a line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shell_quote(arg: str) -> str:
    """`arg` quoted so that a shell reads back exactly its bytes, and printable as it stands. A word with a
    character the terminal would act on (see `printable`) or bytes that are not UTF-8 (a file name decoded with
    `surrogateescape`) is written in ANSI-C quoting, `$'...'`, every such byte as `\\xHH` (bash, zsh, ksh,
    POSIX.1-2024 sh); any other word as `shlex.quote` writes it."""
    import shlex

    try:
        arg.encode("utf-8")
        plain = arg.isprintable()
    except UnicodeEncodeError:
        plain = False
    if plain:
        return shlex.quote(arg)
    out = []
    for b in os.fsencode(arg):
        c = chr(b)
        out.append("\\" + c if c in "'\\" else c if 0x20 <= b < 0x7F else f"\\x{b:02x}")
    return "$'" + "".join(out) + "'"


def shell_join(argv: list[str]) -> str:
    """One shell command line of `argv` (`shell_quote` for each word)."""
    return " ".join(shell_quote(a) for a in argv)


def safe(text: Any) -> str:
    """A user- or file-derived string ready to sit inside rich markup: control characters neutralised and
    `[` escaped. Every name and path printed through markup goes through this."""
    return escape(printable(text))


def cell(value: Any) -> Text:
    """A table cell from a file-derived value: rich `Text` (never parsed as markup), control characters
    neutralised."""
    from rich.text import Text

    return Text(printable(value))


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
