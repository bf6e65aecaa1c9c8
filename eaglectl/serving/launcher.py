"""Starting SGLang: exec in place, or a supervised child whose whole process group never outlives us.

The child gets its own session (process group), so SGLang's scheduler / detokenizer subprocesses are
signalled together; SIGINT / SIGTERM sent to eaglectl are forwarded to that group, and every exit path
(normal, error, Ctrl-C, SIGTERM) stops it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from eaglectl import interrupts
from eaglectl.errors import LaunchError

LOG_TAIL_LINES = 60


def exec_server(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with SGLang (the default launch mode)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv[0], argv, env)


class ServerProcess:
    """A supervised SGLang child: log streamed to stderr (tail kept), health polling, clean stop."""

    def __init__(self, argv: list[str], env: dict[str, str], *, log: Callable[[str], None] | None = None) -> None:
        self.argv, self.env = argv, env
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.streamed = log is None  # the log goes to stderr as it comes: a failure does not repeat its tail
        self._log = log or (lambda line: sys.stderr.write(line))
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._old_handlers: dict[int, Any] = {}
        self._stopping = False

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"cannot start {self.argv[0]}: {exc.strerror or exc}") from exc
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread (e.g. inside a test runner thread)
                self._old_handlers[sig] = signal.signal(sig, self._forward)

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.tail.append(line.rstrip("\n"))
            with contextlib.suppress(Exception):
                self._log(line)

    def _forward(self, signum: int, _frame: Any) -> None:
        """Hand the signal to the server's group and end the run with it (KeyboardInterrupt / `Terminated`, as
        everywhere else). A second one, while the run already ends or the server is being stopped, kills the group
        at once: the grace period is not waited out."""
        if self._stopping or interrupts.first() is not None:
            self.signal_group(signal.SIGKILL)
        else:
            self.signal_group(signum)
        interrupts.on_signal(signum)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

    def _kill(self) -> None:
        """SIGKILL the group and wait for the server: no signal cuts this short (the group never outlives us)."""
        assert self.proc is not None
        with interrupts.held():
            self.signal_group(signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, n: int = 25) -> str:
        return "\n".join(list(self.tail)[-n:])

    def wait_healthy(self, base_url: str, *, timeout: float, on_tick: Callable[[float], None] | None = None) -> float:
        """Poll `/health` until it answers 200; fail with the log tail if the child dies or time runs out."""
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                self._drain()
                raise self._failure(f"SGLang exited with code {code} before becoming healthy")
            if elapsed > timeout:
                raise self._failure(f"SGLang did not answer {base_url}/health within {timeout:.0f} s")
            if health_ok(base_url):
                return elapsed
            if on_tick:
                on_tick(elapsed)
            time.sleep(0.5)

    def _failure(self, what: str) -> LaunchError:
        """A start-up failure pointing at the server's log: above, where it was streamed (its last lines also in
        the error's `log_tail`, for `--json`), else its last lines in the message."""
        if not self.streamed:
            return LaunchError(f"{what}; last log lines:\n{self.log_tail()}")
        error = LaunchError(f"{what} (its log is above)")
        error.log_tail = self.log_tail() or None
        return error

    def _drain(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=2)

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        self._drain()
        return code

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM the group, then SIGKILL after `grace` seconds; restore signal handlers. Idempotent."""
        self._stopping = True
        try:
            if self.proc is None:
                return None
            if self.proc.poll() is None:
                self.signal_group(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._kill()
                except BaseException:  # a signal while waiting: no grace left, the group goes now
                    self._kill()
                    raise
            self.signal_group(signal.SIGKILL)  # stragglers left in the group
            self._drain()
            return self.proc.returncode
        finally:
            for sig, handler in self._old_handlers.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(sig, handler)
            self._old_handlers.clear()


def health_ok(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def post_json(url: str, payload: dict[str, Any], *, timeout: float = 300) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")[:300]
        raise LaunchError(f"{url}: HTTP {exc.code}: {body}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LaunchError(f"{url}: request failed ({exc})") from exc
