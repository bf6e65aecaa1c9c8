"""Shell completion: the custom completers directly, through Typer's completion protocol in a real
subprocess (as the shells call it), and the generated scripts in the shells that are installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from eaglectl.cli import complete
from eaglectl.cli.app import app
from eaglectl.enums import Algorithm, Engine, ServeEngine

ROOT = Path(__file__).resolve().parents[1]
COMPLETIONS = ROOT / "completions"
# Exactly what the installed console script runs, with the program name the shells see.
ENTRY = "import sys; sys.argv[0] = 'eaglectl'; from eaglectl.cli.entry import main; sys.exit(main())"


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    """A training-output folder: checkpoint-like dirs of every layout beside dirs that are not checkpoints."""
    files = [
        "runs/nemo/epoch_0_step_100/model/config.json",  # NeMo run dir -> epoch dirs -> model/
        "runs/nemo/epoch_0_step_100/eagle_meta.pt",
        "runs/nemo/epoch_1_step_200/model/config.json",
        "runs/consolidated/model/config.json",  # has model/
        "runs/legacy/draft_model.pt",  # NeMo legacy, no config.json
        "runs/specforge/config.json",
        "runs/specforge/model.safetensors",
        "runs/.hidden/config.json",  # hidden: only offered when asked for with a leading "."
        "runs/logs/tb/events.out",  # not a checkpoint, has a subdir -> "runs/logs/"
        "runs/empty-ish/notes.txt",  # not a checkpoint, no subdir -> left out
        "runs/file.txt",  # a file -> left out
        "models/llama/config.json",  # a target
        "models/llama/tokenizer.json",
        "models/mistral/config.json",
        "models/broken/weights.bin",  # no config.json, no subdir
    ]
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    (tmp_path / "runs/link").symlink_to(tmp_path / "runs/specforge")  # links count as what they point to
    (tmp_path / "runs/dangling").symlink_to(tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


RUNS_CHECKPOINTS = ["runs/consolidated", "runs/legacy", "runs/link", "runs/logs/", "runs/nemo", "runs/specforge"]


@pytest.mark.parametrize(("incomplete", "expected"), [
    ("", ["models/", "runs/"]),
    ("r", ["runs/"]),
    ("runs", ["runs/"]),
    ("runs/", RUNS_CHECKPOINTS),
    ("runs/s", ["runs/specforge"]),
    ("runs/specforge", ["runs/specforge"]),
    ("runs/specforge/", []),  # inside a checkpoint: nothing deeper; the shell falls back to files
    ("runs/l", ["runs/legacy", "runs/link", "runs/logs/"]),
    ("runs/nemo/", ["runs/nemo/epoch_0_step_100", "runs/nemo/epoch_1_step_200"]),
    ("runs/nemo/epoch_0_step_100/", ["runs/nemo/epoch_0_step_100/model"]),
    ("./runs/", ["./" + c for c in RUNS_CHECKPOINTS]),
    ("./runs/spec", ["./runs/specforge"]),
    ("runs//spec", ["runs//specforge"]),
    ("~", ["~/"]),
    ("~/", ["~/models/", "~/runs/"]),
    ("~/runs/c", ["~/runs/consolidated"]),
    ("runs/.", ["runs/.hidden"]),
    ("runs/.h", ["runs/.hidden"]),
    ("runs/file.txt", []),
    ("runs/empty-ish", []),
    ("runs/dangling", []),
    ("nope/", []),
    ("runs/file.txt/", []),
])
def test_checkpoint_paths(tree, incomplete, expected):
    assert complete.checkpoint_paths(incomplete) == expected


def test_checkpoint_paths_absolute(tree):
    assert complete.checkpoint_paths(f"{tree}/runs/n") == [f"{tree}/runs/nemo"]
    assert complete.checkpoint_paths(f"{tree}/runs/") == [f"{tree}/{c}" for c in RUNS_CHECKPOINTS]
    root = complete.checkpoint_paths("/")
    assert root and all(c.startswith("/") and c.count("/") <= 2 for c in root)
    assert f"/{tree.parts[1]}/" in root or f"/{tree.parts[1]}" in root


@pytest.mark.parametrize(("incomplete", "expected"), [
    ("", ["models/", "runs/"]),
    ("models/", ["models/llama", "models/mistral"]),
    ("models/m", ["models/mistral"]),
    ("./models/l", ["./models/llama"]),
    ("~/models/", ["~/models/llama", "~/models/mistral"]),
    # only config.json counts: a NeMo run dir is walked into, a legacy draft_model.pt dir is left out
    ("runs/", ["runs/consolidated/", "runs/link", "runs/logs/", "runs/nemo/", "runs/specforge"]),
    ("runs/consolidated/", ["runs/consolidated/model"]),
])
def test_target_paths(tree, incomplete, expected):
    assert complete.target_paths(incomplete) == expected


def test_huge_directory_is_offered_without_a_full_scan(tree, monkeypatch):
    """A TAB must stay fast beside a data dir of many files: past the scan limit it is offered to walk into."""
    monkeypatch.setattr(complete, "_SCAN_LIMIT", 3)
    for i in range(5):
        (tree / "models/broken" / f"shard-{i}.bin").write_text("")
    assert complete.target_paths("models/b") == ["models/broken/"]
    (tree / "models/broken/config.json").write_text("{}")  # a marker past the limit is still seen
    assert complete.target_paths("models/b") == ["models/broken"]
    assert complete.checkpoint_paths("models/b") == ["models/broken"]


def test_real_sample_checkpoints_are_all_offered(sample_root):
    """Every layout eaglectl builds as a sample (and so resolves) is completed as a checkpoint."""
    got = complete.checkpoint_paths(f"{sample_root}/")
    names = sorted(p.name for p in sample_root.iterdir() if p.is_dir())
    assert got == [f"{sample_root}/{n}" for n in names]
    assert f"{sample_root}/target" in complete.target_paths(f"{sample_root}/")


@pytest.mark.parametrize(("incomplete", "expected"), [
    ("", [a.value for a in Algorithm]),
    ("E", ["EAGLE3", "EAGLE"]),
    ("EAGLE3", ["EAGLE3"]),
    ("eag", ["eagle3", "eagle"]),  # the option is case-insensitive; answered in the user's case
    ("eagle3", ["eagle3"]),
    ("Eag", ["EagLE3", "EagLE"]),
    ("x", []),
])
def test_algorithms(incomplete, expected):
    assert complete.algorithms(incomplete) == expected


@pytest.mark.parametrize(("incomplete", "expected"), [
    ("", [e.value for e in Engine]),
    ("s", ["sglang"]),
    ("H", ["HF"]),
    ("v", []),
])
def test_engines(incomplete, expected):
    assert complete.engines(incomplete) == expected


def test_completers_follow_the_enums():
    assert complete.algorithms("") == [a.value for a in Algorithm]
    assert complete.engines("") == [e.value for e in Engine]


# --- the completion protocol, as each shell's script drives it -------------------------------------------------


def _complete(env: dict[str, str], *, cwd: Path, entry: str = ENTRY) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    return subprocess.run([sys.executable, "-c", entry], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def bash(words: str, cword: int | None = None, *, cwd: Path, entry: str = ENTRY) -> list[str]:
    cword = len(words.split(" ")) - 1 if cword is None else cword
    proc = _complete({"_EAGLECTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)},
                     cwd=cwd, entry=entry)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.rstrip("\n").splitlines()  # as bash's $(...) does: trailing newlines go


def test_bash_protocol_checkpoint_argument(tree):
    assert bash("eaglectl inspect runs/", cwd=tree) == RUNS_CHECKPOINTS
    assert bash("eaglectl inspect runs/nemo/", cwd=tree) == ["runs/nemo/epoch_0_step_100",
                                                             "runs/nemo/epoch_1_step_200"]
    assert bash("eaglectl inspect ~/runs/s", cwd=tree) == ["~/runs/specforge"]
    assert bash(f"eaglectl inspect {tree}/models/", cwd=tree) == [f"{tree}/models/llama", f"{tree}/models/mistral"]
    assert bash("eaglectl inspect nope/", cwd=tree) == []


def test_bash_protocol_target_option(tree):
    assert bash("eaglectl inspect runs/specforge --target models/", cwd=tree) == ["models/llama", "models/mistral"]
    assert bash("eaglectl inspect runs/specforge -t ./mo", cwd=tree) == ["./models/"]
    # --target before the argument: the option's value is completed with target_paths, not checkpoints
    assert bash("eaglectl inspect --target runs/", cwd=tree) == [
        "runs/consolidated/", "runs/link", "runs/logs/", "runs/nemo/", "runs/specforge"]


def test_bash_protocol_commands_and_options(tree):
    commands = bash("eaglectl ", cwd=tree)
    assert {"inspect", "demo"} <= set(commands)
    group = typer.main.get_command(app)
    assert sorted(commands) == sorted(n for n, c in group.commands.items() if not c.hidden)
    assert bash("eaglectl insp", cwd=tree) == ["inspect"]
    assert {"--target", "--json", "--help"} <= set(bash("eaglectl inspect --", cwd=tree))


def _commands_with_option(name: str) -> list[str]:
    group = typer.main.get_command(app)
    return [cmd for cmd, obj in group.commands.items() if any(name in p.opts for p in obj.params)]


@pytest.mark.parametrize("command", _commands_with_option("--algorithm"))
def test_bash_protocol_algorithm_option(tree, command):
    assert bash(f"eaglectl {command} runs/specforge --algorithm ", cwd=tree) == ["EAGLE3", "EAGLE"]
    assert bash(f"eaglectl {command} runs/specforge -a eag", cwd=tree) == ["eagle3", "eagle"]


@pytest.mark.parametrize("command", _commands_with_option("--engine"))
def test_bash_protocol_engine_option(tree, command):
    choices = ServeEngine if command in ("serve", "bench") else Engine  # probe-target: the runner's engines
    assert bash(f"eaglectl {command} runs/specforge --engine ", cwd=tree) == [e.value for e in choices]


STAND_IN = """
import sys
from typing import Annotated
import typer
from eaglectl.cli import complete
from eaglectl.cli.options import AlgorithmOpt
from eaglectl.enums import Engine

