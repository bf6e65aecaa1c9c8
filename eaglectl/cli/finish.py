"""How every command ends, in one place: warnings on stderr, the result (tables or one JSON document), then the
exit code. Core functions return results carrying their warnings and failures; only this prints and exits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import typer

from eaglectl import output
from eaglectl.errors import EaglectlError

if TYPE_CHECKING:
    from rich.console import Console


def finish(command: str, result: Any, *, as_json: bool, render: Callable[[Console], None],
           warnings: Iterable[str] = (), failure: EaglectlError | None = None, say_error: bool = True) -> None:
    """Print `result`; with `failure`, the run still shows what it found, then exits with the failure's code
    (`say_error=False` where the result itself says what failed, as inspect's error findings do)."""
    for warning in warnings:
        output.warn(warning)
    output.emit(command, result, as_json=as_json, render=render, ok=failure is None, error=failure)
    if failure is None:
        return
    if say_error:
        output.error(str(failure), failure.hint)
    raise typer.Exit(failure.exit_code)
