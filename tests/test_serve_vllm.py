"""`serve --engine vllm`: the drafter exported as vLLM reads it, preflighted against vLLM 0.33's rules, `vllm serve
TARGET --speculative-config '{...}'` printed or exec'd (only by an interpreter that has vLLM, found without importing
it); `bench --engine vllm` saying it measures SGLang only."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from eaglectl.demo.samples import d2t_t2d, draft_config, eagle3_tensors, save_json, save_safetensors
from tests.helpers import sibling_venv


def fake_vllm_python(tmp_path: Path, *, metadata: str | None = "0.33.0", version_py: str | None = None) -> str:
    """An interpreter whose path holds a `vllm` package that must never be imported (the probe reads its metadata,
    or vllm/_version.py as text)."""
    site = tmp_path / "site"
    pkg = site / "vllm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the probe must not import vllm')\n")
    if version_py is not None:
        (pkg / "_version.py").write_text(f"__version__: str\n__version__ = version = '{version_py}'\n")
    if metadata is not None:
        dist = site / f"vllm-{metadata}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {metadata}\n")
    python = tmp_path / "python-with-vllm"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return str(python)


def serve(cli, samples, draft, *extra):
    return cli("serve", "--engine", "vllm", "--target", samples["target"], "--draft", draft, *extra)


def speculative_config(argv: list[str]) -> dict:
    return json.loads(argv[argv.index("--speculative-config") + 1])


def test_print_only_prints_one_shell_ready_vllm_serve_line(cli, samples):
    result = serve(cli, samples, samples["nemo-consolidated"], "--print-only", "--num-steps", "5")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vllm serve {samples['target']} --speculative-config ")
    argv = shlex.split(lines[0])
    export = samples["nemo-consolidated"] / "sglang"
    assert speculative_config(argv) == {"method": "eagle3", "model": str(export), "num_speculative_tokens": 5}
    assert argv[argv.index("--port") + 1] == "30000" and argv[argv.index("--dtype") + 1] == "bfloat16"
    assert "would export" in result.stderr and not export.exists()  # print-only writes nothing
    doc = json.loads(serve(cli, samples, samples["nemo-consolidated"], "--print-only", "--json").stdout)
    r = doc["result"]
    assert r["engine"] == "vllm" and r["vllm_rules"] == "0.33.0" and r["argv"][:2] == ["vllm", "serve"]
    assert r["command"] == shlex.join(r["argv"]) and speculative_config(r["argv"])["num_speculative_tokens"] == 3


def test_flags_are_spelt_as_vllm_spells_them(cli, samples):
    result = serve(cli, samples, samples["specforge"], "--print-only", "--json", "--tp-size", "2",
                   "--context-length", "1024", "--mem-fraction-static", "0.8", "--disable-cuda-graph",
                   "--trust-remote-code", "--skip-tokenizer-init", "--dtype", "fp16", "--", "--max-num-seqs", "8")
    argv = json.loads(result.stdout)["result"]["argv"]
    text = shlex.join(argv)
    for flag in ("--tensor-parallel-size 2", "--max-model-len 1024", "--gpu-memory-utilization 0.8", "--enforce-eager",
                 "--trust-remote-code", "--skip-tokenizer-init", "--dtype float16"):
        assert flag in text, flag
    assert argv[-2:] == ["--max-num-seqs", "8"]
    # an SGLang-ready dir lacks vLLM's keys: vLLM gets a fresh export beside it
    assert speculative_config(argv)["model"] == str(samples["specforge"] / "sglang")


@pytest.mark.parametrize("kind", ["p-eagle", "norm-before-residual"])
def test_heads_sglang_cannot_serve_go_to_vllm_in_the_speculators_layout(cli, samples, tmp_path, kind):
    if kind == "p-eagle":
        draft = samples["p-eagle"]
    else:
        draft = tmp_path / "nbr"
        save_json(draft / "config.json", draft_config(architectures=["LlamaForCausalLMEagle3"], num_layers=1,
                                                      norm_before_residual=True,
                                                      eagle_config={"eagle_aux_hidden_state_layer_ids": [1, 3, 4]}))
        save_safetensors(draft / "model.safetensors", {**eagle3_tensors("midlayer.", ""), **d2t_t2d()})
    result = serve(cli, samples, draft, "--print-only")
    assert result.exit_code == 0, result.stderr
    spec = speculative_config(shlex.split(result.stdout))
    assert spec["model"] == str(draft / "speculators")
    assert spec.get("parallel_drafting") is (True if kind == "p-eagle" else None)


def test_exec_runs_vllm_from_an_interpreter_that_has_it(cli, samples, tmp_path, mocker):
    execed = mocker.patch("eaglectl.serving.launcher.exec_server")
    python = fake_vllm_python(tmp_path)
    result = serve(cli, samples, samples["specforge-training"], "--python", python)
    assert result.exit_code == 0, result.stderr
    argv, env = execed.call_args.args
    assert argv[:4] == [python, "-m", "vllm.entrypoints.cli.main", "serve"]
    export = Path(speculative_config(argv)["model"])
    cfg = json.loads((export / "config.json").read_text())  # written before the launch, with vLLM's keys
    assert cfg["eagle_aux_hidden_state_layer_ids"] == [2, 4, 5] and cfg["norm_before_residual"] is False


def test_a_sibling_venv_of_the_same_base_is_asked_for_its_vllm(cli, samples, tmp_path, mocker):
    """vLLM kept in its own venv made from the same base interpreter (its python links to the same binary as this
    one's): that venv's vLLM is what counts, not this interpreter's (which has none)."""
    execed = mocker.patch("eaglectl.serving.launcher.exec_server")
    python = sibling_venv(tmp_path / "vllm-venv", {"vllm": "0.33.0"})
    result = serve(cli, samples, samples["specforge"], "--python", python)
    assert result.exit_code == 0, result.stderr
    assert execed.call_args.args[0][:2] == [python, "-m"]


def test_a_version_other_than_the_known_one_is_a_warning(cli, samples, tmp_path, mocker):
    mocker.patch("eaglectl.serving.launcher.exec_server")
    python = fake_vllm_python(tmp_path, metadata=None, version_py="0.34.1")  # read from vllm/_version.py
    result = serve(cli, samples, samples["specforge"], "--python", python)
    assert result.exit_code == 0, result.stderr
    assert "vLLM 0.34.1 is installed" in result.stderr and "0.33.0's rules" in result.stderr


def test_without_vllm_it_is_a_clear_error_and_nothing_is_written(cli, samples, tmp_path):
    python = tmp_path / "plainpy"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    result = serve(cli, samples, samples["nemo-consolidated"], "--python", python)
    assert result.exit_code == 2
    assert "vLLM is not importable by" in result.stderr and 'pip install "vllm==0.33.0"' in result.stderr
    assert not (samples["nemo-consolidated"] / "sglang").exists()
    doc = json.loads(serve(cli, samples, samples["nemo-consolidated"], "--python", python, "--json").stdout)
    assert doc["ok"] is False and doc["error"]["type"] == "MissingDependencyError"


@pytest.mark.parametrize("extra,message,code", [
    (["--topk", "4"], "vLLM drafts one chain", 2),
    (["--smoke"], "--smoke reads SGLang's /generate", 2),
    (["--", "--speculative-config", "{}"], "vLLM takes the last occurrence", 2),
    (["--", "-sc", "{}"], "would override --speculative-config", 2),
])
def test_what_vllm_cannot_do_is_refused(cli, samples, extra, message, code):
    result = serve(cli, samples, samples["specforge"], "--print-only", *extra)
    assert result.exit_code == code and message in result.stderr, result.stderr


def test_bad_engine_and_eagle1(cli, samples):
    for command in ("serve", "bench"):
        result = cli(command, "--engine", "trt", "--target", samples["target"], "--draft", samples["specforge"])
        assert result.exit_code == 2 and "trt" in result.stderr
        doc = json.loads(cli(command, "--engine", "trt", "--target", samples["target"], "--draft",
                             samples["specforge"], "--json").stdout)
        assert doc["ok"] is False and doc["error"]["exit_code"] == 2
    result = serve(cli, samples, samples["nemo-legacy-eagle"], "--print-only")
    assert result.exit_code == 1 and "eaglectl serves EAGLE-3 heads with vLLM" in result.stderr


def test_preflight_against_the_target(cli, samples, tmp_path):
    target = tmp_path / "t"
    cfg = json.loads((samples["target"] / "config.json").read_text())
    save_json(target / "config.json", {**cfg, "hidden_size": 128})
    result = cli("serve", "--engine", "vllm", "--target", target, "--draft", samples["specforge"], "--print-only")
    assert result.exit_code == 1 and "preflight" in result.stderr and "128" in result.stderr


def test_bench_with_vllm_says_it_measures_sglang(cli, samples, tmp_path):
    plain = tmp_path / "plainpy"
    plain.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    plain.chmod(0o755)
    args = ["bench", "--engine", "vllm", "--target", samples["target"], "--draft", samples["specforge"]]
    result = cli(*args, "--python", plain)
    assert result.exit_code == 2 and "bench measures SGLang servers only" in result.stderr
    assert "vLLM is not importable" in result.stderr
    result = cli(*args, "--python", fake_vllm_python(tmp_path), "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 2 and "vllm bench serve" in doc["error"]["message"]
    assert "eaglectl serve --engine vllm" in doc["error"]["message"]
