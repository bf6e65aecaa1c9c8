"""The output layer's promise: a name read from a file or typed as a path is printed as text, never as rich
markup or as a terminal control sequence, in every command's text output."""

from __future__ import annotations

import shutil

import pytest

from eaglectl import output
from eaglectl.errors import LaunchError

EVIL = "a[/]b[bold]\x1b[31m\nx"  # a closing tag with nothing open, an opening tag, ESC, a newline
EVIL_SHOWN = "a[/]b[bold]\\x1b[31m\\nx"
EVIL_DIR = "]x[red]\x1b[2J\r\u202ez"  # under a directory called `run[`: the path reads `run[/]x[red]...`
EVIL_DIR_SHOWN = "run[/]x[red]\\x1b[2J\\r\\u202ez"


def test_printable_writes_control_characters_as_escapes():
    assert output.printable(EVIL) == EVIL_SHOWN
    assert output.printable("\x00\x07\x7f\x9b\u2028\t") == "\\x00\\x07\\x7f\\x9b\\u2028\\t"
    assert output.printable("plain/path with spaces é 日本") == "plain/path with spaces é 日本"


def test_safe_text_prints_as_itself(capsys):
    from rich.console import Console

    console = Console(highlight=False, emoji=False, soft_wrap=True, force_terminal=False)
    console.print(f"[bold]{output.safe(EVIL)}[/] :fire: {output.safe('x:fire:y')}")
    assert capsys.readouterr().out == f"{EVIL_SHOWN} :fire: x:fire:y\n"


def test_cell_is_never_parsed_as_markup():
    cell = output.cell(EVIL)
    assert cell.plain == EVIL_SHOWN and not cell.spans


def test_error_is_one_line_whatever_the_name(capsys):
    output.error(f"{EVIL}: bad\nerror: all fine", hint=f"look at {EVIL}")
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: {EVIL_SHOWN}: bad\\nerror: all fine", f"hint: look at {EVIL_SHOWN}"]
    output.warn(f"w {EVIL}")
    output.note(f"n {EVIL}")
    assert capsys.readouterr().err.splitlines() == [f"warning: w {EVIL_SHOWN}", f"n {EVIL_SHOWN}"]


def test_multiline_error_indents_its_log_tail(capsys):
    exc = LaunchError("SGLang exited; last log lines:\nerror: boom\x1b[0m")
    output.error(str(exc), multiline=exc.multiline)
    assert capsys.readouterr().err.splitlines() == ["error: SGLang exited; last log lines:", "  error: boom\\x1b[0m"]


# --- every command's text output, on a hostile tensor name in a hostile directory --------------------------


@pytest.fixture
def hostile(samples, tmp_path):
    """The NeMo sample with one extra tensor called EVIL, and the target, both under hostile directory names."""
    from eaglectl.demo.samples import save_safetensors

    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    root = tmp_path / "run["
    ckpt = root / EVIL_DIR
    shutil.copytree(samples["nemo-consolidated"], ckpt)
    weights = ckpt / "model" / "model.safetensors"
    tensors = load_file(weights)
    tensors[f"model.{EVIL}.weight"] = torch.zeros(2, dtype=torch.bfloat16)
    save_safetensors(weights, tensors)
    target = root / f"{EVIL_DIR}-target"
    shutil.copytree(samples["target"], target)
    return ckpt, target


def _clean(result, code: int = 0) -> str:
    """Exit code as normal, no traceback, no raw control character anywhere; the text output."""
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for stream in (result.stdout, result.stderr):
        assert not any(c in stream for c in "\x1b\r\u202e"), stream
    return result.stdout


def test_inspect_shows_hostile_names_escaped(cli, hostile):
    ckpt, target = hostile
    out = _clean(cli("inspect", ckpt, "--target", target))
    assert f"model.{EVIL_SHOWN}.weight" in out  # the unused-tensors finding
    quoted = output.shell_quote(str(ckpt))  # `$'...'`: the shell reads back its bytes, and it prints as text
    assert quoted.startswith("$'") and quoted.isprintable()
    assert f"fix: run `eaglectl export {quoted}`" in out


def test_export_shows_hostile_names_escaped(cli, hostile, tmp_path):
    ckpt, _ = hostile
    out = _clean(cli("export", ckpt, "-o", ckpt.parent / f"{EVIL_DIR}-out"))
    assert f"dropped  model.{EVIL_SHOWN}.weight:" in out
    assert f"-> {tmp_path}/{EVIL_DIR_SHOWN}-out" in out


def test_export_dry_run_shows_hostile_names_escaped(cli, hostile):
    ckpt, _ = hostile
    out = _clean(cli("export", ckpt, "--dry-run", "-o", ckpt.parent / "dry"))
    assert f"model.{EVIL_SHOWN}.weight" in out


def test_token_map_shows_hostile_path_escaped(cli, hostile, tmp_path):
    ckpt, _ = hostile
    out = _clean(cli("token-map", ckpt, "-o", ckpt.parent / f"{EVIL_DIR}.pt"))
    assert f"Wrote {tmp_path}/{EVIL_DIR_SHOWN}.pt" in out


