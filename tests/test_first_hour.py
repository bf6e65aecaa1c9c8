"""What a new user meets in the first hour: clean stderr, usage errors, pipes, help at 80 columns, packaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "import sys; sys.argv[0] = 'eaglectl'; from eaglectl.cli.entry import main; sys.exit(main())"


def run_cli(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """eaglectl in a fresh interpreter (what a shell user runs), at 80 columns unless `env` says otherwise."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    return subprocess.run([sys.executable, "-c", ENTRY, *map(str, args)], env={**base, "COLUMNS": "80", **(env or {})},
                          capture_output=True, text=True, timeout=300, **kwargs)


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_numpy_is_a_base_dependency_and_demo_stderr_has_no_numpy_warning(tmp_path):
    assert any(d.startswith("numpy") for d in pyproject()["project"]["dependencies"])
    proc = run_cli("demo", tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    assert "NumPy" not in proc.stderr and "UserWarning" not in proc.stderr
    assert "eaglectl export" in proc.stdout


def _commands():
    import typer.main

    from eaglectl.cli.app import app

    group = typer.main.get_command(app)
    return group, [(name, group.commands[name]) for name in group.commands]


def test_help_at_80_columns_shows_every_option_in_full_and_each_has_help(cli):
    group, commands = _commands()
    for name, command in [("", group), *commands]:
        result = cli(*([name] if name else []), "--help", env={"COLUMNS": "80"})
        assert result.exit_code == 0
        assert "…" not in result.stdout, f"{name} --help truncates at 80 columns:\n{result.stdout}"
        assert max(len(line) for line in result.stdout.splitlines()) <= 80
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            for opt in param.opts:
                assert opt in result.stdout, f"{name} --help lacks {opt}"
            assert param.help, f"{name} {param.opts[0]} has no help"


def test_short_version_flag(cli):
    from eaglectl import __version__

    assert cli("-V").stdout.strip() == f"eaglectl {__version__}"


@pytest.mark.parametrize("json_mode", [False, True])
def test_a_reader_that_stops_early_ends_the_run_quietly(sample_root, json_mode):
    """`eaglectl inspect X | head -1`: exit 1 as hf and pip do, nothing on stderr (stdout is closed before
    eaglectl writes its first byte, so every write meets the closed pipe)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    args = ["inspect", str(sample_root / "nemo-sharded"), *(["--json"] if json_mode else [])]
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=base)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert stderr == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [
    ("inspect", "SAMPLE"), ("inspect", "SAMPLE", "--json"), ("--version",), ("--version", "--json"),
    ("export", "--help"), ("serve", "--target", "TARGET", "--draft", "SAMPLE", "--print-only"),
    ("inspect", "/nonexistent-eaglectl", "--json"),
])
def test_stdout_on_a_full_disk_is_one_error_line(sample_root, args):
    """`eaglectl inspect X > file` on a full disk (here /dev/full: every write is ENOSPC): one `error:` line,
    exit 1, no traceback; a run that failed already keeps its own error line as the one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    names = {"SAMPLE": str(sample_root / "nemo-sharded"), "TARGET": str(sample_root / "target")}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", ENTRY, *(names.get(a, a) for a in args)], stdout=full,
                              stderr=subprocess.PIPE, env=base, timeout=120)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert ("no such file" in errors[0]) if "/nonexistent-eaglectl" in args else (
        errors[0] == "error: cannot write the output (No space left on device)")


def test_demo_without_a_directory_reuses_one_fixed_directory(cli, tmp_path, monkeypatch):
    fixed = tmp_path / "eaglectl-demo-me"
    monkeypatch.setattr("eaglectl.demo.run.default_directory", lambda: fixed)
    first = cli("demo", "--json")
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)["result"]
    assert doc["directory"] == str(fixed) and doc["reused"] is False and doc["export"]["action"] == "written"
    second = cli("demo")
    assert second.exit_code == 0 and "(reused: an earlier demo's)" in second.stdout
    assert "Up to date EAGLE3 drafter" in second.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eaglectl-demo-me"]  # no new directory per run


