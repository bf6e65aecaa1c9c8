"""Start-up stays light: `--help` and a TAB press never import the heavy libraries.

Each case runs in a fresh interpreter under `-X importtime`, which lists every module the process imported,
and also checks the output, so that a case that silently did something else cannot pass. Timing is measured
by benchmarks/cli_startup_bench.py, never asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from eaglectl.cli.app import app

HEAVY = {"torch", "safetensors", "transformers", "sglang", "numpy", "huggingface_hub"}
ENTRY = "import sys; sys.argv[0] = 'eaglectl'; from eaglectl.cli.entry import main; sys.exit(main())"


def imported(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[set[str], str]:
    """(top-level packages imported, stdout) of `python -X importtime <argv>`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], env={**base, "COLUMNS": "80", **(env or {})},
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                modules.add(name.split(".")[0])
    assert "eaglectl" in modules, "importtime listed nothing: the check would pass vacuously"
    return modules, proc.stdout


def test_module_help_imports_nothing_heavy():
    modules, out = imported(["-m", "eaglectl", "--help"])
    assert "Usage" in out and "inspect" in out
    assert modules & HEAVY == set()


def test_console_script_help_imports_nothing_heavy():
    modules, out = imported(["-c", ENTRY, "--help"])
    assert "Usage: eaglectl" in out
    assert modules & HEAVY == set()


def _commands() -> list[str]:
    return sorted(n for n, c in typer.main.get_command(app).commands.items() if not c.hidden)


@pytest.mark.parametrize("command", _commands())
def test_command_help_imports_nothing_heavy(command):
    modules, out = imported(["-c", ENTRY, command, "--help"])
    assert f"eaglectl {command}" in out
    assert modules & HEAVY == set()


@pytest.mark.parametrize(("words", "expect"), [
    ("eaglectl in", "inspect"),
    ("eaglectl inspect ck", "ckpt"),
    ("eaglectl inspect ckpt --target ta", "target"),
])
def test_tab_completion_imports_nothing_heavy(tmp_path, words, expect):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt/draft_model.pt").write_bytes(b"")
    (tmp_path / "target").mkdir()
    (tmp_path / "target/config.json").write_text("{}")
    env = {"_EAGLECTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    modules, out = imported(["-c", ENTRY], env=env, cwd=tmp_path)
    assert out.split() == [expect]
    assert modules & HEAVY == set()
