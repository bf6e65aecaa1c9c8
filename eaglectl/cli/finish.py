"""How every command ends, in one place: warnings on stderr, the result (tables or one JSON document), then the
exit code. Core functions return results carrying their warnings and failures; only this prints and exits."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import typer

from eaglectl import interrupts, output
from eaglectl.errors import EaglectlError

if TYPE_CHECKING:
    from rich.console import Console


# The long options of every command, filled in by the app (which registers them) when a command runs: the core's
# hints name options ("pass --algorithm") without knowing which command shows them.
COMMAND_OPTIONS: dict[str, frozenset[str]] = {}
_OPTION = re.compile(r"(?<![\w`-])--[a-z][a-z0-9-]*")
_ATTRIBUTED = re.compile(r"\b(inspect|export|token-map|serve|bench|probe-target|demo)\b[^;.()]*$")


def for_command(text: str | None, command: str | None) -> str | None:
    """`text` with the eaglectl options it names that `command` does not have said to be another command's: the
    `inspect` of a head whose algorithm cannot be told is told that `export`, `serve` and `bench` take
    --algorithm, not to pass an option inspect refuses. Options already named with their command, and SGLang's own
    flags (no eaglectl command has them), are left as they are."""
    note = foreign_options(text, command)
    return f"{text} ({note})" if text and note else text


def foreign_options(text: str | None, command: str | None) -> str | None:
    """What `for_command` adds to `text`: whose options they are (None: nothing to add)."""
    own = COMMAND_OPTIONS.get(command or "")
    if not text or own is None:
        return None
    foreign: dict[str, list[str]] = {}
    for match in _OPTION.finditer(text):
        opt = match.group(0)
        if opt in own or opt in foreign or _ATTRIBUTED.search(text[max(0, match.start() - 80):match.start()]):
            continue
        having = [c for c, opts in COMMAND_OPTIONS.items() if opt in opts]
        if having:
            foreign[opt] = having
    if not foreign:
        return None
    said = "; ".join(f"{opt} is an option of {_listed(cmds)}" for opt, cmds in foreign.items())
    return f"{said}, not of `eaglectl {command}`"


def _listed(commands: list[str]) -> str:
    quoted = [f"`eaglectl {c}`" for c in commands]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


class EarlyWarnings:
    """A core function's `on_warning`: each warning printed when it arises (before what it warns of happens), and
    remembered, so that the warnings `finish` prints at the end leave it out."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.said: list[str] = []

    def __call__(self, message: str) -> None:
        self.said.append(message)
        output.warn(for_command(message, self.command) or message)

    def rest(self, warnings: Iterable[str]) -> list[str]:
        """`warnings` without those already said."""
        return [w for w in warnings if w not in self.said]


def _command_aware(result: Any, command: str) -> None:
    """Findings (inspect's, bench's) carry hints as the core wrote them: each said for `command`."""
    for finding in getattr(result, "findings", None) or []:
        for attr in ("message", "fix"):
            value = getattr(finding, attr, None)
            if isinstance(value, str):
                setattr(finding, attr, for_command(value, command))


def finish(command: str, result: Any, *, as_json: bool, render: Callable[[Console], None],
           warnings: Iterable[str] = (), failure: EaglectlError | None = None, say_error: bool = True) -> None:
    """Print `result`; with `failure`, the run still shows what it found, then exits with the failure's code
    (`say_error=False` where the result itself says what failed, as inspect's error findings do). From here on
    a signal no longer ends the run: it comes after the command finished (`eaglectl.interrupts`)."""
    interrupts.finishing()
    _command_aware(result, command)
    if failure is not None:
        failure.hint = for_command(failure.hint, command)
    for warning in warnings:
        output.warn(for_command(warning, command) or warning)
    output.emit(command, result, as_json=as_json, render=render, ok=failure is None, error=failure)
    if failure is None:
        return
    if say_error:
        output.error(str(failure), failure.hint)
    raise typer.Exit(failure.exit_code)
