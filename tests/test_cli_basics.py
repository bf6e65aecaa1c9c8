"""The CLI shell: demo, version, command order, error mapping, debug tracebacks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eaglectl import __version__


def test_demo_runs_the_main_job(cli, tmp_path):
    result = cli("demo", tmp_path / "demo", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    r = doc["result"]
    assert doc["command"] == "demo" and doc["schema_version"] == 1
    assert r["report"]["layout"] == "nemo-consolidated" and not r["report"]["sglang_ready"]
    assert r["export"]["action"] == "written"
    assert r["after_export"]["sglang_ready"] is True
    assert "--speculative-algorithm EAGLE3" in r["serve_command"]
    assert {"nemo-consolidated", "nemo-legacy-eagle3", "nemo-legacy-eagle", "specforge", "eagle-research",
            "nemo-sharded", "p-eagle", "specforge-training", "target"} == set(r["samples"])


def test_demo_tables(cli, tmp_path):
    result = cli("demo", tmp_path / "d")
    assert result.exit_code == 0
    for text in ("eaglectl inspect", "eaglectl export", "Exported EAGLE3", "sglang.launch_server"):
        assert text in result.stdout


@pytest.mark.parametrize("failure", ["disk-full", "ctrl-c"])
@pytest.mark.parametrize("where", ["new/deeper", "empty"])
def test_demo_interrupted_while_writing_its_samples_leaves_nothing(cli, tmp_path, monkeypatch, failure, where):
    """A full disk (ENOSPC) or Ctrl-C half way through the samples: one error line, and the directory demo was
    given is as it was (an empty one stays, an absent one and the directories above it it made are gone)."""
    import errno

    from eaglectl.demo import run, samples

    def half_then_fail(root):
        samples.save_json(Path(root) / "nemo-consolidated" / "config.json", {"half": True})
        if failure == "ctrl-c":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run, "build_samples", half_then_fail)
    (tmp_path / "empty").mkdir()
    result = cli("demo", tmp_path / where)
    assert result.exit_code == (130 if failure == "ctrl-c" else 1) and "Traceback" not in result.stderr
    said = "interrupted" if failure == "ctrl-c" else "write failed (No space left on device); nothing left behind"
    assert result.stderr.startswith("error: ") and said in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not any((tmp_path / "empty").iterdir())


@pytest.mark.parametrize("given", ["link", "link/deeper"])
def test_demo_into_a_broken_symlink_says_so(cli, tmp_path, given):
    """`demo LINK` with LINK dangling: named as a broken symlink (mkdir said "File exists"), nothing created where
    it points."""
    (tmp_path / "link").symlink_to(tmp_path / "gone" / "demo")
    result = cli("demo", tmp_path / given)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'link'} is a broken symlink (to {tmp_path / 'gone' / 'demo'})" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"]


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"eaglectl {__version__}"


def test_help_lists_commands_in_workflow_order(cli):
    out = cli("--help").stdout
    positions = [out.index(f" {name} ") for name in ("inspect", "export", "token-map", "serve", "probe-target",
                                                    "demo")]
    assert positions == sorted(positions)


def _app_commands() -> list[tuple[str, object]]:
    import typer.main

    from eaglectl.cli.app import app

    group = typer.main.get_command(app)
    return [("", group), *group.commands.items()]


def _help_at_80(cli, name: str) -> str:
    result = cli(*([name] if name else []), "--help", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


# Typer's own type labels (`<bool>` beside a flag, `<str>`, `<int range>`): an option shows its metavar, a flag none.
TYPE_LABEL = re.compile(r"<(bool|str|int|float|text|integer|path|file|dir|directory|int range|float range)>")
HELP_BUDGET = {"": 25, "inspect": 35, "export": 65, "token-map": 30, "serve": 90, "bench": 105, "probe-target": 75,
               "demo": 20}  # lines at 80 columns; before option panels: 40, 33, 91, 26, 127, 157, 88, 17


@pytest.mark.parametrize("name", ["", "inspect", "export", "token-map", "serve", "bench", "probe-target", "demo"])
def test_help_at_80_columns_panels_flags_and_choices(cli, name):
    """`--help` at 80 columns: flags shown as flags (no `<bool>`: `--json true` is an error), every option of a
    command in a named panel, no line over 80 columns, no word or metavar folded mid-word, one style for choices
    and for defaults, and short."""
    import typing
    from enum import Enum

    import click

    command = dict(_app_commands())[name]
    out = _help_at_80(cli, name)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    assert "…" not in out and "<bool>" not in out, out
    assert len(lines) <= HELP_BUDGET[name], f"{name} --help is {len(lines)} lines:\n{out}"
    assert "[default:" not in out and ") (default:" not in out, out  # defaults said one way: "(default: X)."
    from eaglectl.cli import options

    panels = {value for key, value in vars(options).items() if key.endswith("_PANEL")}
    params = command.get_params(click.Context(command))
    checked: set[str] = set()
    words = {w for p in params for w in (p.help or "").split()} | {w for p in (command.help or "").split("\n\n")
                                                                    for w in p.split()}
    for param in params:
        if param.param_type_name == "option":
            assert param.metavar is not None, f"{name} {param.opts[0]}: Typer would print its type"
            if name:
                assert param.rich_help_panel in panels, f"{name} {param.opts[0]} is in no named panel"
        if param.metavar:
            words.add(param.metavar)
    if name:
        assert "─ Options ─" not in out, out
    assert not TYPE_LABEL.search(out), out  # arguments included: their names say what they take
    assert not re.search(r"\[x[<>]=|\[\d+(\.\d+)?<=x", out), out  # nor Click's ranges ('N [x>=1]')
    flat = " ".join(line.strip("│ ") for line in lines)
    for word in words:  # folded mid-word, a word would be found nowhere whole
        assert word in flat, f"{name} --help splits {word!r}:\n{out}"
    hints = typing.get_type_hints(command.callback) if name else {}  # Annotated[...] stripped
    for param in params:  # a choice names its values the same way everywhere: "sglang or vllm"
        for kind in (a for a in (hints.get(param.name), *typing.get_args(hints.get(param.name)))
                     if isinstance(a, type) and issubclass(a, Enum)):
            assert options.choices(kind) in param.help, f"{name} {param.opts[0]} does not name its values"
            assert param.metavar.isupper(), f"{name} {param.opts[0]}: a choice's metavar names its kind"
            checked.add(param.name)
    assert checked >= {"export": {"algorithm", "fmt", "dtype"}, "serve": {"engine", "dtype", "algorithm"},
                       "bench": {"engine", "dtype", "algorithm"}, "probe-target": {"engine", "dtype", "compare"}
                       }.get(name, set())


def test_user_error_is_one_line_without_traceback(cli, tmp_path):
    result = cli("inspect", tmp_path / "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error:") and "no such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_env_shows_traceback(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EAGLECTL_DEBUG", "1")
    result = cli("inspect", tmp_path / "nope")
    assert result.exit_code == 1 and "Traceback" in result.stderr and "CheckpointError" in result.stderr


def test_json_error_is_the_failure_envelope_and_nothing_else(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("export", tmp_path / "empty", "--json")
    assert result.exit_code == 1 and "empty directory" in result.stderr
    doc = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert doc["ok"] is False and doc["result"] is None and doc["command"] == "export"
    assert doc["error"]["type"] == "CheckpointError" and "empty directory" in doc["error"]["message"]
    assert doc["error"]["exit_code"] == 1


def _failure(result, code: int, error_type: str, command: str | None) -> dict:
    """`--json` on failure: the exit code unchanged, stdout one envelope with `ok: false` and the error, stderr
    the `error:` line (and its hint), no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["command"] == command and doc["ok"] is False
    error = doc["error"]
    assert set(error) == {"type", "message", "hint", "exit_code"}
    assert error["type"] == error_type and error["exit_code"] == code and error["message"]
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {error['message']}" and all(not line.startswith("error:") for line in lines[1:])
    assert "Traceback" not in result.stderr
    return doc


