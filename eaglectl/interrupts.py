"""Ctrl-C, SIGTERM and SIGHUP as the end of a run: one rule for every handler eaglectl installs (the CLI's, the
supervised server's, bench's).

- The first signal ends the run: its handler raises (KeyboardInterrupt, or `Terminated`), and the run ends with
  that signal's exit code. Every later one is kept here, not raised: the cleanup and the error report the first
  one started are never cut short by a second (a second Ctrl-C while a server is stopped kills its process group
  instead: `eaglectl.serving.launcher`).
- `held()` sections (a lock's release, an output's commit, the CLI installing or restoring its handlers) are not
  cut by a signal either: one that lands there is raised when the section ends.
- Past the point of no return (the run's output is committed, or its result is being reported) a signal no longer
  fails the run: it is kept, and the CLI says it came after the command had finished."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C raises KeyboardInterrupt: every `finally` and
    `except BaseException` on the way (staging directories, locks, servers) cleans up. Not an Exception, so no
    `except Exception` swallows it. Exit code 128 + the signal number, as the shell reports a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.name = signal.Signals(signum).name
        self.exit_code = exit_code(signum)


_first: int | None = None  # the signal that ended the run (raised)
_kept: list[int] = []  # signals that arrived and were not raised (held, a second one, past the point of no return)
_depth = 0  # held() sections under way
_commit_ends_run = False  # this run's output commit is its point of no return (export, token-map)
_done = False  # past the point of no return


def reset() -> None:
    """A new run (the CLI's main, each in-process test run)."""
    global _first, _depth, _commit_ends_run, _done
    _first, _depth, _commit_ends_run, _done = None, 0, False, False
    _kept.clear()


def exception_for(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def exit_code(signum: int) -> int:
    return 128 + signum


def signum_of(exc: BaseException) -> int:
    """The signal a KeyboardInterrupt or `Terminated` stands for: the run's first, else the exception's own."""
    return _first or (exc.args[0] if isinstance(exc, Terminated) else int(signal.SIGINT))


def describe(signum: int) -> tuple[BaseException, str, int]:
    """The exception, the `error:` message and the exit code of a run ended by `signum`."""
    said = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
    return exception_for(signum), said, exit_code(signum)


def first() -> int | None:
    """The signal that ended the run, if one did."""
    return _first


def kept() -> list[int]:
    """The signals that arrived and were not raised, oldest first."""
    return list(_kept)


def keep(signum: int) -> None:
    if signum not in _kept:
        _kept.append(signum)


def done() -> bool:
    """Whether the run is past its point of no return."""
    return _done


def on_signal(signum: int) -> None:
    """What a handler of eaglectl's does with SIGINT / SIGTERM / SIGHUP: raise it if it is the run's first and no
    held section or point of no return stands in the way; keep it otherwise."""
    global _first
    if _first is not None or _depth or _done:
        keep(signum)
        return
    _first = signum
    raise exception_for(signum)


def _deliver() -> None:
    """The first signal kept while held, raised now (when no earlier one ended the run)."""
    global _first
    if _first is None and not _done and _kept:
        _first = _kept.pop(0)
        raise exception_for(_first)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """No signal is raised inside: one that arrives is raised when the section ends (unless the section failed,
    or the run is past its point of no return)."""
    global _depth
    _depth += 1
    try:
        yield
    except BaseException:
        _depth -= 1
        raise
    _depth -= 1
    if not _depth:
        _deliver()


def hold() -> None:
    """Enter a held section that `unhold_all` ends (for a section that does not fit a `with`)."""
    global _depth
    _depth += 1


def unhold_all() -> None:
    """End every held section without raising what they kept (the command is over: the CLI's entry decides)."""
    global _depth
    _depth = 0


def commit_ends_run() -> None:
    """This run's output commit (`committed`) is its point of no return: the commands whose last step it is."""
    global _commit_ends_run
    _commit_ends_run = True


def committed() -> None:
    """The run's output is in place (called inside the `held` section of the commit)."""
    if _commit_ends_run:
        finishing()


def finishing() -> None:
    """The command is reporting its result: a signal from now on is kept, not raised."""
    global _done
    _done = True