def test_serve_print_only_shows_hostile_paths_escaped(cli, hostile, tmp_path):
    ckpt, target = hostile
    result = cli("serve", "--target", target, "--draft", ckpt, "--print-only")
    out = _clean(result)
    # the command line, alone on stdout: control characters as `$'...'` escapes a shell reads back as they were
    assert f"--model-path $'{tmp_path}/run[/]x[red]\\x1b[2J\\x0d\\xe2\\x80\\xaez-target'" in out
    resolved = result.stderr.split("target ", 1)[1]  # what was resolved: on stderr
    assert "draft model path" in resolved and "\\x1b" in resolved


def test_demo_shows_a_hostile_directory_escaped(cli, tmp_path):
    out = _clean(cli("demo", tmp_path / "demo[" / EVIL_DIR))
    assert f"Samples in {tmp_path}/demo[/]x[red]\\x1b[2J\\r\\u202ez" in out
    assert "Exported EAGLE3" in out


def test_json_keeps_the_names_exact(cli, hostile):
    import json

    ckpt, _ = hostile
    result = cli("inspect", ckpt, "--json")
    doc = json.loads(result.stdout)
    assert doc["result"]["source"] == str(ckpt)
    assert any(f"model.{EVIL}.weight" in f["message"] for f in doc["result"]["findings"])


@pytest.mark.parametrize("name", [EVIL_DIR, "latin-1 \udce9t\udce9", "it's \\ $HOME `x` \x7f"])
def test_serve_print_only_command_runs_exactly_in_a_shell(cli, samples, tmp_path, name):
    """What the shell makes of the printed command is the argv eaglectl would exec, byte for byte: a path with
    control characters or bytes that are not UTF-8 (arriving as lone surrogates) included."""
    import json
    import os
    import subprocess

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    ckpt = tmp_path / name / "head"
    shutil.copytree(samples["specforge"], ckpt)
    text = cli("serve", "--target", samples["target"], "--draft", ckpt, "--print-only")
    assert text.exit_code == 0, text.stderr
    command = text.stdout.rstrip("\n")
    assert command.isprintable() and "\n" not in command
    argv = json.loads(cli("serve", "--target", samples["target"], "--draft", ckpt, "--print-only", "--json")
                      .stdout)["result"]["argv"]
    assert str(ckpt) in argv
    shell = subprocess.run(["bash", "-c", 'eval "set -- $CMD"; printf "%s\\0" "$@"'], capture_output=True,
                           env={**os.environ, "CMD": command}, check=True)
    assert shell.stdout.split(b"\0")[:-1] == [os.fsencode(a) for a in argv]


# --- commands in hints and fixes: pasted into a shell, they run as shown ---------------------------------------------
HINT_DIRS = ["latin-1 \udce9t\udce9", "it's a dir $HOME"]  # bytes that are not UTF-8; quote, space and `$`


def _shell_words(command: str) -> list[bytes]:
    import os
    import subprocess

    shell = subprocess.run(["bash", "-c", 'eval "set -- $CMD"; printf "%s\\0" "$@"'], capture_output=True,
                           env={**os.environ, "CMD": command}, check=True)
    return shell.stdout.split(b"\0")[:-1]


def _quoted_command(text: str, start: str) -> str:
    import re

    found = re.search(rf"`({re.escape(start)}[^`]*)`", text)
    assert found, text
    return found.group(1)


@pytest.mark.parametrize("name", HINT_DIRS)
def test_inspects_export_command_pastes_into_a_shell(cli, samples, tmp_path, name):
    """The fix "run `eaglectl export PATH`" showed a path that is not UTF-8 as `'...\\udce9'`, which no shell reads
    back as the path: it is quoted as serve --print-only quotes (`$'...'`)."""
    import json
    import os

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    ckpt = tmp_path / name / "head"
    shutil.copytree(samples["nemo-legacy-eagle3"], ckpt)
    doc = json.loads(cli("inspect", ckpt, "--json").stdout)
    fixes = [f["fix"] for f in doc["result"]["findings"] if "`eaglectl export " in (f.get("fix") or "")]
    assert fixes, doc["result"]["findings"]
    command = _quoted_command(fixes[0], "eaglectl export ")
    assert command.isprintable() and "\\udc" not in command
    assert _shell_words(command) == [b"eaglectl", b"export", os.fsencode(ckpt)]
    text = cli("inspect", ckpt).stdout
    assert command in text  # the text output shows the same, pasteable, command


@pytest.mark.parametrize("name", HINT_DIRS)
def test_the_p_eagle_routes_commands_paste_into_a_shell(cli, samples, tmp_path, name):
    import json
    import os

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    ckpt = tmp_path / name / "head"
    target = tmp_path / name / "target"
    shutil.copytree(samples["p-eagle"], ckpt)
    shutil.copytree(samples["target"], target)
    result = cli("serve", "--target", target, "--draft", ckpt, "--print-only", "--json")
    hint = json.loads(result.stdout)["error"]["hint"]
    export = _quoted_command(hint, "eaglectl export ")
    assert _shell_words(export) == [b"eaglectl", b"export", os.fsencode(ckpt), b"--format", b"speculators"]
    serve = _quoted_command(hint, "eaglectl serve ")
    assert _shell_words(serve) == [b"eaglectl", b"serve", b"--engine", b"vllm", b"--target", os.fsencode(target),
                                   b"--draft", os.fsencode(ckpt)]
    text = cli("serve", "--target", target, "--draft", ckpt, "--print-only").stderr
    assert export in text and serve in text
