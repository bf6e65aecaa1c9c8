"""A byte progress bar on stderr that only appears once an operation has run for more than a second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from eaglectl import output

SHOW_AFTER_S = 1.0


@contextmanager
def byte_progress(description: str, *, enabled: bool = True) -> Iterator:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    start = time.monotonic()
    state: dict = {}

    def update(done: int, total: int) -> None:
        if not enabled:
            return
        if "bar" not in state:
            # Only on a terminal: redirected stderr (logs, CI, tests) gets no bar and no stray blank line.
            if time.monotonic() - start < SHOW_AFTER_S or not output.stderr.is_terminal:
                return
            bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                           TransferSpeedColumn(), TimeRemainingColumn(), console=output.stderr, transient=True)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task(description, total=total)
        state["bar"].update(state["task"], completed=done, total=total)

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].stop()