@pytest.mark.parametrize(("args", "code", "error_type", "command"), [
    (("inspect", "./nope"), 1, "CheckpointError", "inspect"),
    (("inspect", "--tagret", "x", "p"), 2, "NoSuchOption", "inspect"),
    (("export", "SAMPLE", "--dtype", "int3"), 2, "BadParameter", "export"),
    (("export", "SAMPLE", "--max-shard-size", "lots"), 2, "BadParameter", "export"),
    (("export", "SAMPLE", "--max-shard-size", "5XB"), 2, "BadParameter", "export"),
    (("token-map", "./nope"), 1, "CheckpointError", "token-map"),
    (("token-map",), 2, "MissingParameter", "token-map"),
    (("serve", "--target", "TARGET"), 2, "MissingParameter", "serve"),
    (("serve", "--target", "./targt", "--draft", "SAMPLE", "--print-only"), 1, "CheckpointError", "serve"),
    (("serve", "--target", "TARGET", "--draft", "SAMPLE", "--port", "0"), 2, "BadParameter", "serve"),
    (("serve", "--target", "TARGET", "--draft", "SAMPLE", "--python", "/nonexistent/python"), 2,
     "MissingDependencyError", "serve"),
    (("probe-target", "./nope", "--engine", "hf", "--compare", "none"), 1, "CheckpointError", "probe-target"),
    (("probe-target", "TARGET", "--batch", "0"), 2, "BadParameter", "probe-target"),
    (("probe-target", "TARGET", "--engine", "hf", "--json", "--", "--page-size", "16"), 2, "UsageError",
     "probe-target"),
    (("demo", "FILE"), 2, "BadParameter", "demo"),
    (("no-such-command",), 2, "UsageError", None),
])
def test_json_failure_envelope_for_every_command(cli, samples, tmp_path, args, code, error_type, command):
    (tmp_path / "file").write_text("")
    names = {"SAMPLE": samples["specforge"], "TARGET": samples["target"], "FILE": tmp_path / "file"}
    doc = _failure(cli(*(names.get(a, a) for a in args), "--json"), code, error_type, command)
    assert doc["result"] is None
    if code == 2 and error_type != "MissingDependencyError":
        assert doc["error"]["hint"].endswith("--help`")  # usage errors point at the command's help


