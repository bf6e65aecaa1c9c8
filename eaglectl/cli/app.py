"""The Typer app and the single place where eaglectl's exceptions become messages and exit codes."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from eaglectl import __version__, interrupts, output
from eaglectl.cli import bench, demo, export, finish, inspect, probe_target, serve, signals, token_map
from eaglectl.cli.options import OUTPUT_PANEL
from eaglectl.errors import EaglectlError, UsageError
from eaglectl.interrupts import Terminated


def _flags_take_no_value(params: Sequence[Any]) -> None:
    """Flags shown as flags in `--help`. Typer 0.29's rich help prints a type beside every option, flags included
    (`--json <bool>`, `-h, --help <bool>`), though a flag takes no value (`--json true` is a usage error); 0.27's
    and Click's plain help (docs/cli.md) print nothing there. Every one of them prints an option's metavar in that
    place when it has one, so an empty metavar is the fix for each supported release. Parsing never reads it."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


def _no_type_labels(params: Sequence[Any]) -> None:
    """An argument's name says what it takes (`PATH`, `DIR`): Typer's rich help adds its Python type beside it
    (`PATH <str>`, `DIR <dir>`), and Click's range beside a bounded option (`N [x>=1]`), where the help text says
    what the value is. The range is still checked on parsing."""
    for param in params:
        if param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None
        if hasattr(param, "_get_number_range_help_str"):
            param._get_number_range_help_str = lambda: None


def _default_in_help(param: Any) -> None:
    """An option's default at the end of its help, `(default: 3)`, as the defaults no value can show are written
    (`(default: SGLang's)`): one style, and it flows with the text, where Typer's `[default: 3]` takes a line of
    its own under help that wraps. Read from the option's default (or its `show_default` text), never copied."""
    if param.param_type_name != "option" or getattr(param, "is_flag", False) or not param.help:
        return
    if isinstance(param.show_default, str):
        said = param.show_default
    elif param.show_default and param.default is not None and not callable(param.default):
        value = getattr(param.default, "value", param.default)  # an Enum member: its value, as it is typed
        said = f"{value:g}" if isinstance(value, float) else str(value)
    else:
        return
    param.help = f"{param.help.rstrip('.')} (default: {said})."
    param.show_default = False


