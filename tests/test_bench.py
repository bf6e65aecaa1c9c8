"""`eaglectl bench` end to end against a fake SGLang server (tests/fakes/sglang_bench_server.py): per-config server
lifecycle, concurrency, numbers from the fake's counters, agreement, results file and --resume, interruption,
a config that fails to start, --json, --print-only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eaglectl.demo import samples as s
from tests.helpers import fake_python, free_port, survivor

FAKE = Path(__file__).parent / "fakes" / "sglang_bench_server.py"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake interpreter, and its logs: pids, argvs, requests."""
    exe = fake_python(tmp_path, FAKE)
    logs = {name: tmp_path / f"{name}.log" for name in ("pids", "argvs", "reqlog")}
    monkeypatch.setenv("FAKE_SGLANG_PIDS", str(logs["pids"]))
    monkeypatch.setenv("FAKE_SGLANG_ARGVS", str(logs["argvs"]))
    monkeypatch.setenv("FAKE_SGLANG_REQLOG", str(logs["reqlog"]))
    return {"python": str(exe), **logs}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def assert_all_gone(pids_file: Path, timeout: float = 10.0) -> None:
    pids = [int(p) for p in lines(pids_file)]
    assert pids, "the fake server never started"
    pid = survivor(pids, timeout)
    if pid is not None:
        pytest.fail(f"server {pid} still running")


FAST = ("--repeats", "1", "--min-seconds", "0.001", "--min-tokens", "1")  # one pass per repeat; later flags win


def bench_args(samples, fake, *extra):
    return ("bench", "--target", samples["target"], "--draft", samples["specforge"], "--python", fake["python"],
            "--port", str(free_port()), *FAST, *extra)


def run(cli, samples, fake, *extra):
    result = cli(*bench_args(samples, fake, "--json", *extra))
    assert result.stdout, result.stderr
    return result, json.loads(result.stdout)