def test_json_before_the_command_or_anywhere_counts(cli):
    doc = _failure(cli("--json", "inspect"), 2, "NoSuchOption", "inspect")
    assert "--json" in doc["error"]["message"]


def test_json_after_double_dash_belongs_to_sglang(cli, samples):
    result = cli("serve", "--target", samples["target"], "--draft", "./nope", "--print-only", "--", "--json")
    assert result.exit_code == 1 and result.stdout == "" and result.stderr.startswith("error:")


def test_usage_error_without_json_keeps_typers_message(cli):
    result = cli("export", "--dtype", "int3", "x")
    assert result.exit_code == 2 and result.stdout == "" and "Invalid value" in result.stderr


def test_json_inspect_error_finding_has_report_and_error(cli, samples):
    result = cli("inspect", samples["p-eagle"], "--json")
    assert result.exit_code == 1 and result.stderr.startswith("error: 1 error finding(s): p-eagle")
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["result"]["findings"]
    assert doc["error"]["type"] == "CheckFailedError" and "p-eagle" in doc["error"]["message"]
    assert doc["error"]["exit_code"] == 1


def test_json_keyboard_interrupt_exits_130_with_envelope(cli, samples, mocker):
    mocker.patch("eaglectl.inspection.report.inspect_checkpoint", side_effect=KeyboardInterrupt)
    doc = _failure(cli("inspect", samples["specforge"], "--json"), 130, "KeyboardInterrupt", "inspect")
    assert doc["error"]["message"] == "interrupted"


def test_json_unexpected_exception_still_prints_envelope_and_keeps_traceback(cli, samples, mocker):
    mocker.patch("eaglectl.inspection.report.inspect_checkpoint", side_effect=RuntimeError("a bug"))
    result = cli("inspect", samples["specforge"], "--json")
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)  # a bug stays a bug
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["error"] == {"type": "RuntimeError", "message": "a bug", "hint": None,
                                                  "exit_code": 1}


@pytest.mark.parametrize("command", ["serve", "bench"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_non_finite_mem_fraction_static_is_a_usage_error(cli, samples, command, value):
    """nan passes `low <= x <= high` (every comparison with nan is false): refused as not finite, exit 2."""
    result = cli(command, "--target", samples["target"], "--draft", samples["specforge"], "--print-only",
                 "--mem-fraction-static", value, "--json")
    assert result.exit_code == 2, result.stdout
    error = json.loads(result.stdout)["error"]
    assert "--mem-fraction-static" in error["message"] and "not a finite number" in error["message"]


def _mem_fraction_args(samples, command: str) -> tuple:
    if command == "probe-target":
        return ("probe-target", samples["target"])
    return (command, "--target", samples["target"], "--draft", samples["specforge"], "--print-only")


@pytest.mark.parametrize("command", ["serve", "bench", "probe-target"])
@pytest.mark.parametrize("value", ["0", "-0.5", "1.5"])
def test_mem_fraction_static_has_one_range_in_every_command(cli, samples, command, value):
    """SGLang cannot run with no memory share: serve and bench refused 1.5 but passed 0 on to SGLang, while
    probe-target refused it. One rule, above 0 and at most 1, a usage error (exit 2) in all three."""
    result = cli(*_mem_fraction_args(samples, command), "--mem-fraction-static", value, "--json")
    assert result.exit_code == 2, result.stdout
    error = json.loads(result.stdout)["error"]
    assert error["message"] == f"Invalid value for '--mem-fraction-static': {float(value)} is not above 0 and at most 1"


@pytest.mark.parametrize(("option", "value"), [("--tolerance", "nan"), ("--tolerance", "inf"),
                                               ("--min-top1-agreement", "nan"), ("--mem-fraction-static", "nan")])
def test_probe_target_says_a_non_finite_threshold_is_not_a_finite_number(cli, samples, option, value):
    """Click's own `min=` check answered `--tolerance nan` with "should be greater than or equal to 0" (nan fails
    every comparison): the same words as the other commands' options."""
    result = cli("probe-target", samples["target"], option, value, "--json")
    assert result.exit_code == 2, result.stdout
    message = json.loads(result.stdout)["error"]["message"]
    assert message == f"Invalid value for '{option}': {value} is not a finite number"


@pytest.mark.parametrize(("command", "option"), [
    ("serve", "--timeout"), ("serve", "--min-accept-length"), ("bench", "--timeout"), ("bench", "--request-timeout"),
])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_non_finite_or_negative_waits_and_thresholds_are_usage_errors(cli, samples, command, option, value):
    """`--timeout nan` made the health wait end at once (`now < nan` is false) and `--min-accept-length nan` fail
    every smoke test: refused before anything runs, as `--mem-fraction-static nan` is."""
    result = cli(command, "--target", samples["target"], "--draft", samples["specforge"], "--print-only",
                 option, value, "--json")
    assert result.exit_code == 2, result.stdout
    error = json.loads(result.stdout)["error"]
    assert option in error["message"] and ("not a finite number" in error["message"] or "not " in error["message"])


# --- hints name only options of the command that shows them ---------------------------------------------------------
def _undetectable_head(samples, tmp_path):
    """A head whose algorithm cannot be told (no fc, no layer-0 q_proj, no EAGLE architecture name)."""
    import shutil

    from safetensors.torch import load_file, save_file

    d = tmp_path / "head"
    shutil.copytree(samples["specforge"], d)
    weights = {k: v for k, v in load_file(d / "model.safetensors").items()
               if not k.startswith("fc.") and "q_proj" not in k}
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "architectures": ["LlamaForCausalLM"]}))
    return d


