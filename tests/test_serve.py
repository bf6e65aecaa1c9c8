"""`eaglectl serve`: exact argv, preflight refusals, print-only, exec, supervised child, smoke, signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eaglectl.demo.samples import save_json, target_config
from tests import helpers
from tests.helpers import free_port, run_json

FAKE = Path(__file__).parent / "fakes" / "sglang_server.py"


@pytest.fixture
def fake_python(tmp_path) -> str:
    return str(helpers.fake_python(tmp_path, FAKE))


def print_only(cli, samples, *extra, draft="specforge"):
    result = cli("serve", "--json", "--target", samples["target"], "--draft", samples[draft], "--print-only", *extra)
    return result.exit_code, json.loads(result.stdout)


def test_default_argv(cli, samples):
    code, doc = print_only(cli, samples)
    assert code == 0
    argv = doc["result"]["argv"]
    assert argv[1:] == ["-m", "sglang.launch_server", "--model-path", str(samples["target"]),
                        "--speculative-algorithm", "EAGLE3", "--speculative-draft-model-path",
                        str(samples["specforge"].resolve()), "--speculative-num-steps", "3",
                        "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "4",
                        "--host", "127.0.0.1", "--port", "30000", "--dtype", "bfloat16"]
    assert argv[0] == sys.executable


@pytest.mark.parametrize(("options", "expected_tail"), [
    (["--tp-size", "2"], ["--tp-size", "2"]),
    (["--mem-fraction-static", "0.7"], ["--mem-fraction-static", "0.7"]),
    (["--context-length", "1024"], ["--context-length", "1024"]),
    (["--trust-remote-code"], ["--trust-remote-code"]),
    (["--dtype", "float16"], []),
    (["--", "--attention-backend", "triton", "--disable-cuda-graph"],
     ["--attention-backend", "triton", "--disable-cuda-graph"]),
])
def test_optional_flags_in_argv(cli, samples, options, expected_tail):
    code, doc = print_only(cli, samples, *options)
    assert code == 0
    argv = doc["result"]["argv"]
    assert argv[len(argv) - len(expected_tail):] == expected_tail
    if "--dtype" in options:
        assert argv[argv.index("--dtype") + 1] == "float16"


def test_passthrough_after_double_dash_is_verbatim_and_last(cli, samples):
    code, doc = print_only(cli, samples, "--port", "31000", "--", "--port", "9", "--weird value")
    argv = doc["result"]["argv"]
    assert argv[-3:] == ["--port", "9", "--weird value"]
    assert argv[argv.index("--port") + 1] == "31000"


def test_a_misspelt_option_is_a_usage_error_not_an_sglang_flag(cli, samples):
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--print-only",
                 "--smoek")
    assert result.exit_code == 2 and "No such option: --smoek" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(("options", "expected_tail"), [
    (["--attention-backend", "fa3"], ["--attention-backend", "fa3"]),
    (["--disable-cuda-graph"], ["--disable-cuda-graph"]),
    (["--skip-tokenizer-init"], ["--skip-tokenizer-init"]),
    (["--attention-backend", "fa3", "--mem-fraction-static", "0.8", "--context-length", "512",
      "--disable-cuda-graph", "--skip-tokenizer-init", "--", "--page-size", "16"],
     ["--attention-backend", "fa3", "--mem-fraction-static", "0.8", "--context-length", "512",
      "--disable-cuda-graph", "--skip-tokenizer-init", "--page-size", "16"]),
])
def test_first_class_sglang_options_in_argv(cli, samples, options, expected_tail):
    code, doc = print_only(cli, samples, *options)
    assert code == 0, doc
    argv = doc["result"]["argv"]
    assert argv[len(argv) - len(expected_tail):] == expected_tail


@pytest.mark.parametrize(("option", "again"), [
    (["--attention-backend", "fa3"], ["--attention-backend", "triton"]),
    (["--mem-fraction-static", "0.8"], ["--mem-fraction-static=0.9"]),
    (["--context-length", "512"], ["--context-len", "1024"]),  # an argparse abbreviation
    (["--disable-cuda-graph"], ["--disable-cuda-graph"]),
    (["--disable-cuda-graph"], ["--disable-decode-cuda-graph"]),  # a newer release's spelling of the same
    (["--disable-cuda-graph"], ["--cuda-graph-backend-prefill=full"]),
    (["--skip-tokenizer-init"], ["--skip-tokenizer-init"]),
])
def test_a_first_class_option_given_again_after_double_dash_is_refused(cli, samples, option, again):
    code, doc = print_only(cli, samples, *option, "--", *again)
    assert code == 2  # a usage error
    assert f"use eaglectl serve {option[0]} instead" == doc["error"]["hint"]


def test_first_class_options_left_unset_stay_passable_after_double_dash(cli, samples):
    code, doc = print_only(cli, samples, "--", "--attention-backend", "triton", "--disable-cuda-graph")
    assert code == 0 and doc["result"]["argv"][-3:] == ["--attention-backend", "triton", "--disable-cuda-graph"]


def test_an_sglang_flag_before_double_dash_gets_a_hint(cli, samples):
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--print-only",
                 "--page-size", "16")
    assert result.exit_code == 2 and result.stdout == "" and "No such option: --page-size" in result.stderr
    code, doc = print_only(cli, samples, "--page-size", "16")
    assert code == 2 and doc["error"]["message"].startswith(
        "No such option: --page-size (SGLang's own flags go after `--`: eaglectl serve ... -- --page-size ...)")


@pytest.fixture
def sglang_parser(monkeypatch, fake_server_args_cls):
    """SGLang importable by --python: its parser (a fake ServerArgs here) reads the flags."""
    monkeypatch.setattr("eaglectl.serving.flags.server_args_class", lambda python: fake_server_args_cls)


@pytest.mark.parametrize(("extra", "message"), [
    (["--", "--page-size", "x"], "argument --page-size: invalid int value: 'x'"),
    (["--", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--attention-backend", "nope"], "argument --attention-backend: invalid choice: 'nope'"),
    (["--", "--tokenizer-path", "relative"], "AssertionError: --tokenizer-path takes an absolute path"),
])
def test_sglang_refused_flags_are_a_usage_error_before_any_export(cli, samples, sglang_parser, extra, message):
    before = sorted(p.name for p in samples["nemo-consolidated"].iterdir())
    result = cli("serve", "--target", samples["target"], "--draft", samples["nemo-consolidated"], *extra)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert sorted(p.name for p in samples["nemo-consolidated"].iterdir()) == before  # no sglang/ export


def test_flags_sglang_accepts_pass(cli, samples, sglang_parser):
    code, doc = print_only(cli, samples, "--attention-backend", "fa3", "--", "--page-size", "16", "--page", "4")
    assert code == 0  # `--page`: launch_server's argparse takes a prefix, so the check does too
    assert doc["result"]["argv"][-6:] == ["--attention-backend", "fa3", "--page-size", "16", "--page", "4"]


def test_host_port_steps(cli, samples):
    _, doc = print_only(cli, samples, "--host", "0.0.0.0", "--port", "8000", "--num-steps", "5", "--topk", "4",
                        "--num-draft-tokens", "8")
    argv = doc["result"]["argv"]
    for flag, value in (("--host", "0.0.0.0"), ("--port", "8000"), ("--speculative-num-steps", "5"),
                        ("--speculative-eagle-topk", "4"), ("--speculative-num-draft-tokens", "8")):
        assert argv[argv.index(flag) + 1] == value
    assert doc["result"]["url"] == "http://127.0.0.1:8000"


def test_topk1_fixes_num_draft_tokens_with_a_warning(cli, samples):
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--print-only",
                 "--num-steps", "5", "--num-draft-tokens", "4", "--json")
    argv = json.loads(result.stdout)["result"]["argv"]
    assert argv[argv.index("--speculative-num-draft-tokens") + 1] == "6"
    assert "num-draft-tokens = num-steps + 1" in result.stderr


def test_print_only_writes_nothing_and_shows_would_be_paths(cli, samples):
    d = samples["nemo-consolidated"]
    before = {p: p.stat().st_mtime_ns for p in d.rglob("*")}
    result = cli("serve", "--target", samples["target"], "--draft", d, "--print-only")
    assert result.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*")} == before
    assert "would export" in result.stderr and str((d / "sglang").resolve()) in result.stdout  # in the command
    assert f"the draft path {(d / 'sglang').resolve()} does not exist yet" in result.stderr
    assert result.stdout.splitlines()[0].startswith(sys.executable)


def test_print_only_stdout_is_the_command_alone_with_absolute_paths(cli, samples, monkeypatch):
    import shlex

    monkeypatch.chdir(samples["target"].parent)
    result = cli("serve", "--target", "target", "--draft", "nemo-consolidated", "--print-only")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    _, doc = print_only(cli, {"target": "target", "nemo-consolidated": "nemo-consolidated"}, draft="nemo-consolidated")
    argv = shlex.split(result.stdout)
    assert argv == doc["result"]["argv"] and argv[argv.index("--model-path") + 1] == str(samples["target"])
    assert all(os.path.isabs(argv[argv.index(flag) + 1])
               for flag in ("--model-path", "--speculative-draft-model-path"))
    assert "draft model path" in result.stderr and "layout" in result.stderr  # what was resolved: on stderr


def test_print_only_prefixes_the_variables_sglang_needs(cli, samples):
    import shlex

    target = samples["target"]
    save_json(target / "config.json", {**target_config(), "max_position_embeddings": 1 << 20})
    result = cli("serve", "--target", target, "--draft", samples["specforge"], "--print-only",
                 "--allow-longer-context")
    assert result.exit_code == 0, result.stderr
    _, doc = print_only(cli, samples, "--allow-longer-context")
    assert shlex.split(result.stdout) == ["env", "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1", *doc["result"]["argv"]]


def test_print_only_command_is_shell_safe(cli, samples, tmp_path):
    import shlex
    import shutil

    spaced = tmp_path / "my ckpt"
    shutil.copytree(samples["specforge"], spaced)
    _, doc = print_only(cli, {"target": samples["target"], "specforge": spaced})
    assert shlex.split(doc["result"]["command"]) == doc["result"]["argv"]


def test_eagle_passes_token_map_eagle3_does_not(cli, samples):
    import shutil

    d = samples["nemo-legacy-eagle"]
    shutil.copy(samples["nemo-consolidated"] / "eagle_meta.pt", d / "eagle1_meta.pt")
    _, doc = print_only(cli, samples, draft="nemo-legacy-eagle")
    argv = doc["result"]["argv"]
    assert argv[argv.index("--speculative-algorithm") + 1] == "EAGLE"
    assert argv[argv.index("--speculative-token-map") + 1].endswith("sglang/speculative_token_map.pt")
    _, doc = print_only(cli, samples)
    assert "--speculative-token-map" not in doc["result"]["argv"]


def test_sglang_missing_exits_2_before_export(cli, samples):
    d = samples["nemo-consolidated"]
    before = sorted(p.name for p in (d / "model").iterdir())
    result = cli("serve", "--target", samples["target"], "--draft", d)
    assert result.exit_code == 2
    assert 'pip install "sglang>=0.5.9"' in result.stderr
    assert sorted(p.name for p in (d / "model").iterdir()) == before and not (d / "sglang").exists()


def test_p_eagle_refused(cli, samples):
    result = cli("serve", "--json", "--target", samples["target"], "--draft", samples["p-eagle"], "--print-only")
    assert result.exit_code == 1 and "vLLM >= 0.16" in result.stderr
    hint = json.loads(result.stdout)["error"]["hint"]
    assert hint.startswith("serve it with vLLM") and f"vllm serve {samples['target']} --speculative-config" in hint


def test_algorithm_mismatch_refused(cli, samples):
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--algorithm", "EAGLE",
                 "--print-only")
    assert result.exit_code == 1 and "contradicts the weights" in result.stderr


def test_preflight_refuses_wrong_target(cli, samples, tmp_path):
    save_json(tmp_path / "t" / "config.json", dict(target_config(), hidden_size=4096))
    result = cli("serve", "--target", tmp_path / "t", "--draft", samples["specforge"], "--print-only")
    assert result.exit_code == 1 and "preflight" in result.stderr and "4096" in result.stderr


def test_longer_context_needs_the_flag(cli, samples, tmp_path):
    save_json(tmp_path / "t" / "config.json", dict(target_config(), max_position_embeddings=131072))
    base = ("serve", "--target", tmp_path / "t", "--draft", samples["specforge"], "--print-only")
    result = cli(*base)
    assert result.exit_code == 1 and "--allow-longer-context" in result.stderr
    code, doc = run_json(cli, *base, "--allow-longer-context")
    assert code == 0 and doc["result"]["env"] == {"SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN": "1"}
    code, doc = run_json(cli, *base, "--context-length", "2048")
    assert code == 0 and doc["result"]["env"] == {}


def test_hub_target_passes_through_a_hub_draft_is_checked(cli, samples, hub_cache, mocker, fake_python):
    from tests.hub_cache import cache_dir_of, cache_repo

    execed = mocker.patch("eaglectl.serving.launcher.exec_server")
    result = cli("serve", "--target", "meta-llama/Llama-3.1-8B-Instruct", "--draft", "org/eagle3-head",
                 "--python", fake_python)  # offline (tests always are) and not cached: refused before SGLang
    assert result.exit_code == 1 and "not in the local Hugging Face cache" in result.stderr and not execed.called
    snapshot = cache_repo(hub_cache, "org/eagle3-head", cache_dir_of(samples["specforge"]))
    code, doc = run_json(cli, "serve", "--target", "meta-llama/Llama-3.1-8B-Instruct", "--draft",
                         "org/eagle3-head", "--print-only")
    argv = doc["result"]["argv"]
    assert code == 0 and argv[argv.index("--model-path") + 1] == "meta-llama/Llama-3.1-8B-Instruct"
    assert argv[argv.index("--speculative-draft-model-path") + 1] == str(snapshot)


@pytest.mark.parametrize("mode", ["print-only", "exec"])
def test_serving_a_ready_head_says_what_export_warns_of(cli, samples, mocker, fake_python, tmp_path, mode):
    """A head SGLang loads as it stands is launched without an export, whose NaN / Inf scan and t2d check it
    skipped: serving it gave garbage without a word. serve warns as inspect and export do, before the launch."""
    execed = mocker.patch("eaglectl.serving.launcher.exec_server")
    d = helpers.ready_head_with_nan_and_stale_t2d(samples["specforge"], tmp_path / "head")
    args = ["serve", "--target", samples["target"], "--draft", d, "--python", fake_python]
    result = cli(*args, *(["--print-only"] if mode == "print-only" else []), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)["result"]
    assert doc["draft_layout"] == "sglang-ready" and doc["exported"] is None and doc["draft_model_path"] == str(d)
    nan = "1 tensor(s) hold NaN / Inf values: fc.weight (1 NaN)"
    assert any(w.startswith(nan) for w in doc["warnings"]), doc["warnings"]
    assert any(w.startswith("t2d-mismatch: t2d marks 1 target tokens d2t does not name") for w in doc["warnings"])
    assert f"warning: {nan}" in result.stderr and "warning: t2d-mismatch" in result.stderr
    assert execed.called is (mode == "exec")
    if mode == "exec":  # said before SGLang replaces the process
        assert result.stderr.index("warning: t2d-mismatch") < result.stderr.index("launching")


def test_serving_a_clean_ready_head_warns_of_nothing(cli, samples, fake_python):
    code, doc = print_only(cli, samples, "--python", fake_python)
    assert code == 0 and doc["result"]["draft_layout"] == "sglang-ready" and doc["result"]["warnings"] == []


def test_exec_mode_exports_then_execs(cli, samples, mocker, fake_python):
    execed = mocker.patch("eaglectl.serving.launcher.exec_server")
    d = samples["nemo-consolidated"]
    source = {p.name: p.read_bytes() for p in (d / "model").iterdir()}
    result = cli("serve", "--target", samples["target"], "--draft", d, "--python", fake_python)
    assert result.exit_code == 0, result.stderr
    argv, env = execed.call_args.args
    assert argv[0] == fake_python and argv[argv.index("--speculative-draft-model-path") + 1] == str(d / "sglang")
    assert json.loads((d / "sglang" / "config.json").read_text())["architectures"] == ["LlamaForCausalLMEagle3"]
    assert {p.name: p.read_bytes() for p in (d / "model").iterdir()} == source  # the checkpoint is untouched
    assert f"exported the drafter to {d / 'sglang'}" in result.stderr
    assert env["PATH"] == os.environ["PATH"]


def test_exec_mode_says_what_it_launches_before_the_server_takes_over(cli, samples, mocker, fake_python):
    """exec replaces eaglectl's process: what was exported and the command launched are said on stderr before it,
    or never."""
    mocker.patch("eaglectl.serving.launcher.exec_server", side_effect=SystemExit(0))  # exec does not return
    d = samples["nemo-consolidated"]
    result = cli("serve", "--target", samples["target"], "--draft", d, "--python", fake_python)
    assert result.exit_code == 0, result.stderr
    assert f"exported the drafter to {d / 'sglang'}" in result.stderr
    assert f"{fake_python} -m sglang.launch_server --model-path {samples['target']}" in result.stderr
    assert result.stdout == ""  # stdout is the server's


@pytest.mark.parametrize("exec_returns", [False, True])
def test_exec_mode_json_prints_the_document_before_the_server_takes_over(cli, samples, mocker, fake_python,
                                                                         exec_returns):
    """`serve --json` in exec mode printed nothing on stdout: the process became SGLang before `finish`. The document
    (what was exported, the argv execed) goes out just before the exec, once."""
    execed = mocker.patch("eaglectl.serving.launcher.exec_server",
                          side_effect=None if exec_returns else SystemExit(0))  # exec does not return
    d = samples["nemo-consolidated"]
    result = cli("serve", "--target", samples["target"], "--draft", d, "--python", fake_python, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)  # one document, nothing else
    assert doc["ok"] is True and doc["command"] == "serve"
    r = doc["result"]
    assert r["mode"] == "exec" and r["exported"] == "written" and r["draft_model_path"] == str(d / "sglang")
    assert r["argv"] == execed.call_args.args[0] and r["command"].startswith(f"{fake_python} -m sglang.launch_server")
    assert f"exported the drafter to {d / 'sglang'}" in result.stderr  # notes stay on stderr


def test_wait_says_what_it_launches_before_the_servers_log_and_once(cli, samples, fake_python):
    d = samples["nemo-consolidated"]
    result = cli("serve", "--target", samples["target"], "--draft", d, "--python", fake_python,
                 "--port", str(free_port()), "--smoke-only")
    assert result.exit_code == 0, result.stderr
    said, command = f"exported the drafter to {d / 'sglang'}", f"{fake_python} -m sglang.launch_server"
    assert result.stderr.count(said) == 1 and result.stderr.count(command) == 1, result.stderr
    assert result.stderr.index(said) < result.stderr.index(command) < result.stderr.index("fake sglang starting")


def test_wait_smoke_only_with_fake_server(cli, samples, fake_python, monkeypatch, tmp_path):
    port = free_port()
    pidfile = tmp_path / "pid"
    monkeypatch.setenv("FAKE_SGLANG_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_SGLANG_ACCEPT", "2.5")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([[5, 6, 7], [8, 9]]))
    result = cli("serve", "--json", "--target", samples["target"], "--draft", samples["specforge"],
                 "--python", fake_python, "--port", str(port), "--smoke-only", "--smoke-prompts", prompts,
                 "--smoke-max-new-tokens", "8", "--min-accept-length", "1.9", "--", "--skip-tokenizer-init")
    code, doc = result.exit_code, json.loads(result.stdout)
    assert code == 0, doc
    smoke = doc["result"]["smoke"]
    assert smoke["mean_accept_length"] == 2.5 and len(smoke["requests"]) == 2
    assert smoke["requests"][0]["output_ids"][:2] == [7, 8]
    _assert_gone(int(pidfile.read_text()))


def test_smoke_below_min_accept_fails_and_stops_server(cli, samples, fake_python, monkeypatch, tmp_path):
    pidfile = tmp_path / "pid"
    monkeypatch.setenv("FAKE_SGLANG_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_SGLANG_ACCEPT", "1.0")
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--python", fake_python,
                 "--port", str(free_port()), "--smoke-only", "--min-accept-length", "1.9")
    assert result.exit_code == 1 and "spec_accept_length 1.0 < 1.9" in result.stderr
    _assert_gone(int(pidfile.read_text()))


def test_child_dying_before_health_reports_log_tail(cli, samples, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_SGLANG_MODE", "die")
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--python", fake_python,
                 "--port", str(free_port()), "--wait")
    assert result.exit_code == 1
    assert "exited with code 3" in result.stderr and "fake failure during start-up" in result.stderr
    assert result.stderr.count("fake failure during start-up") == 1, result.stderr  # streamed, not said again


def test_the_json_envelope_of_a_failed_start_carries_the_log_tail(cli, samples, fake_python, monkeypatch):
    """The log went to stderr; a JSON consumer may keep stdout alone: the error object holds its last lines."""
    monkeypatch.setenv("FAKE_SGLANG_MODE", "die")
    result = cli("serve", "--json", "--target", samples["target"], "--draft", samples["specforge"], "--python",
                 fake_python, "--port", str(free_port()), "--wait")
    error = json.loads(result.stdout)["error"]
    assert result.exit_code == 1 and error["type"] == "LaunchError", result.stdout
    assert "fake failure during start-up" in error["log_tail"] and "log is above" in error["message"]


def _assert_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"child {pid} still running")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_reach_the_child_and_leave_no_orphan(samples, fake_python, tmp_path, sig):
    port = free_port()
    pidfile = tmp_path / "pid"
    env = dict(os.environ, FAKE_SGLANG_PIDFILE=str(pidfile))
    proc = subprocess.Popen([sys.executable, "-m", "eaglectl", "serve", "--target", str(samples["target"]),
                             "--draft", str(samples["specforge"]), "--python", fake_python, "--port", str(port),
                             "--wait"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    from eaglectl.serving.launcher import health_ok

    deadline = time.monotonic() + 60
    while not health_ok(f"http://127.0.0.1:{port}"):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    child = int(pidfile.read_text())
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    assert code != 0
    assert b"Traceback" not in proc.stderr.read()
    _assert_gone(child)


@pytest.mark.parametrize("name", ["specforge", "nemo-consolidated", "nemo-legacy-eagle3", "eagle-research"])
def test_serve_export_and_inspect_name_the_layout_alike(cli, samples, name):
    _, inspected = run_json(cli, "inspect", samples[name])
    _, served = print_only(cli, samples, draft=name)
    _, exported = run_json(cli, "export", samples[name], "--dry-run")
    assert served["result"]["draft_layout"] == exported["result"]["layout"] == inspected["result"]["layout"]
    if name == "specforge":
        assert inspected["result"]["layout"] == "sglang-ready"


@pytest.mark.parametrize(("content", "message"), [
    (b"[" * 100_000 + b"]" * 100_000, "prompt file"),  # nesting past the JSON limits, not a RecursionError
    (b"[" + b"9" * 5000 + b"]", "prompt file"),  # past Python's int-string limit, not a ValueError
    (b'{"a": 1}', "expected a JSON list"),
])
def test_smoke_prompt_files_are_parsed_within_limits(tmp_path, content, message):
    from eaglectl.errors import CheckpointError
    from eaglectl.serving.options import ServeOptions
    from eaglectl.serving.serve import load_prompts

    path = tmp_path / "prompts.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_prompts(ServeOptions(target="t", draft="d", smoke_prompts=path))


def test_a_smoke_prompt_fifo_is_refused_unread(tmp_path):
    from eaglectl.errors import CheckpointError
    from eaglectl.serving.options import ServeOptions
    from eaglectl.serving.serve import load_prompts

    fifo = tmp_path / "prompts.json"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_prompts(ServeOptions(target="t", draft="d", smoke_prompts=fifo))


@pytest.mark.parametrize(("version", "parsed"), [("0.5.15", "--disable-decode-cuda-graph"),
                                                 (None, "--disable-cuda-graph")])
def test_sglangs_parser_reads_the_flags_as_its_release_spells_them(cli, samples, monkeypatch, fake_server_args_cls,
                                                                   version, parsed):
    """Checking the argv with a 0.5.15 parser must not make it print its deprecation warning into eaglectl's
    output; a parser whose version cannot be read gets the spelling every release accepts."""
    seen: list[list[str]] = []
    monkeypatch.setattr("eaglectl.serving.flags.server_args_class", lambda python: fake_server_args_cls)
    monkeypatch.setattr("eaglectl.serving.installed.probe", lambda: {"installed": True, "version": version})
    real = __import__("eaglectl.serving.flags", fromlist=["parse_flags"]).parse_flags
    monkeypatch.setattr("eaglectl.serving.flags.parse_flags", lambda argv, *a, **k: (seen.append(argv),
                                                                                     real(argv, *a, **k))[1])
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--print-only",
                 "--attention-backend", "triton", "--disable-cuda-graph")
    assert result.exit_code == 0, result.stderr
    assert len(seen) == 1 and parsed in seen[0]
    assert ("deprecated" in result.stderr) is (version is None)


@pytest.mark.parametrize("typed", [
    ["--aux-layer-ids", "1", "3", "4", "5"],  # one id too many
    ["5", "--", "--page-size", "16"],  # a stray word before `--`
])
def test_a_stray_word_before_double_dash_is_a_usage_error_not_an_sglang_argument(cli, samples, typed):
    result = cli("serve", "--target", samples["target"], "--draft", samples["specforge"], "--print-only", *typed)
    assert result.exit_code == 2 and result.stdout == "", result.stdout
    assert "unexpected argument '5' (SGLang's own arguments go after `--`" in result.stderr
    assert result.stderr.count("error:") == 1


def test_words_after_double_dash_stay_sglangs_even_when_they_repeat_a_stray_one(cli, samples):
    code, doc = print_only(cli, samples, "--", "5", "--page-size", "16")
    assert code == 0 and doc["result"]["argv"][-3:] == ["5", "--page-size", "16"]


def test_a_full_stderr_does_not_keep_the_server_from_starting(samples, tmp_path, fake_python):
    """The summary serve prints before the exec is information: with stderr on a full device the server still
    starts (the fake records its argv, then exits as told)."""
    argv_file = tmp_path / "argv.json"
    env = dict(os.environ, FAKE_SGLANG_ARGV=str(argv_file), FAKE_SGLANG_MODE="die")
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "eaglectl", "serve", "--target", str(samples["target"]),
                              "--draft", str(samples["specforge"]), "--python", fake_python,
                              "--port", str(free_port())], stdout=subprocess.DEVNULL, stderr=full, env=env, timeout=120)
    assert argv_file.exists() and run.returncode != 0  # the fake, execed, exited with its own code


# ------------------------------------------------------------------ the supervised server and a second Ctrl-C
def _stubborn_server(tmp_path):
    """A started ServerProcess whose server ignores SIGTERM and SIGINT (tests/fakes/stubborn_server.py); returns
    it and the pids of the server and its child, once SIGTERM is ignored."""
    from eaglectl.serving.launcher import ServerProcess

    pids = tmp_path / "pids.json"
    fake = Path(__file__).parent / "fakes" / "stubborn_server.py"
    server = ServerProcess([sys.executable, str(fake), str(pids)], dict(os.environ), log=lambda _line: None)
    server.start()
    while not pids.exists():
        assert server.alive()
        time.sleep(0.02)
    return server, json.loads(pids.read_text())


@pytest.mark.parametrize("first", ["before the stop", "during the stop"])
def test_a_second_interrupt_while_the_server_stops_kills_its_group(tmp_path, monkeypatch, first):
    """Ctrl-C stops the server: SIGTERM to its group, then a grace period. A second Ctrl-C in that grace period (or
    a first one, while a finished run stops its server) goes straight to SIGKILL of the group, waited for: it
    escaped `stop()` and the group outlived eaglectl. The run still ends with the interrupt."""
    from eaglectl import interrupts

    server, pids = _stubborn_server(tmp_path)
    assert server.proc is not None
    grace_wait = server.proc.wait

    def wait(timeout=None):
        if timeout is not None:  # the grace wait: Ctrl-C lands here
            server._forward(signal.SIGINT, None)
        return grace_wait(timeout=timeout)

    monkeypatch.setattr(server.proc, "wait", wait)
    try:
        with pytest.raises(KeyboardInterrupt):
            try:
                if first == "before the stop":
                    server._forward(signal.SIGINT, None)  # the first Ctrl-C: the run ends, stopping the server
            finally:
                server.stop(grace=600)
        assert server.proc.returncode == -signal.SIGKILL
        assert helpers.survivor(pids, 15) is None
        assert interrupts.first() == signal.SIGINT
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pids[0], signal.SIGKILL)


def test_sigterm_to_a_supervised_server_ends_the_run_as_terminated(tmp_path):
    """SIGTERM raised SystemExit(143) from the forwarding handler: the CLI printed no `error:` line and no `--json`
    envelope. It is the CLI's `Terminated`, as SIGHUP (and Ctrl-C's KeyboardInterrupt) are."""
    from eaglectl.interrupts import Terminated

    server, pids = _stubborn_server(tmp_path)
    try:
        with pytest.raises(Terminated) as raised:
            try:
                server._forward(signal.SIGTERM, None)
            finally:
                server.stop(grace=0)
        assert raised.value.exit_code == 143 and raised.value.name == "SIGTERM"
        assert helpers.survivor(pids, 15) is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pids[0], signal.SIGKILL)
