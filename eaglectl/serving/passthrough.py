"""Arguments passed through to SGLang after `--`: refuse the ones that would override what eaglectl set.

SGLang parses `launch_server` arguments with argparse (server_args.py `prepare_server_args`): a flag given twice
takes its last value, `--flag=value` is the same flag, and any unambiguous prefix of a long flag is accepted
(argparse's `allow_abbrev`, on by default). eaglectl appends the user's arguments after its own, so
`eaglectl serve ... -- --speculative-algorithm EAGLE` would silently replace the algorithm eaglectl checked (an
EAGLE-3 head served as EAGLE: accept length exactly 1.0, no error; SGLang PR #21272). `serve` and any later
command that launches SGLang call `refuse_overrides` with the flags they set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from eaglectl.errors import UsageError

# SGLang flag -> its aliases (server_args.py 0.5.9-0.5.23: `--model`, `--speculative-draft-model`).
ALIASES: dict[str, tuple[str, ...]] = {
    "--model-path": ("--model",),
    "--speculative-draft-model-path": ("--speculative-draft-model",),
}
# The SGLang flags `serve` always owns, and the eaglectl option that sets each: what eaglectl checked the head
# against. (--host / --port / --dtype stay overridable: they change where and how it runs, not what is served.)
SERVE_OWNED: dict[str, str] = {
    "--model-path": "--target",
    "--speculative-algorithm": "--algorithm",
    "--speculative-draft-model-path": "--draft",
    "--speculative-num-steps": "--num-steps",
    "--speculative-eagle-topk": "--topk",
    "--speculative-num-draft-tokens": "--num-draft-tokens",
    "--speculative-token-map": "--draft (eaglectl builds the token map from the checkpoint)",
}
# SGLang flags that are themselves a prefix of an owned flag: given whole, argparse takes them as they are, not as
# an abbreviation. None in the ServerArgs fields of 0.5.9-0.5.19 (checked against each release's server_args.py);
# kept as data so a new release's flag can be added with its source.
EXACT_OTHER_FLAGS: frozenset[str] = frozenset()


class OverrideError(UsageError):
    """A passthrough argument that would silently replace a flag eaglectl sets itself: a usage error (exit 2)."""


def _spellings(owned: Iterable[str]) -> dict[str, str]:
    out = {}
    for flag in owned:
        out[flag] = flag
        for alias in ALIASES.get(flag, ()):
            out[alias] = flag
    return out


def overridden_flag(arg: str, owned: Iterable[str]) -> str | None:
    """The owned SGLang flag `arg` would set (exactly, as `--flag=value`, through an alias or as an argparse
    abbreviation), or None."""
    if not arg.startswith("--") or arg == "--":
        return None
    name = arg.split("=", 1)[0]
    spellings = _spellings(owned)
    if name in spellings:
        return spellings[name]
    if len(name) <= 2 or name in EXACT_OTHER_FLAGS:
        return None
    hits = sorted({flag for spelling, flag in spellings.items() if spelling.startswith(name)})
    return hits[0] if hits else None


def refuse_overrides(extra_args: Sequence[str], owned: Mapping[str, str], *, command: str = "serve",
                     engine: str = "SGLang") -> None:
    """Raise naming the first argument after `--` that would override a flag eaglectl sets, and the eaglectl
    option to use instead. `owned`: the server's flag -> eaglectl option."""
    for arg in extra_args:
        if arg == "--":  # argparse: everything after a bare `--` is positional
            return
        flag = overridden_flag(arg, owned)
        if flag is not None:
            spelled = arg.split("=", 1)[0]
            how = "" if spelled == flag else f" (argparse reads {spelled} as {flag})"
            raise OverrideError(
                f"`-- {arg}` would override {flag}, which eaglectl {command} sets itself{how}; {engine} takes the "
                f"last occurrence, so eaglectl's checks would no longer describe what runs",
                hint=f"use eaglectl {command} {owned[flag]} instead")
