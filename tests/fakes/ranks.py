"""Tensor-parallel ranks without GPUs: a remote rank on a thread over a real pipe and the real worker loop, and
an engine that records every call (so tests see which rank ran what, in which order)."""

from __future__ import annotations

import threading
from multiprocessing import Pipe
from typing import ClassVar

from eaglectl.errors import EaglectlError
from eaglectl.runner.sglang.tp import RankFailure, worker_main


class ThreadWorker:
    """A remote rank on a thread, over a real pipe and the real worker loop (`worker_main`)."""

    def __init__(self, rank, factory, spec):
        EchoEngine.log.append(("spawn", rank))
        self.rank = rank
        self._conn, child = Pipe()
        self._thread = threading.Thread(target=worker_main, args=(rank, child, factory, spec), daemon=True)
        self._thread.start()
        self.stopped = False

    def send(self, message):
        self._conn.send(message)

    def recv(self, timeout=None):
        if not self._conn.poll(timeout if timeout is not None else 30):
            raise RankFailure(f"rank {self.rank} did not answer")
        return self._conn.recv()

    def stop(self, timeout=30.0):
        self.stopped = True
        self._thread.join(timeout or 0.1)


class EchoEngine:
    """Records every call; `add` returns a rank-dependent value so the test sees whose result came back."""

    log: ClassVar[list] = []

    def __init__(self, *, rank, spec):
        if spec.get("fail_start") == rank:
            raise RuntimeError(f"rank {rank} cannot start")
        self.rank = rank
        self.closed = 0
        EchoEngine.log.append(("start", rank))

    def add(self, x):
        EchoEngine.log.append(("add", self.rank, x))
        return x + 100 * self.rank

    def fail_on(self, rank):
        if self.rank == rank:
            raise ValueError(f"rank {rank} says no")

    def refuse_on(self, rank):
        if self.rank == rank:
            raise EaglectlError(f"rank {rank} refuses these settings", hint="use triton")

    def close(self):
        self.closed += 1
        EchoEngine.log.append(("close", self.rank))