app = typer.Typer()

@app.command()
def run(algorithm: AlgorithmOpt = None,
        engine: Annotated[Engine, typer.Option(autocompletion=complete.engines)] = Engine.sglang) -> None:
    pass

app(prog_name="eaglectl")
"""


def test_bash_protocol_enum_completers_on_the_shared_options(tree):
    """AlgorithmOpt and an engine option wired as the commands wire them, whether or not a command has them yet."""
    assert bash("eaglectl --algorithm ", cwd=tree, entry=STAND_IN) == ["EAGLE3", "EAGLE"]
    assert bash("eaglectl -a E", cwd=tree, entry=STAND_IN) == ["EAGLE3", "EAGLE"]
    assert bash("eaglectl --engine ", cwd=tree, entry=STAND_IN) == ["sglang", "hf"]
    assert bash("eaglectl --engine h", cwd=tree, entry=STAND_IN) == ["hf"]


def test_zsh_protocol(tree):
    proc = _complete({"_EAGLECTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "eaglectl inspect runs/s"},
                     cwd=tree)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "_arguments '*: :((\"runs/specforge\"))'\n"
    proc = _complete({"_EAGLECTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "eaglectl inspect nope/"},
                     cwd=tree)
    assert proc.stdout == "_files\n"  # nothing to offer: zsh completes files itself


def test_fish_protocol(tree):
    env = {"_EAGLECTL_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": "eaglectl inspect --target models/"}
    proc = _complete({**env, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}, cwd=tree)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["models/llama", "models/mistral"]
    assert _complete({**env, "_TYPER_COMPLETE_FISH_ACTION": "is-args"}, cwd=tree).returncode == 0
    env["_TYPER_COMPLETE_ARGS"] = "eaglectl inspect nope/"
    assert _complete({**env, "_TYPER_COMPLETE_FISH_ACTION": "is-args"}, cwd=tree).returncode == 1  # -> files


def test_powershell_protocol(tree):
    proc = _complete({"_EAGLECTL_COMPLETE": "complete_powershell", "_TYPER_COMPLETE_ARGS": "eaglectl inspect runs/l",
                      "_TYPER_COMPLETE_WORD_TO_COMPLETE": "runs/l"}, cwd=tree)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["runs/legacy::: ", "runs/link::: ", "runs/logs/::: "]


# --- the generated scripts in real shells ------------------------------------------------------------------------


@pytest.fixture
def on_path(tmp_path) -> dict[str, str]:
    """An environment whose PATH has an `eaglectl` that runs this checkout with this interpreter."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "eaglectl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{ENTRY}" "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_EAGLECTL_", "_TYPER_COMPLETE", "COMP_"))}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _shell(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_script_in_bash(tree, on_path):
    script = COMPLETIONS / "eaglectl.bash"
    out = _shell(["bash", "--norc", "--noprofile", "-c", f"""
        source '{script}'
        complete -p eaglectl
        COMP_WORDS=(eaglectl inspect runs/n); COMP_CWORD=2
        _eaglectl_completion eaglectl runs/n inspect; printf '<%s>\\n' "${{COMPREPLY[@]}}"
        COMP_WORDS=(eaglectl inspect runs/specforge --target models/); COMP_CWORD=4
        _eaglectl_completion eaglectl models/ --target; printf '<%s>\\n' "${{COMPREPLY[@]}}"
    """], on_path, tree)
    assert out.splitlines() == ["complete -o default -F _eaglectl_completion eaglectl",
                                "<runs/nemo>", "<models/llama>", "<models/mistral>"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_script_autoloaded_from_fpath_completes_on_first_tab(tree, on_path, tmp_path):
    """Installed in share/zsh/site-functions, the file is autoloaded as `_eaglectl`: the first call completes."""
    fpath = tmp_path / "site-functions"
    fpath.mkdir()
    shutil.copy(COMPLETIONS / "_eaglectl", fpath / "_eaglectl")
    stubs = "compdef() { print -r -- \"compdef $*\" }; _arguments() { print -r -- \"_arguments $*\" }"
    out = _shell(["zsh", "-f", "-c", f"""
        fpath=('{fpath}' $fpath); {stubs}
        autoload -Uz _eaglectl
        words=(eaglectl inspect runs/s); CURRENT=3; _eaglectl
        print -- ---; source '{fpath}/_eaglectl'
    """], on_path, tree)
    assert out.splitlines() == ['_arguments *: :(("runs/specforge"))', "---", "compdef _eaglectl_completion eaglectl"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish not installed")
def test_fish_script_in_fish(tree, on_path):
    script = COMPLETIONS / "eaglectl.fish"
    out = _shell(["fish", "--no-config", "-c", f"""
        source '{script}'
        complete -C 'eaglectl inspect runs/nemo/'
        echo ---
        complete -C 'eaglectl inspect runs/specforge --target ./models/m'
    """], on_path, tree)
    assert out.splitlines() == ["runs/nemo/epoch_0_step_100", "runs/nemo/epoch_1_step_200", "---",
                                "./models/mistral"]


@pytest.mark.parametrize(("shell", "name"), [("bash", "eaglectl.bash"), ("zsh", "_eaglectl"),
                                             ("fish", "eaglectl.fish")])
def test_scripts_parse(shell, name):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    proc = subprocess.run([shell, "-n", str(COMPLETIONS / name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
