"""Helpers shared by test modules (fixtures live in conftest.py; fakes of external systems in tests/fakes/)."""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any


def run_json(cli, *args: str) -> tuple[int, dict]:
    result = cli(*args, "--json")
    return result.exit_code, json.loads(result.stdout)


class LazyModule:
    """A module imported on first attribute use: collecting a test file must not import the module it tests
    (other tests check that the CLI never does)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # pytest's collection probes must not import it
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_python(tmp_path: Path, script: Path) -> Path:
    """An executable `tmp_path/fakepy` that runs `script` under this interpreter, for eaglectl's `--python`."""
    exe = tmp_path / "fakepy"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    exe.chmod(0o755)
    return exe


def survivor(pids: list[int], timeout: float) -> int | None:
    """The first of `pids` still running after `timeout` seconds (one deadline for all); None once all are gone."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                return pid
            time.sleep(0.05)
    return None