def test_demo_does_not_reuse_a_directory_it_did_not_make(cli, tmp_path, monkeypatch):
    fixed = tmp_path / "eaglectl-demo-me"
    fixed.mkdir()
    (fixed / "notes.txt").write_text("mine")
    monkeypatch.setattr("eaglectl.demo.run.default_directory", lambda: fixed)
    result = cli("demo")
    assert result.exit_code == 1 and "is not empty" in result.stderr
    assert [p.name for p in fixed.iterdir()] == ["notes.txt"]


def test_install_hints_name_the_extras_requirements():
    """Hints say `pip install "sglang>=0.5.9"`, which works however eaglectl was installed (the name eaglectl on
    the public index is another project's); the requirements are pyproject's extras."""
    from eaglectl.errors import EXTRAS, install_hint

    extras = pyproject()["project"]["optional-dependencies"]
    for extra, requirement in EXTRAS.items():
        assert extras[extra] == [requirement]
        assert install_hint(extra) == f'pip install "{requirement}"'
    sources = [p.read_text() for p in (ROOT / "eaglectl").rglob("*.py")] + [(ROOT / "README.md").read_text()]
    assert not any('install "eaglectl[' in text or "install 'eaglectl[" in text for text in sources)


def test_package_metadata_and_typing_marker():
    project = pyproject()["project"]
    assert project["license"] == "Apache-2.0" and "Apache License" in (ROOT / "LICENSE").read_text()
    assert project["keywords"] and any(c == "Typing :: Typed" for c in project["classifiers"])
    assert (ROOT / "eaglectl" / "py.typed").is_file()  # hatch ships every file of the eaglectl package
    extras = project["optional-dependencies"]
    assert not any(r.startswith("ruff") for r in extras["test"])
    assert any(r.startswith("ruff") for r in extras["dev"]) and any(r.startswith("mypy") for r in extras["dev"])
    assert (ROOT / "CHANGELOG.md").is_file()


def test_ci_runs_the_readme_test_command_then_ruff_and_mypy():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[ci.index("# README.md test command:") + 1]
    assert f"```bash\n{command}\n```" in readme
    assert "ruff check ." in ci and "mypy" in ci


@pytest.mark.parametrize("json_mode", [False, True])
def test_a_closed_stdout_ends_with_the_exit_code_of_the_run(sample_root, tmp_path, json_mode):
    """`eaglectl export ... >&-`: the export is written, nothing to show it on, exit 0 and no traceback; a run
    that fails still exits 1 with its error line."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    out = tmp_path / "out"
    for args, code in ((["export", str(sample_root / "nemo-legacy-eagle3"), "-o", str(out)], 0),
                       (["inspect", str(tmp_path / "missing")], 1)):
        proc = subprocess.run([sys.executable, "-c", ENTRY, *args, *(["--json"] if json_mode else [])],
                              stderr=subprocess.PIPE, text=True, env=base, preexec_fn=lambda: os.close(1))
        assert proc.returncode == code, proc.stderr
        assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
        assert ("error:" in proc.stderr) == (code == 1)
    assert (out / "model.safetensors").is_file()


def test_readme_gives_the_cpu_index_for_torch_and_keeps_its_commands():
    """PyPI's Linux torch wheels pull CUDA: the prose names the CPU index, while the two commands (CI runs the test
    one literally) stay as they are."""
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "keeps pip from pulling a multi-GB CUDA build" not in readme  # it does pull one on Linux
    for command in ('pip install torch==2.13.0 && pip install -e . && eaglectl demo',
                    'pip install torch==2.13.0 && pip install -e ".[test]" && pytest'):
        assert f"python3 -m venv .venv && . .venv/bin/activate && {command}\n```" in readme