class EaglectlCommand(TyperCommand):
    """Every eaglectl command: its flags shown as flags, defaults said in the help text, and `-h, --help` in the
    Output panel beside `--json` (each option sits in a named panel; see `eaglectl.cli.options`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _flags_take_no_value(self.params)
        _no_type_labels(self.params)
        for param in self.params:
            _default_in_help(param)
        if self.help:  # Typer's rich markup keeps a docstring's line breaks: its paragraphs reflow to the terminal
            self.help = "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", self.help.strip()))

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            _flags_take_no_value([option])
            option.rich_help_panel = OUTPUT_PANEL
        return option


class EaglectlGroup(TyperGroup):
    """Maps `EaglectlError` to one stderr line + its exit code; `EAGLECTL_DEBUG=1` adds the traceback. With
    `--json`, every failure (usage errors too) also prints the envelope, `"ok": false` and an `error` object,
    on stdout."""

    _json = False
    _command: str | None = None
    argv: list[str] | None = None  # as typed: `passthrough_args` tells what came after `--` from a stray word before it

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        self.argv = argv
        output.reset()
        interrupts.reset()
        self._json = wants_json(argv)
        self._command = next((a for a in argv if a in self.commands), None)
        before = argv[:argv.index(self._command)] if self._command else argv
        if "--install-completion" in before and "_EAGLECTL_COMPLETE" not in os.environ:
            return self._install_completion(before, standalone_mode)
        if self._json and ("--version" in before or "-V" in before):  # `--version --json`: the version as a document
            output.write_json(output.envelope(None, {"version": __version__}))
            if not standalone_mode:
                return 0
            sys.exit(0)
        if not self._json:
            return super().main(argv, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        # Typer would print a usage error as a box and exit before any command runs: take it back here.
        try:
            rv = super().main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
            code = rv if isinstance(rv, int) else 0
        except typer.TyperException as exc:  # Click's usage errors (exit 2) and its other ClickExceptions
            code = exc.exit_code
            ctx = getattr(exc, "ctx", None)
            hint = f"see `{ctx.command_path} --help`" if ctx is not None else None
            output.error(exc.format_message(), hint)
            output.emit_failure(self._command, exc, exit_code=code, hint=hint)
        except typer.Abort as exc:
            code = 1
            output.error("aborted")
            output.emit_failure(self._command, exc, exit_code=code, message="aborted")
        if not standalone_mode:
            return code
        sys.exit(code)

    def _install_completion(self, before: list[str], standalone_mode: bool) -> int:
        """`--install-completion [SHELL]`: the script eaglectl ships (Typer's stock one plus eaglectl's fixes, see
        docs/completion.md), put where Typer's own installer puts its stock script."""
        from eaglectl.cli.complete import SHELLS, install_completion

        at = before.index("--install-completion")
        shell = before[at + 1] if at + 1 < len(before) and before[at + 1] in SHELLS else None
        try:
            shell, path = install_completion(shell)
        except EaglectlError as exc:
            output.error(str(exc), exc.hint)
            code = exc.exit_code
        else:
            print(f"{shell} completion installed in {path}")
            print("Completion will take effect once you restart the terminal")
            code = 0
        if not standalone_mode:
            return code
        sys.exit(code)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # the root's own (--version, the completion options, --help)
        _flags_take_no_value(params)
        return params

    def invoke(self, ctx: Any) -> Any:
        restore: Callable[[], None] = _nothing
        try:
            with interrupts.held():  # a signal while the handlers are installed: raised once they are, in this try
                restore = _terminate_like_interrupt()
                finish.COMMAND_OPTIONS.update({name: frozenset(o for p in cmd.params for o in p.opts
                                                               if o.startswith("--"))
                                               for name, cmd in self.commands.items()})
                _deliver_held()
            return super().invoke(ctx)
        except BaseException as exc:
            interrupts.hold()  # the report is not cut short by a signal: one arriving now is kept, for `_end_held`
            self._failed(exc)
            raise
        finally:
            interrupts.hold()
            restore()  # the entry point's hold is back: what arrives from now on is for `_end_held`
            interrupts.unhold_all()

    def _failed(self, exc: BaseException) -> None:
        """Report a command's failure (one line; with `--json` the envelope) and say which exit code ends the run:
        raises typer.Exit for eaglectl's own errors and signals, returns for what propagates as it is."""
        if isinstance(exc, (KeyboardInterrupt, Terminated)):  # cleaned up on the way here
            _, said, code = interrupts.describe(interrupts.signum_of(exc))
            output.error(said)
            if self._json:
                output.emit_failure(self._command, exc, exit_code=code, message=said)
            raise typer.Exit(code) from None
        if isinstance(exc, EaglectlError):
            if isinstance(exc, UsageError) and exc.hint is None:  # as Click's own usage errors
                exc.hint = f"see `eaglectl {self._command} --help`"
            if (note := finish.foreign_options(f"{exc} {exc.hint or ''}", self._command)) is not None:
                exc.hint = f"{exc.hint} ({note})" if exc.hint else note  # an option another command has
            if output.debug_enabled():
                traceback.print_exception(exc, file=sys.stderr)
            output.error(str(exc), exc.hint, multiline=exc.multiline)
            if self._json:
                output.emit_failure(self._command, exc)
            raise typer.Exit(exc.exit_code) from None
        if isinstance(exc, typer.TyperException):
            self._hint_passthrough(exc)
        elif isinstance(exc, Exception) and self._json and not output_failed(exc):
            output.emit_failure(self._command, exc, exit_code=1)  # a bug: keeps its traceback, but a script reading
            # stdout still gets JSON (unless stdout is what failed: main says so)

    def _hint_passthrough(self, exc: typer.TyperException) -> None:
        """An unknown option of a command that hands `--` flags to SGLang is most likely an SGLang flag: say where
        it goes (Click's message, "No such option: --attention-backend-x", alone gives no way forward)."""
        name = getattr(exc, "option_name", None)
        command = self.commands.get(self._command or "")
        if not (type(exc).__name__ == "NoSuchOption" and name and command is not None
                and command.context_settings.get("allow_extra_args")):
            return
        # serve's `--num-steps` typed to bench (`--steps`): this command's own name for it, not SGLang's
        ours = [p for p in getattr(exc, "possibilities", None) or [] if name.endswith("-" + p.lstrip("-"))]
        if ours:
            exc.message = f"No such option: {name} (eaglectl {self._command} calls it {ours[0]})"
            exc.possibilities = []  # type: ignore[attr-defined]  # NoSuchOption's
        else:
            exc.message = (f"{exc.message} (SGLang's own flags go after `--`: "
                           f"eaglectl {self._command} ... -- {name} ...)")


