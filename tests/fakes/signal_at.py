"""Sends this process a signal at an exact moment of a run. `EAGLECTL_TEST_SIGNAL_AT` holds `;`-separated entries
`module:function:N:SIGNAL[:after]`: the N-th call of `module.function` (as the module calls it) raises SIGNAL
just before the call runs (just after it returns, with `after`). Imported before the CLI's entry point runs."""

import importlib
import os
import signal
from typing import Any


def _patch(entry: str) -> None:
    module_name, name, nth, sig_name, *when = entry.split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, name)
    sig = signal.Signals[sig_name]
    after = when == ["after"]
    calls = [0]

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        hit = calls[0] == int(nth)
        if hit and not after:
            signal.raise_signal(sig)
        result = real(*args, **kwargs)
        if hit and after:
            signal.raise_signal(sig)
        return result

    setattr(module, name, patched)


for _entry in filter(None, os.environ.get("EAGLECTL_TEST_SIGNAL_AT", "").split(";")):
    _patch(_entry)
