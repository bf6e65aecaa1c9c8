"""`sglang.launch_server` flags read by SGLang's own parser (`ServerArgs.add_cli_args`), for `serve` (the whole
argv it builds) and `probe-target` (the flags after `--`).

Only argparse's public API is used: the parser below takes every argument as optional and without a default, so
what it returns is exactly what the flags set.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from eaglectl.errors import UsageError

FLAGS_HINT = "they are sglang.launch_server's flags, e.g. --page-size 16"


def flag_name(field_name: str) -> str:
    """The `launch_server` flag that sets a ServerArgs field."""
    return "--" + field_name.replace("_", "-")


class _GivenOnly(argparse.ArgumentParser):
    """An ArgumentParser that reports only the flags given (no defaults, nothing required) and raises
    `UsageError` instead of printing usage and exiting."""

    hint = FLAGS_HINT

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        return super().add_argument(*args, **_given_only(args, kwargs))

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return _wrap(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, *, required: bool = False) -> Any:
        return _wrap(super().add_mutually_exclusive_group(required=False))

    def set_defaults(self, **kwargs: Any) -> None:
        """Defaults are not what the flags say: ignored."""

    def error(self, message: str) -> Any:
        raise UsageError(f"SGLang server flags: {message}", hint=self.hint)


def _given_only(args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = {**kwargs, "default": argparse.SUPPRESS}
    if args and str(args[0]).startswith("-"):
        kwargs["required"] = False
    return kwargs


def _wrap(group: Any) -> Any:
    """A group of a `_GivenOnly` parser: its arguments are made the same way (groups add them themselves)."""
    add = group.add_argument
    group.add_argument = lambda *a, **k: add(*a, **_given_only(a, k))
    if hasattr(group, "add_mutually_exclusive_group"):
        inner = group.add_mutually_exclusive_group
        group.add_mutually_exclusive_group = lambda **k: _wrap(inner(**{**k, "required": False}))
    return group


def parse_flags(flags: Sequence[str], server_args_cls: Any, *, allow_abbrev: bool,
                hint: str = FLAGS_HINT) -> dict[str, Any]:
    """The ServerArgs fields `flags` set, typed by SGLang's own parser; a flag it refuses is a UsageError.
    `allow_abbrev`: whether a prefix of a flag counts (launch_server allows it; probe-target wants flags in full)."""
    parser = _GivenOnly(prog="SGLang server flags", add_help=False, allow_abbrev=allow_abbrev)
    parser.hint = hint
    server_args_cls.add_cli_args(parser)
    try:
        return vars(parser.parse_args(list(flags)))
    except (ValueError, TypeError, AssertionError) as exc:  # raised by SGLang's own option actions
        lines = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
        raise UsageError(f"SGLang server flags: {detail}", hint=hint) from exc


def server_args_class(python: str) -> Any | None:
    """SGLang's ServerArgs when `python` is this interpreter and it can import SGLang (importing it costs a few
    seconds); None otherwise: another interpreter's SGLang checks its flags itself when it starts."""
    from eaglectl.errors import importable
    from eaglectl.serving.installed import is_this_interpreter

    if not is_this_interpreter(python) or not importable("sglang"):
        return None
    from sglang.srt.server_args import ServerArgs

    return ServerArgs