app = typer.Typer(
    name="eaglectl",
    cls=EaglectlGroup,
    help="Take EAGLE / EAGLE-3 drafters from a training checkpoint to a running SGLang server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _terminate_like_interrupt() -> Callable[[], None]:
    """Raise `Terminated` on SIGTERM and SIGHUP, and KeyboardInterrupt on Ctrl-C, while a command runs; returns what
    restores the handlers. A signal whose handler is not the default (SIGHUP ignored under `nohup`, a handler of
    the embedding program) is left as it is.

    A signal that arrives while a module is being imported is held back until the import is done: an exception
    raised inside `import torch` (which runs C++ initialisers that call back into Python) leaves the interpreter
    broken: pybind11 aborts the process (SIGABRT), or numpy and ssl fail to import for good ("cannot load module
    more than once per process"), a traceback instead of the one `interrupted` / `terminated` line and its
    cleanup. The signal is sent again every 50 ms until no import is under way."""
    import signal
    import threading

    timers: list[tuple[threading.Timer, int]] = []

    def importing(frame: Any) -> bool:
        while frame is not None:
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                return True
            frame = frame.f_back
        return False

    def handler(signum: int, frame: Any) -> None:
        if importing(frame):
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signum))
            timer.daemon = True
            timers.append((timer, signum))
            timer.start()
            return
        interrupts.on_signal(signum)  # raised if it is the run's first (and nothing holds it), else kept

    old: dict[int, Any] = {}
    for sig, default in ((signal.SIGTERM, signal.SIG_DFL), (getattr(signal, "SIGHUP", None), signal.SIG_DFL),
                         (signal.SIGINT, signal.default_int_handler)):
        if sig is None:
            continue
        try:
            current = signal.getsignal(sig)
            if current is default or signals.holding(current):  # the entry point's hold: the default's stand-in
                old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread (a test runner's, an embedding program's)
            pass

    def restore() -> None:
        pending = []
        for timer, signum in timers:  # a signal held back over the run's last import: not dropped
            if timer.is_alive():
                pending.append(signum)
            timer.cancel()
        for sig, previous in old.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, previous)
        for signum in dict.fromkeys(pending):  # kept, for the entry point (`_end_held`), which ends the run with it
            interrupts.keep(signum)

    return restore


def _nothing() -> None:
    pass


def _deliver_held() -> None:
    """Signals the entry point held back before the command started (while the CLI was imported and its command
    line read), handed on now that the command's handlers take them: the first is raised as the handlers'
    held section ends, in the command's try, and the run ends as if it landed there."""
    for signum in signals.take():
        interrupts.keep(signum)


def wants_json(argv: Sequence[str]) -> bool:
    """`--json` anywhere before a `--` (what follows `--` belongs to SGLang)."""
    end = argv.index("--") if "--" in argv else len(argv)
    return "--json" in argv[:end]


