"""Tensor-parallel orchestration for engine runners: one process per rank, the same call on every rank.

A tensor-parallel forward is a sequence of NCCL collectives, so every rank must run *identical* extends in the
same order. Rank 0 lives in the calling process (its outputs are the ones returned, with no copy between
processes); ranks 1..N-1 are spawned processes that build the same engine from the same picklable spec, join
the same NCCL port, and answer each call with an acknowledgement (their outputs are dropped).

Nothing here knows SGLang: an engine is any object built by `factory(rank=r, spec=spec)` whose methods the group
calls by name; that is what lets the orchestration be tested on CPU with fake engines and fake workers.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from eaglectl.errors import EaglectlError

# Seconds a rank may take to build its engine (SGLang start-up scans its model registry: about a minute).
DEFAULT_START_TIMEOUT_S = 1800.0
# Seconds between liveness checks while waiting for a rank's reply.
_POLL_S = 0.5
_CLOSE = "__close__"


class RankFailure(EaglectlError):
    """A tensor-parallel rank failed to start, raised in a call, or died; the group is torn down."""

    multiline = True  # one report per rank


class RankWorker(Protocol):
    """The channel to one remote rank (rank >= 1)."""

    rank: int

    def send(self, message: tuple[str, tuple, dict]) -> None: ...

    def recv(self, timeout: float | None = None) -> tuple[str, Any]: ...

    def stop(self, timeout: float = 30.0) -> None: ...


def worker_main(rank: int, conn: Any, factory: Callable[..., Any], spec: Any) -> None:
    """Body of a remote rank: build the engine, then run every call it is sent until told to close.

    Replies are ("ready"|"ok", None) or ("error", text); results stay on this rank.
    """
    try:
        engine = factory(rank=rank, spec=spec)
    except BaseException as exc:
        conn.send(("error", error_text(exc)))
        conn.close()
        return
    conn.send(("ready", None))
    while True:
        try:
            name, args, kwargs = conn.recv()
        except (EOFError, OSError):  # the parent went away: release the GPU and leave
            _close_quietly(engine)
            return
        if name == _CLOSE:
            try:
                engine.close()
                conn.send(("ok", None))
            except BaseException as exc:
                conn.send(("error", error_text(exc)))
            conn.close()
            return
        try:
            getattr(engine, name)(*args, **kwargs)
            conn.send(("ok", None))
        except BaseException as exc:
            conn.send(("error", error_text(exc)))


def error_text(exc: BaseException) -> str:
    """What a failing remote rank reports: an `EaglectlError` (a user-facing failure) as its message and hint, as
    rank 0 would print it; anything else (a bug) as its traceback. `EAGLECTL_DEBUG=1` always sends tracebacks."""
    from eaglectl.output import debug_enabled

    if isinstance(exc, EaglectlError) and not debug_enabled():
        return str(exc) + (f"\nhint: {exc.hint}" if exc.hint else "")
    return "".join(traceback.format_exception(exc))


def _close_quietly(engine: Any) -> None:
    with contextlib.suppress(Exception):  # best effort while dying
        engine.close()


class ProcessRankWorker:
    """A remote rank in a spawned process (CUDA cannot be forked), talking over a pipe."""

    def __init__(self, rank: int, factory: Callable[..., Any], spec: Any) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.rank = rank
        self._conn, child = ctx.Pipe(duplex=True)
        # Not a daemon: SGLang may start helper processes of its own, which daemons cannot. A rank whose parent
        # dies sees its pipe close and exits on its own.
        self._proc = ctx.Process(target=worker_main, args=(rank, child, factory, spec),
                                 name=f"eaglectl-tp-rank{rank}")
        self._proc.start()
        child.close()

    def send(self, message: tuple[str, tuple, dict]) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, EOFError, OSError) as exc:
            raise RankFailure(f"tensor-parallel rank {self.rank} is gone ({self._exit_text()})") from exc

    def recv(self, timeout: float | None = None) -> tuple[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._conn.poll(_POLL_S):
            if not self._proc.is_alive() and not self._conn.poll(0):
                raise RankFailure(f"tensor-parallel rank {self.rank} died ({self._exit_text()})")
            if deadline is not None and time.monotonic() > deadline:
                raise RankFailure(f"tensor-parallel rank {self.rank} did not answer within {timeout:.0f} s")
        try:
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            raise RankFailure(f"tensor-parallel rank {self.rank} closed its pipe ({self._exit_text()})") from exc

    def stop(self, timeout: float = 30.0) -> None:
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5.0)
        self._conn.close()

    def _exit_text(self) -> str:
        code = self._proc.exitcode
        return "still running" if code is None else f"exit code {code}"


class RankGroup:
    """Rank 0 in this process plus remote ranks; `call` runs one method on all of them and returns rank 0's result.

    Every call is sent to the remote ranks *before* rank 0 runs it, because a collective blocks until all ranks
    reach it. With remote ranks, any failure (on any rank) tears the whole group down: ranks that disagree on
    what ran last would deadlock in the next collective. A group of one rank survives its own errors.
    """

    def __init__(self, local: Any, workers: Sequence[RankWorker] = ()) -> None:
        self.local = local
        self.workers = list(workers)
        self.closed = False

    @property
    def size(self) -> int:
        return 1 + len(self.workers)

    @classmethod
    def start(cls, factory: Callable[..., Any], spec: Any, size: int, *,
              worker_factory: Callable[[int, Callable[..., Any], Any], RankWorker] = ProcessRankWorker,
              start_timeout: float = DEFAULT_START_TIMEOUT_S) -> RankGroup:
        """Start ranks 1..size-1, build rank 0 here (all of them must be joining NCCL at the same time), wait."""
        if size < 1:
            raise ValueError(f"tensor-parallel size must be >= 1, got {size}")
        workers: list[RankWorker] = []
        try:
            for rank in range(1, size):
                workers.append(worker_factory(rank, factory, spec))
            local = factory(rank=0, spec=spec)
        except BaseException:
            for w in workers:
                _stop_quietly(w)
            raise
        group = cls(local, workers)
        failures = _collect(workers, "ready", "failed to start", timeout=start_timeout)
        if failures:
            group.abort()
            raise RankFailure("tensor-parallel start-up failed: " + "\n".join(failures))
        return group

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run `name(*args, **kwargs)` on every rank; rank 0's return value."""
        if self.closed:
            raise RuntimeError("the tensor-parallel group is closed")
        try:
            for w in self.workers:
                w.send((name, args, kwargs))
        except BaseException:
            self.abort()
            raise
        try:
            result = getattr(self.local, name)(*args, **kwargs)
        except BaseException:
            if self.workers:
                self.abort()  # the remote ranks may be blocked in a collective rank 0 never reached
            raise
        failures = _collect(self.workers, "ok", f"failed in {name}")
        if failures:
            self.abort()
            raise RankFailure(f"tensor-parallel call {name} failed: " + "\n".join(failures))
        return result

    def close(self) -> None:
        """Close every rank (remote ones first, then rank 0); safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        errors = []
        for w in self.workers:
            try:
                w.send((_CLOSE, (), {}))
            except RankFailure as exc:
                errors.append(str(exc))
        try:
            self.local.close()
        finally:
            for w in self.workers:
                try:
                    status, payload = w.recv(timeout=120.0)
                    if status != "ok":
                        errors.append(f"rank {w.rank} failed to close:\n{payload}")
                except RankFailure as exc:
                    errors.append(str(exc))
                _stop_quietly(w)
        if errors:
            raise RankFailure("tensor-parallel close: " + "\n".join(errors))

    def abort(self) -> None:
        """Tear everything down without waiting on ranks that may be stuck in a collective."""
        if self.closed:
            return
        self.closed = True
        for w in self.workers:
            _stop_quietly(w, timeout=0.0)
        _close_quietly(self.local)


def _stop_quietly(worker: RankWorker, timeout: float = 30.0) -> None:
    with contextlib.suppress(Exception):  # best effort during teardown
        worker.stop(timeout)


def _collect(workers, expected: str, what: str, **recv_kwargs: Any) -> list[str]:
    """One reply from every remote rank; a line per rank that did not answer `expected`."""
    failures = []
    for w in workers:
        try:
            status, payload = w.recv(**recv_kwargs)
        except RankFailure as exc:
            failures.append(str(exc))
            continue
        if status != expected:
            failures.append(f"rank {w.rank} {what}:\n{payload}")
    return failures
