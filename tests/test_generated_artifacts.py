"""The files generated from the Typer app (completion scripts, docs/cli.md) are current and shipped.

When a command or option changes, the check fails until the files are regenerated with
`python scripts/gen_cli_artifacts.py` (and committed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gen_cli_artifacts.py"
REGENERATE = "python scripts/gen_cli_artifacts.py"
ENTRY = "import sys; sys.argv[0] = 'eaglectl'; from eaglectl.cli.entry import main; sys.exit(main())"
SHELL_FILES = {"bash": "completions/eaglectl.bash", "zsh": "completions/_eaglectl",
               "fish": "completions/eaglectl.fish", "powershell": "completions/eaglectl.ps1"}


def test_generated_cli_files_are_current():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (
        f"Generated CLI files are stale. Regenerate them with `{REGENERATE}` and commit the result.\n"
        f"{proc.stderr}\n{proc.stdout}")


def test_pyproject_ships_every_completion_script():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shared = config["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared == {
        "completions/eaglectl.bash": "share/bash-completion/completions/eaglectl",
        "completions/_eaglectl": "share/zsh/site-functions/_eaglectl",
        "completions/eaglectl.fish": "share/fish/vendor_completions.d/eaglectl.fish",
        "completions/eaglectl.ps1": "share/eaglectl/completions/eaglectl.ps1",
    }
    assert set(shared) == set(SHELL_FILES.values())
    assert config["project"]["scripts"]["eaglectl"] == "eaglectl.cli.entry:main"  # the name the scripts complete


@pytest.mark.parametrize("shell", sorted(SHELL_FILES))
def test_scripts_are_typers_own(shell):
    """Every line Typer prints for `eaglectl --show-completion <shell>` is in the shipped file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    env["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"  # --show-completion takes the shell as a value
    proc = subprocess.run([sys.executable, "-c", ENTRY, "--show-completion", shell], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "_EAGLECTL_COMPLETE" in proc.stdout
    shipped = (ROOT / SHELL_FILES[shell]).read_text(encoding="utf-8")
    missing = [line for line in proc.stdout.splitlines() if line.strip() and line.strip() not in shipped]
    assert missing == []


def test_docs_cover_every_command():
    import typer.main

    from eaglectl.cli.app import app

    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name, command in typer.main.get_command(app).commands.items():
        if not command.hidden:
            assert f"## `eaglectl {name}`" in docs, f"docs/cli.md lacks `{name}`: run {REGENERATE}"


@pytest.mark.parametrize(("shell", "installed", "rc", "line"), [
    ("bash", ".bash_completions/eaglectl.sh", ".bashrc", "source '{home}/.bash_completions/eaglectl.sh'"),
    ("zsh", ".zfunc/_eaglectl", ".zshrc", "fpath+=~/.zfunc; autoload -Uz compinit; compinit"),
    ("fish", ".config/fish/completions/eaglectl.fish", None, None),
])
def test_install_completion_installs_the_shipped_script(tmp_path, shell, installed, rc, line):
    """Where Typer's installer would put its stock script, the one eaglectl ships (stock plus its two fixes); the
    start-up file keeps what it held and gets the loading line once, however often it is run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    env["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"  # Typer's own option then takes the shell as a value
    env["HOME"] = str(tmp_path)
    if rc:
        (tmp_path / rc).write_text("# mine\nalias ll='ls -l'")
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", ENTRY, "--install-completion", shell], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert f"{shell} completion installed in {tmp_path / installed}" in proc.stdout
    assert (tmp_path / installed).read_text(encoding="utf-8") == (ROOT / SHELL_FILES[shell]).read_text(encoding="utf-8")
    if rc:
        text = (tmp_path / rc).read_text()
        assert text.startswith("# mine\nalias ll='ls -l'\n") and text.count(line.format(home=tmp_path)) == 1