def test_inspect_says_whose_option_algorithm_is(cli, samples, tmp_path):
    d = _undetectable_head(samples, tmp_path)
    result = cli("inspect", d, "--json")
    finding = next(f for f in json.loads(result.stdout)["result"]["findings"] if f["code"] == "unservable")
    assert "pass --algorithm" in finding["message"]
    assert "--algorithm is an option of `eaglectl export`, `eaglectl serve` and `eaglectl bench`, not of " \
           "`eaglectl inspect`" in finding["message"]
    result = cli("export", d, "-o", tmp_path / "out")  # export has it: nothing added
    assert result.exit_code == 1 and "pass --algorithm" in result.stderr and "not of `eaglectl" not in result.stderr


def test_serve_says_whose_option_output_is(cli, samples, tmp_path):
    import shutil

    d = tmp_path / "legacy"
    shutil.copytree(samples["nemo-legacy-eagle3"], d)
    (d / "sglang").mkdir()
    (d / "sglang" / "notes.txt").write_text("mine")
    result = cli("serve", "--target", samples["target"], "--draft", d, "--print-only")
    assert result.exit_code == 1
    hint = next(line for line in result.stderr.splitlines() if line.startswith("hint:"))
    assert "--output is an option of `eaglectl export` and `eaglectl token-map`, not of `eaglectl serve`" in hint
    result = cli("export", d)  # export has --output: its hint stays as it was
    assert "pass --output with a new or empty directory" in result.stderr and "not of `eaglectl" not in result.stderr


@pytest.mark.parametrize(("args", "said"), [
    (("bench", "--target", "TARGET", "--draft", "SAMPLE", "--config", "3,1", "--print-only"), "STEPS,TOPK"),
    (("bench", "--target", "TARGET", "--draft", "SAMPLE", "--resume", "--print-only"), "--resume needs --results"),
    (("inspect", "SAMPLE", "--revision", "main"), "--revision applies to a Hugging Face repo id"),
    (("export", "SAMPLE", "--revision", "main"), "--revision applies to a Hugging Face repo id"),
    (("serve", "--target", "TARGET", "--draft", "SAMPLE", "--print-only", "--", "--speculative-num-steps", "5"),
     "would override --speculative-num-steps"),
    (("bench", "--target", "TARGET", "--draft", "SAMPLE", "--print-only", "--", "--speculative-eagle-topk", "2"),
     "would override --speculative-eagle-topk"),
])
def test_command_line_mistakes_are_usage_errors_exit_2(cli, samples, args, said):
    names = {"SAMPLE": str(samples["specforge"]), "TARGET": str(samples["target"])}
    argv = [names.get(a, a) for a in args]
    argv.insert(argv.index("--") if "--" in argv else len(argv), "--json")  # after `--`, it would be SGLang's
    result = cli(*argv)
    assert result.exit_code == 2, result.stdout
    error = json.loads(result.stdout)["error"]
    assert error["type"] in ("UsageError", "SweepError", "OverrideError") and said in error["message"]
    assert error["exit_code"] == 2


@pytest.mark.parametrize("args", [("--version", "--json"), ("--json", "--version"), ("-V", "--json")])
def test_version_in_json_is_an_envelope(cli, args):
    result = cli(*args)
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["result"] == {"version": __version__} and doc["schema_version"] == 1
