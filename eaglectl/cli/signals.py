"""Ctrl-C, SIGTERM and SIGHUP held back from the entry point's first line (`eaglectl.cli.entry`) while the CLI is
imported and its command line read (typer, rich and eaglectl's own modules: about a tenth of a second), until the
command's own handlers take them (`eaglectl.cli.app`): one that lands there then ends the run as one anywhere else
does (one `error:` line, exit 130 / 143 / 129), not with a traceback from inside an import.

Nothing but `_signal` is imported, the C module behind `signal` (whose `enum` and this module's `typing` would take
longer to import than everything else here), so that the hold starts as early as it can. It hands back and takes
raw handlers, as `signal` passes them to it."""

import _signal

_held: list[int] = []  # the signals that arrived while held, in order
_previous: dict[int, object] = {}  # the handlers the hold replaced


def _hold(signum: int, _frame: object) -> None:
    if signum not in _held:
        _held.append(signum)


def holding(handler: object) -> bool:
    """Whether `handler` is the hold's (the handler a command's own replaces, as it replaces the default)."""
    return handler is _hold


def hold() -> None:
    """Hold back Ctrl-C, SIGTERM and SIGHUP from now on, where their handlers are the default ones (a signal
    ignored under `nohup`, or an embedding program's handler, is left as it is). Idempotent."""
    for name, default in (("SIGINT", _signal.default_int_handler), ("SIGTERM", _signal.SIG_DFL),
                          ("SIGHUP", _signal.SIG_DFL)):
        sig = getattr(_signal, name, None)
        if sig is None or sig in _previous:
            continue
        try:
            if _signal.getsignal(sig) == default:
                _previous[sig] = _signal.signal(sig, _hold)
        except (ValueError, OSError):  # not the main thread
            pass


def take() -> list[int]:
    """The held signals, forgotten here: the caller acts on them."""
    taken = list(_held)
    _held.clear()
    return taken


def release() -> None:
    """Stop holding: the handlers the hold replaced are back (signals held so far stay for `take`)."""
    for sig, previous in _previous.items():
        try:
            if _signal.getsignal(sig) is _hold:
                _signal.signal(sig, previous)
        except (ValueError, OSError):
            pass
    _previous.clear()
