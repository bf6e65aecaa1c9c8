"""The Typer app and the single place where eaglectl's exceptions become messages and exit codes."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer
from typer.core import TyperGroup

from eaglectl import __version__, output
from eaglectl.errors import EaglectlError

COMMAND_ORDER = ("inspect", "export", "token-map", "serve", "probe-target", "demo")


class EaglectlGroup(TyperGroup):
    """Maps `EaglectlError` to one stderr line + its exit code; `EAGLECTL_DEBUG=1` adds the traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EaglectlError as exc:
            if output.debug_enabled():
                traceback.print_exc(file=sys.stderr)
            output.error(str(exc), exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            output.error("interrupted")
            raise typer.Exit(130) from None

    def list_commands(self, ctx: Any) -> list[str]:
        # The order of the workflow (inspect -> export -> serve), not alphabetical.
        order = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(self.commands, key=lambda n: (order.get(n, len(order)), n))


app = typer.Typer(
    name="eaglectl",
    cls=EaglectlGroup,
    help="Take EAGLE / EAGLE-3 drafters from a training checkpoint to a running SGLang server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        print(f"eaglectl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Take EAGLE / EAGLE-3 drafters from a training checkpoint to a running SGLang server."""


def _register() -> None:
    # Each command module declares its options and calls one core function; importing them is cheap
    # (no torch / safetensors / transformers / sglang at module level).
    from eaglectl.cli import demo, export, inspect, probe_target, serve, token_map  # noqa: F401


_register()


def main() -> None:
    app()