def test_sweep_measures_every_config_and_batch_size(cli, samples, fake, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_SGLANG_ACCEPT", json.dumps({"3,1,4": 3, "1,1,2": 2}))
    result, doc = run(cli, samples, fake, "--config", "3,1,4", "--config", "1,1,2", "--batch-size", "1,2",
                      "--max-new-tokens", "12", "--num-prompts", "3")
    assert result.exit_code == 0, result.stderr
    r = doc["result"]
    assert doc["ok"] and doc["command"] == "bench" and r["mode"] == "run"
    # one server start per configuration, baseline first without any speculative flag
    argvs = [json.loads(line) for line in lines(fake["argvs"])]
    assert len(argvs) == 3 and not any(a.startswith("--speculative") for a in argvs[0])
    assert [a[a.index("--speculative-num-steps") + 1] for a in argvs[1:]] == ["3", "1"]
    assert [run["status"] for run in r["configs"]] == ["measured"] * 3
    ms = {(m["config"], m["batch_size"]): m for m in r["measurements"]}
    assert set(ms) == {(c, b) for c in ("baseline", "3,1,4", "1,1,2") for b in (1, 2)}
    # 12 tokens: 1 from prefill, then verify rounds of 3 (3,3,3,2) or 2 (2 x 5, 1): the fake's counters
    m = ms[("3,1,4", 1)]
    assert m["output_tokens"] == 36 and m["requests"] == 3
    assert m["accept_length_mean"] == 3.0 and m["accept_histogram"] == [0, 3, 9]
    assert (m["accept_length_p50"], m["accept_length_p90"]) == (3.0, 3.0)
    assert ms[("1,1,2", 2)]["accept_length_mean"] == 2.0 and ms[("1,1,2", 2)]["accept_histogram"] == [3, 15]
    assert ms[("baseline", 1)]["accept_length_mean"] is None
    for m in ms.values():
        assert m["ttft_p50_ms"] > 0 and m["itl_p50_ms"] > 0 and m["tokens_per_s"] > 0 and "outputs" not in m
        if m["config"] != "baseline":
            assert m["speedup"] > 0
            assert m["agreement"]["exact"] == 3 and m["agreement"]["first_divergence"] == [None] * 3
    runs = {run["config"]: run for run in r["configs"]}
    assert runs["baseline"]["gpu_memory_gb"] == {"weight": 1.5, "kvcache": 2.0}
    assert runs["3,1,4"]["gpu_memory_gb"] == {"weight": 1.75, "kvcache": 2.0}
    assert runs["3,1,4"]["startup_seconds"] is not None
    rec = r["recommended"]
    assert rec["config"] in ("3,1,4", "1,1,2")
    argv = rec["argv"]
    assert argv[:2] == ["eaglectl", "serve"] and argv[argv.index("--num-steps") + 1] == rec["config"].split(",")[0]
    assert set(r["best_per_batch_size"]) == {"1", "2"}
    assert "synthetic-prompts" in {f["code"] for f in r["findings"]}
    assert "synthetic token-id prompts" in result.stderr and "[1/3] baseline: starting SGLang" in result.stderr
    assert "ETA" in result.stderr
    assert_all_gone(fake["pids"])


def test_rich_output_table_chart_and_command(cli, samples, fake, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = cli(*bench_args(samples, fake, "--max-new-tokens", "8", "--num-prompts", "2"))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Benchmark" in out and "Speedup vs baseline" in out and "batch size 1" in out
    assert "Recommended: 3,1,4" in out and "eaglectl serve --target" in out
    assert "█" in out


def test_requests_really_run_concurrently(cli, samples, fake, monkeypatch):
    """The fake holds each request until 4 are in flight: a client that sent them one by one would fail."""
    monkeypatch.setenv("FAKE_SGLANG_BARRIER", "4")
    result, doc = run(cli, samples, fake, "--batch-size", "4", "--max-new-tokens", "16", "--num-prompts", "4")
    assert result.exit_code == 0, result.stderr
    assert all(not m["errors"] for m in doc["result"]["measurements"])
    reqs = [json.loads(line) for line in lines(fake["reqlog"])]
    for config in ("baseline", "3,1,4"):
        batch = [q for q in reqs if q["config"] == config and q["n"] == 16][-4:]  # the measured pass
        assert len(batch) == 4
        assert max(q["start"] for q in batch) < min(q["end"] for q in batch)  # every interval overlaps every other


def test_incremental_streaming_gives_the_same_outputs(cli, samples, fake, monkeypatch, tmp_path):
    runs = []
    for incremental in ("0", "1"):
        monkeypatch.setenv("FAKE_SGLANG_INCREMENTAL", incremental)
        results = tmp_path / f"r{incremental}.jsonl"
        result, doc = run(cli, samples, fake, "--max-new-tokens", "10", "--num-prompts", "2", "--results", results)
        assert result.exit_code == 0, result.stderr
        runs.append([json.loads(x)["outputs"] for x in lines(results)[1:]])
        assert doc["result"]["measurements"][1]["agreement"]["exact"] == 2
    assert runs[0] == runs[1] and len(runs[0][0][0]) == 10


def test_diverging_drafter_is_caught(cli, samples, fake, monkeypatch):
    monkeypatch.setenv("FAKE_SGLANG_DIVERGE", "1")
    result, doc = run(cli, samples, fake, "--max-new-tokens", "16", "--num-prompts", "3")
    assert result.exit_code == 0, result.stderr
    spec = doc["result"]["measurements"][1]
    assert spec["agreement"]["exact"] == 0 and spec["agreement"]["first_divergence"] == [2, 2, 2]
    found = {f["code"]: f for f in doc["result"]["findings"]}
    assert "early-divergence" in found and "3 of 3" in found["early-divergence"]["message"]


def test_accept_length_one_gets_a_finding_with_causes(cli, samples, fake, monkeypatch):
    monkeypatch.setenv("FAKE_SGLANG_ACCEPT", json.dumps({"3,1,4": 1}))
    monkeypatch.setenv("FAKE_SGLANG_NO_HISTOGRAM", "1")
    result, doc = run(cli, samples, fake, "--max-new-tokens", "32", "--num-prompts", "2")
    assert result.exit_code == 0, result.stderr
    m = doc["result"]["measurements"][1]
    assert m["accept_length_mean"] == round(32 / 31, 4)  # the first token comes from prefill, not a verify round
    assert m["accept_histogram"] is None and m["accept_length_source"] == "requests"
    found = {f["code"]: f for f in doc["result"]["findings"]}
    assert any("wrong algorithm" in c for c in found["accept-length-one"]["causes"])


def test_a_config_that_fails_to_start_is_reported_and_the_sweep_goes_on(cli, samples, fake, monkeypatch):
    monkeypatch.setenv("FAKE_SGLANG_FAIL", "3,1,4")
    result, doc = run(cli, samples, fake, "--config", "3,1,4", "--config", "1,1,2", "--max-new-tokens", "8",
                      "--num-prompts", "2")
    assert result.exit_code == 0, result.stderr
    runs = {run["config"]: run for run in doc["result"]["configs"]}
    assert runs["3,1,4"]["status"] == "failed"
    assert "exited with code 3" in runs["3,1,4"]["error"]
    assert "fake failure during start-up of 3,1,4" in runs["3,1,4"]["error"]  # SGLang's log tail
    assert runs["1,1,2"]["status"] == "measured" and doc["result"]["recommended"]["config"] == "1,1,2"
    assert "3,1,4: failed: SGLang exited with code 3 before becoming healthy; the sweep goes on" in result.stderr
    assert_all_gone(fake["pids"])


def test_every_server_failing_exits_1_with_the_envelope(cli, samples, fake, monkeypatch):
    monkeypatch.setenv("FAKE_SGLANG_FAIL", "baseline;3,1,4")
    result, doc = run(cli, samples, fake, "--max-new-tokens", "8", "--num-prompts", "2")
    assert result.exit_code == 1
    assert doc["ok"] is False and doc["error"]["message"].startswith("no configuration could be measured")
    assert [run["status"] for run in doc["result"]["configs"]] == ["failed", "failed"]


def test_every_server_failing_draws_no_table_and_says_why_per_config(cli, samples, fake, monkeypatch):
    """An empty results table (and chart heading) said nothing: the text says that no configuration was measured
    and why, per configuration, and the error line names each reason."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("FAKE_SGLANG_FAIL", "baseline;3,1,4")
    result = cli(*bench_args(samples, fake, "--max-new-tokens", "8", "--num-prompts", "2"))
    assert result.exit_code == 1
    out = result.stdout
    assert "Benchmark" not in out and "Speedup vs baseline" not in out and "┃" not in out
    assert out.startswith("No configuration was measured:")
    for label in ("baseline", "3,1,4"):
        assert f"{label}: SGLang exited with code 3 before becoming healthy" in out
        assert f"fake failure during start-up of {label}" in out  # the log tail, below its reason
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error == ["error: no configuration could be measured: every server failed (baseline: SGLang exited with "
                     "code 3 before becoming healthy; 3,1,4: SGLang exited with code 3 before becoming healthy)"]


def test_results_file_and_resume(cli, samples, fake, tmp_path):
    results = tmp_path / "results.jsonl"
    base = ("--max-new-tokens", "8", "--num-prompts", "2", "--batch-size", "1,2", "--results", results)
    result, doc = run(cli, samples, fake, *base)
    assert result.exit_code == 0, result.stderr
    written = lines(results)
    head = json.loads(written[0])
    assert head["format"] == "eaglectl-bench-results" and head["max_new_tokens"] == 8
    recs = [json.loads(x) for x in written[1:]]
    assert [(r["config"], r["batch_size"]) for r in recs] == [("baseline", 1), ("baseline", 2), ("3,1,4", 1),
                                                               ("3,1,4", 2)]
    assert all(r["kind"] == "measurement" and len(r["outputs"]) == 2 for r in recs)
    starts = len(lines(fake["argvs"]))

    # without --resume an existing results file is refused, and left as it was
    again = cli(*bench_args(samples, fake, *base))
    assert again.exit_code == 1 and "does not overwrite" in again.stderr
    assert lines(results) == written

    # --resume with a config added: only the new one launches; the old numbers come back from the file
    result, doc = run(cli, samples, fake, *base, "--resume", "--config", "3,1,4", "--config", "1,1,2")
    assert result.exit_code == 0, result.stderr
    assert len(lines(fake["argvs"])) == starts + 1
    r = doc["result"]
    assert r["resumed"] == 4 and [run["status"] for run in r["configs"]] == ["resumed", "resumed", "measured"]
    assert len(r["measurements"]) == 6 and len(lines(results)) == len(written) + 2
    m = {(m["config"], m["batch_size"]): m for m in r["measurements"]}
    assert m[("3,1,4", 2)]["speedup"] is not None and m[("1,1,2", 1)]["agreement"]["exact"] == 2

    # everything done: nothing launches
    result, doc = run(cli, samples, fake, *base, "--resume", "--config", "3,1,4", "--config", "1,1,2")
    assert result.exit_code == 0 and len(lines(fake["argvs"])) == starts + 1


def test_resume_refuses_foreign_files_and_other_benchmarks(cli, samples, fake, tmp_path):
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"mine": true}\n')
    result = cli(*bench_args(samples, fake, "--results", foreign, "--resume"))
    assert result.exit_code == 1 and "not a results file written by eaglectl bench" in result.stderr
    assert foreign.read_text() == '{"mine": true}\n'
    results = tmp_path / "r.jsonl"
    assert cli(*bench_args(samples, fake, "--max-new-tokens", "8", "--num-prompts", "2", "--results",
                           results)).exit_code == 0
    before = results.read_bytes()
    result = cli(*bench_args(samples, fake, "--max-new-tokens", "9", "--num-prompts", "2", "--results", results,
                             "--resume"))
    assert result.exit_code == 1 and "holds another benchmark" in result.stderr and results.read_bytes() == before
    # pinned aux ids feed the head other layers: their measurements are another benchmark's
    result = cli(*bench_args(samples, fake, "--max-new-tokens", "8", "--num-prompts", "2", "--results", results,
                             "--resume", "--aux-layer-ids", *map(str, s.AUX_IDS)))
    assert result.exit_code == 1 and "holds another benchmark" in result.stderr and results.read_bytes() == before


def test_resume_ignores_a_line_cut_by_a_crash(cli, samples, fake, tmp_path):
    results = tmp_path / "r.jsonl"
    args = ("--max-new-tokens", "8", "--num-prompts", "2", "--results", results)
    assert cli(*bench_args(samples, fake, *args)).exit_code == 0
    kept = lines(results)[:2]  # header + baseline
    results.write_text("\n".join(kept) + "\n" + '{"kind":"measurement","config":"3,1,4","batch_si')
    result, doc = run(cli, samples, fake, *args, "--resume")
    assert result.exit_code == 0, result.stderr
    assert [run["status"] for run in doc["result"]["configs"]] == ["resumed", "measured"]
    final = lines(results)
    assert final[2].endswith("batch_si") and json.loads(final[3])["config"] == "3,1,4"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_interruption_keeps_results_and_leaves_no_process(samples, fake, tmp_path, sig, code):
    """SIGHUP too (what a dropped SSH session sends): the finished measurements are kept, `--resume` is offered."""
    results = tmp_path / "r.jsonl"
    env = dict(os.environ, FAKE_SGLANG_STEP_S="0.05")
    args = bench_args(samples, fake, "--config", "3,1,4", "--config", "1,1,2", "--max-new-tokens", "20",
                      "--num-prompts", "2", "--results", results, "--json")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import signal, runpy; signal.signal(signal.SIGHUP, signal.SIG_DFL); "
         "runpy.run_module('eaglectl', run_name='__main__')", *map(str, args)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(lines(results)) < 2:  # the baseline's first measurement is in
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "interrupted" in err and "--resume" in err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["result"]["interrupted"] == sig.name
    assert doc["error"]["exit_code"] == code
    assert len(doc["result"]["measurements"]) >= 1
    recs = [json.loads(x) for x in lines(results)[1:]]
    assert recs and recs[0]["config"] == "baseline"
    assert_all_gone(fake["pids"])


def test_print_only_prints_every_argv_and_the_plan_and_runs_nothing(cli, samples, fake, tmp_path):
    results = tmp_path / "r.jsonl"
    result, doc = run(cli, samples, fake, "--print-only", "--steps", "1,3", "--topk", "1,4", "--draft-tokens", "4",
                      "--batch-size", "1,8", "--results", results, "--", "--disable-cuda-graph")
    assert result.exit_code == 0, result.stderr
    r = doc["result"]
    assert r["mode"] == "print-only" and r["measurements"] == []
    assert [c["config"] for c in r["configs"]] == ["baseline", "1,1,2", "1,4,4", "3,1,4", "3,4,4"]
    assert all(c["argv"][-1] == "--disable-cuda-graph" for c in r["configs"])
    assert {p["config"]["topk"] for p in r["pruned"]} == {1}
    assert r["plan"]["batch_sizes"] == [1, 8] and r["plan"]["endpoint"] == "/generate"
    assert not results.exists() and not lines(fake["argvs"])
    text = cli(*bench_args(samples, fake, "--print-only", "--config", "3,1,4"))
    assert "Request plan" in text.stdout and "--speculative-num-steps 3" in text.stdout


def test_passthrough_may_not_override_what_bench_sets(cli, samples, fake):
    result, doc = run(cli, samples, fake, "--print-only", "--", "--port", "1234")
    assert result.exit_code == 2 and doc["ok"] is False  # a usage error
    assert "would override --port" in doc["error"]["message"] and "eaglectl bench" in doc["error"]["message"]


@pytest.mark.parametrize(("args", "message"), [
    (("--steps", "1,x"), "positive integers"),
    (("--config", "3,1"), "STEPS,TOPK,DRAFT_TOKENS"),
    (("--topk", "4", "--draft-tokens", "99"), "no configuration left"),
    (("--resume",), "--resume needs --results"),
])
def test_bad_options_are_one_error_line(cli, samples, fake, args, message):
    result = cli(*bench_args(samples, fake, *args))
    assert result.exit_code == 2 and message in result.stderr  # usage errors, as Click's own
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr


def test_bad_prompt_file_is_one_error_and_no_server(cli, samples, fake, tmp_path):
    f = tmp_path / "p.json"
    f.write_text("[[1, 2], 3]")
    result, doc = run(cli, samples, fake, "--prompts", f)
    assert result.exit_code == 1 and doc["ok"] is False and "prompt 1 is not" in doc["error"]["message"]
    assert result.stderr.count("error:") == 1 and not lines(fake["argvs"])


def test_prompt_file_of_ids_and_text(cli, samples, fake, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('[5, 6, 7]\n"some text"\n')
    result, doc = run(cli, samples, fake, "--prompts", f, "--max-new-tokens", "6")
    assert result.exit_code == 0, result.stderr
    r = doc["result"]
    assert r["plan"]["prompt_kinds"] == {"ids": 1, "text": 1} and not r["plan"]["synthetic"]
    assert "synthetic-prompts" not in {f["code"] for f in r["findings"]}


def test_sglang_missing_exits_2(cli, samples, tmp_path):
    result = cli("bench", "--target", samples["target"], "--draft", samples["specforge"], "--python",
                 sys.executable)
    assert result.exit_code == 2 and 'pip install "sglang>=0.5.9"' in result.stderr


def test_serves_first_class_sglang_options_reach_every_server_and_the_recommended_command(cli, samples, fake):
    result, doc = run(cli, samples, fake, "--print-only", "--config", "3,1,4", "--attention-backend", "triton",
                      "--disable-cuda-graph", "--skip-tokenizer-init")
    assert result.exit_code == 0, result.stderr
    for c in doc["result"]["configs"]:  # the baseline too: same flags, so the speedup compares like with like
        argv = c["argv"]
        assert argv[argv.index("--attention-backend") + 1] == "triton"
        assert "--disable-cuda-graph" in argv and "--skip-tokenizer-init" in argv
    from eaglectl.bench.run import BenchOptions, SpecConfig, serve_command

    opts = BenchOptions(target="t", draft="d", attention_backend="triton", disable_cuda_graph=True)
    cmd = serve_command(opts, SpecConfig(3, 1, 4))
    assert cmd[cmd.index("--attention-backend") + 1] == "triton" and "--disable-cuda-graph" in cmd


def test_first_class_skip_tokenizer_init_refuses_text_prompts_as_the_flag_after_dashes_does(cli, samples, fake,
                                                                                           tmp_path):
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(["hello there", "and more"]))
    for extra in (["--skip-tokenizer-init"], ["--", "--skip-tokenizer-init"]):
        result, doc = run(cli, samples, fake, "--print-only", "--prompts", prompts, *extra)
        assert result.exit_code == 1 and "tokenizer" in doc["error"]["message"], doc


@pytest.mark.parametrize(("version", "spelling"), [
    ("0.5.13", ["--disable-cuda-graph"]), ("0.5.15", ["--disable-decode-cuda-graph", "--disable-prefill-cuda-graph"]),
])
def test_every_server_gets_the_installed_releases_spelling_of_disable_cuda_graph(cli, samples, fake, monkeypatch,
                                                                                version, spelling):
    monkeypatch.setenv("FAKE_SGLANG_VERSION", version)
    result, doc = run(cli, samples, fake, "--config", "3,1,4", "--max-new-tokens", "4", "--num-prompts", "1",
                      "--disable-cuda-graph")
    assert result.exit_code == 0, result.stderr
    argvs = [json.loads(line) for line in lines(fake["argvs"])]
    assert len(argvs) == 2  # the baseline and (3,1,4): both without graphs, so the speedup compares like with like
    assert all([a for a in argv if "cuda-graph" in a] == spelling for argv in argvs)
    assert doc["result"]["sglang_version"] == version


@pytest.mark.parametrize(("typed", "ours"), [("--num-steps", "--steps"), ("--num-draft-tokens", "--draft-tokens")])
def test_serves_option_names_typed_to_bench_name_benchs(cli, samples, fake, typed, ours):
    result = cli(*bench_args(samples, fake, typed, "3"))
    assert result.exit_code == 2 and f"No such option: {typed} (eaglectl bench calls it {ours})" in result.stderr
    assert "after `--`" not in result.stderr


def test_a_stray_word_before_double_dash_is_a_usage_error(cli, samples, fake):
    result = cli(*bench_args(samples, fake, "--print-only", "8"))
    assert result.exit_code == 2 and "unexpected argument '8'" in result.stderr and not lines(fake["argvs"])


def test_each_repeat_runs_until_the_minimum_tokens_after_an_uncounted_warm_up_pass(cli, samples, fake):
    """2 prompts x 10 tokens a pass: 100 tokens take 5 passes, so 2 repeats are 10 passes after the warm-up."""
    result, doc = run(cli, samples, fake, "--max-new-tokens", "10", "--num-prompts", "2", "--repeats", "2",
                      "--min-tokens", "100")
    assert result.exit_code == 0, result.stderr
    r = doc["result"]
    assert (r["plan"]["min_tokens"], r["plan"]["repeats"], r["plan"]["requests_per_pass"]) == (100, 2, 2)
    for m in r["measurements"]:
        assert m["repeats"] == 2 and m["passes"] == 10 and m["requests"] == 20
        assert m["repeat_tokens"] == [100, 100] and m["output_tokens"] == 200
        assert len(m["repeat_wall_s"]) == 2 and m["wall_s"] == pytest.approx(sum(m["repeat_wall_s"]), abs=1e-3)
        assert m["tokens_per_s_min"] <= m["tokens_per_s"] <= m["tokens_per_s_max"]
        assert len(m["per_request_accept_length"]) == 20
        assert m["agreement"] is None if m["config"] == "baseline" else m["agreement"]["compared"] == 2
    reqs = [json.loads(line) for line in lines(fake["reqlog"])]
    for config in ("baseline", "3,1,4"):  # the warm-up pass (2 requests) is sent, but not counted
        assert len([q for q in reqs if q["config"] == config and q["n"] == 10]) == 2 + 20
    assert "repeat 2/2" in result.stderr


def test_each_repeat_runs_until_the_minimum_seconds(cli, samples, fake):
    result, doc = run(cli, samples, fake, "--max-new-tokens", "8", "--num-prompts", "2", "--repeats", "2",
                      "--min-seconds", "0.2")
    assert result.exit_code == 0, result.stderr
    for m in doc["result"]["measurements"]:
        assert m["repeats"] == 2 and all(w >= 0.2 for w in m["repeat_wall_s"])
        assert m["output_tokens"] == 16 * m["passes"]


def test_a_speedup_whose_spread_reaches_one_is_uncertain_and_no_win(cli, samples, fake, monkeypatch):
    """Every other request of each server is 15x slower: the drafter's median is faster, but its slowest repeat is
    slower than the baseline's fastest, so the spread reaches 1.0x: "uncertain", not called a win anywhere."""
    monkeypatch.setenv("FAKE_SGLANG_STEP_CYCLE", "0.002,0.03")
    result, doc = run(cli, samples, fake, "--max-new-tokens", "10", "--num-prompts", "1", "--repeats", "3")
    assert result.exit_code == 0, result.stderr
    r = doc["result"]
    spec = next(m for m in r["measurements"] if m["config"] == "3,1,4")
    assert spec["speedup_min"] < 1.0 < spec["speedup_max"] and spec["beats_baseline"] == "uncertain"
    assert r["speculation_pays"] == {"1": "uncertain"} and r["best_per_batch_size"] == {"1": "baseline"}
    rec = r["recommended"]
    assert rec["config"] == "3,1,4" and rec["beats_baseline"] == "uncertain" and rec["verdicts"] == {"1": "uncertain"}
    text = cli(*bench_args(samples, fake, "--max-new-tokens", "10", "--num-prompts", "1", "--repeats", "3"))
    assert "not a sure win" in text.stdout and "1: uncertain (baseline)" in text.stdout


def test_the_measured_window_and_spread_are_in_the_table(cli, samples, fake, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = cli(*bench_args(samples, fake, "--max-new-tokens", "8", "--num-prompts", "2", "--repeats", "2",
                             "--min-tokens", "32"))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "window" in out and "beats base" in out and "2x, " in out and "64 tok" in out
    assert "median (min-max) over repeats" in out and "Speculation per batch size: 1:" in out
    assert "beats baseline:" in out  # the chart


@pytest.mark.parametrize("args", [("--min-seconds", "0"), ("--min-seconds", "-1"), ("--min-seconds", "nan"),
                                  ("--min-seconds", "inf"), ("--min-tokens", "0"), ("--min-tokens", "-5"),
                                  ("--repeats", "0"), ("--repeats", "-1"), ("--repeats", "nan")])
def test_bad_window_values_are_usage_errors(cli, samples, fake, args):
    result, doc = run(cli, samples, fake, "--print-only", *args)
    assert result.exit_code == 2 and doc["ok"] is False and args[0] in doc["error"]["message"]
    assert not lines(fake["argvs"])


def test_a_results_file_of_the_single_pass_version_is_refused_with_the_reason(cli, samples, fake, tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"format": "eaglectl-bench-results", "version": 1, "fingerprint": "x"}) + "\n"
                   + json.dumps({"kind": "measurement", "config": "baseline", "batch_size": 1}) + "\n")
    before = old.read_bytes()
    result, doc = run(cli, samples, fake, "--max-new-tokens", "8", "--num-prompts", "2", "--results", old, "--resume")
    assert result.exit_code == 1 and doc["ok"] is False
    assert "older eaglectl bench (results version 1" in doc["error"]["message"] and "not comparable" in (
        doc["error"]["message"])
    assert old.read_bytes() == before and not lines(fake["argvs"])


@pytest.mark.parametrize("sweep", [("--steps", "5"), ("--topk", "1,4"), ("--draft-tokens", "8")])
def test_config_with_a_sweep_option_is_a_usage_error(cli, samples, sweep):
    """`--config` replaces the sweep: `--config 3,1,4 --steps 5` measured 3,1,4 and dropped --steps 5 without a
    word."""
    result = cli("bench", "--target", samples["target"], "--draft", samples["specforge"], "--config", "3,1,4", *sweep,
                 "--print-only", "--json")
    assert result.exit_code == 2, result.stdout
    error = json.loads(result.stdout)["error"]
    assert f"--config replaces the --steps x --topk x --draft-tokens sweep, so {sweep[0]} would be ignored" in \
        error["message"]
    alone = cli("bench", "--target", samples["target"], "--draft", samples["specforge"], "--config", "3,1,4",
                "--print-only")
    assert alone.exit_code == 0, alone.stderr