def _version_callback(value: bool) -> None:
    if value:
        print(f"eaglectl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Take EAGLE / EAGLE-3 drafters from a training checkpoint to a running SGLang server."""


# Every command, in the order of the workflow (inspect -> export -> serve -> bench): Typer lists them as registered.
# Command modules declare options and call one core function; they never import this module, and importing
# them is cheap (no torch / safetensors / transformers / sglang at module level).
_PASSTHROUGH = {"allow_extra_args": True}  # SGLang flags after `--`
app.command("inspect", cls=EaglectlCommand)(inspect.inspect_command)
app.command("export", cls=EaglectlCommand)(export.export_command)
app.command("token-map", cls=EaglectlCommand)(token_map.token_map_command)
app.command("serve", cls=EaglectlCommand, context_settings=_PASSTHROUGH)(serve.serve_command)
app.command("bench", cls=EaglectlCommand, context_settings=_PASSTHROUGH)(bench.bench_command)
app.command("probe-target", cls=EaglectlCommand, context_settings=_PASSTHROUGH)(probe_target.probe_target_command)
app.command("demo", cls=EaglectlCommand)(demo.demo_command)


def main() -> None:
    """The `eaglectl` entry point. Output piped into a reader that stops early (`eaglectl inspect X | head -1`)
    ends quietly with exit code 1, as `hf` and `pip` end (Python's documented handling of a closed pipe): no
    traceback, no "Exception ignored" line when the interpreter flushes stdout on its way out. Ctrl-C, SIGTERM and
    SIGHUP are held back from here (from the entry point's first line, `eaglectl.cli.entry`) until the command's
    handlers take them; one that no command took (`--help`, a usage error) ends the run as it ends a command."""
    signals.hold()
    _reopen_closed_streams()
    try:
        try:
            app()
        finally:
            _end_held()
            sys.stdout.flush()  # a closed pipe shows here, while it can still be handled
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(1)
    except OSError as exc:  # stdout on a full disk (`> file`, /dev/full) or a device gone (EIO): one line, exit 1
        if not output_failed(exc):
            raise  # anything else that reaches here is a bug: its traceback stays
        _quiet_stdout()
        if not output.errored:  # a failed run's `--json` envelope that could not follow its error line: that line
            with contextlib.suppress(OSError, ValueError):  # stays the one (stderr may be just as full)
                output.error(f"cannot write the output ({exc.strerror or exc})")
        sys.exit(1)


def _end_held() -> None:
    """Stop holding signals; one that arrived while no command ran to take it (`--help`, a usage error) ends the run
    as it ends a command: one line, its exit code (and the `--json` envelope where the run printed none). One that
    arrived once the command had finished (its output committed, its result being reported) or failed (its error
    line printed) changes nothing: the run exits as the command did, the former with a note that it came late."""
    import signal

    signals.release()
    taken = list(dict.fromkeys([*interrupts.kept(), *signals.take()]))
    if not taken:
        return
    if output.errored:  # the command's failure (or the first signal's) is the run's end
        return
    if interrupts.done():
        with contextlib.suppress(OSError, ValueError):
            output.note(f"{signal.Signals(taken[0]).name} arrived after the command had finished; its result stands")
        return
    exc, message, code = interrupts.describe(taken[0])
    output.error(message)
    argv = sys.argv[1:]
    if wants_json(argv):
        names = {c.name for c in app.registered_commands}
        output.emit_failure(next((a for a in argv if a in names), None), exc, exit_code=code, message=message)
    sys.exit(code)


STREAM_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG", "EIO", "ENXIO") if hasattr(errno, n))


def output_failed(exc: BaseException) -> bool:
    """Whether `exc` is a write to stdout or stderr that failed (a full disk behind `> file`, /dev/full, a
    terminal gone): an OSError of a stream, naming no file. Every file eaglectl itself reads or writes turns its
    OSErrors into an error line naming the file, so only the standard streams' failures get here this way."""
    return isinstance(exc, OSError) and exc.errno in STREAM_ERRNOS and exc.filename is None


def _reopen_closed_streams() -> None:
    """A standard stream closed before eaglectl started (`eaglectl export ... >&-`): Python leaves `sys.stdout`
    None, and the next file eaglectl opens would take descriptor 1 — where a child process, or a stray write,
    would then land in an output file. Each such descriptor is pointed at /dev/null: what would have been printed
    is dropped, and the run ends with the exit code of what it did."""
    import os

    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        try:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115  (lives as long as the process)
        except OSError:
            pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit finds nothing to complain about."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind sys.stdout (an embedding program)
        pass
