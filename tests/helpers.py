"""Helpers shared by test modules (fixtures live in conftest.py; fakes of external systems in tests/fakes/)."""

from __future__ import annotations

import importlib
import json
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
