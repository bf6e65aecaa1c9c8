"""`eaglectl probe-target` through the CLI, on CPU, with the HF engine against the HF reference."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from eaglectl.runner import probe
from eaglectl.runner.probe import diff

pytest.importorskip("transformers")

SMALL = ("--engine", "hf", "--batch", "3", "--seq-len", "16", "--dtype", "float32")


def _json(result) -> dict:
    return json.loads(result.stdout)


def _prompts(tmp_path, text: str, name: str = "prompts.json"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _hide(monkeypatch, module: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))


def test_hf_against_hf_has_zero_differences(cli, tiny_llama):
    result = cli("probe-target", tiny_llama, *SMALL, "--compare", "hf", "--json")
    assert result.exit_code == 0, result.stderr
    doc = _json(result)
    assert doc["command"] == "probe-target" and doc["ok"] is True
    r = doc["result"]
    assert r["engine"] == "hf" and r["dtype"] == "float32" and r["aux_layer_ids"] == [1, 3, 4]
    assert (r["num_layers"], r["hidden_size"], r["vocab_size"]) == (8, 64, 512)
    assert r["shapes"] == {"input_ids": [3, 16], "attention_mask": [3, 16], "logits": [3, 16, 512],
                           "aux_hidden_states": [3, 16, 192], "input_embedding": [512, 64]}
    # Seeded rows: the first is full length, the others shorter (right padding is exercised).
    assert r["row_lengths"][0] == 16 and all(8 <= n < 16 for n in r["row_lengths"][1:])
    assert r["tokens"] == sum(r["row_lengths"])
    names = [d["name"] for d in r["diffs"]]
    assert names == ["logits", "aux[0] (layer 1)", "aux[1] (layer 3)", "aux[2] (layer 4)", "input embedding"]
    for d in r["diffs"]:
        assert d["max_abs"] == 0.0 and d["mean_abs"] == 0.0 and d["rel_mean"] == 0.0 and d["ok"] is True
    assert r["diffs"][0]["shape"] == [r["tokens"], 512]  # real positions only
    assert r["top1_agreement"] == 1.0
    assert r["tolerance"] == probe.DEFAULT_TOLERANCE["float32"] and r["tolerance_source"] == "default for float32"
    for run in (r["engine_run"], r["reference_run"]):
        assert run["device"] == "cpu" and run["dtype"] == "float32"
        assert run["tokens_per_s"] > 0 and run["peak_gpu_memory_bytes"] is None
    assert r["failures"] == []


def test_same_seed_same_rows_other_seed_other_rows(cli, tiny_llama):
    args = ("probe-target", tiny_llama, *SMALL, "--compare", "none", "--json")
    a, b, c = cli(*args), cli(*args), cli(*args, "--seed", "7")
    assert _json(a)["result"]["row_lengths"] == _json(b)["result"]["row_lengths"]
    assert _json(a)["result"]["row_lengths"] != _json(c)["result"]["row_lengths"]


def test_table_rendering(cli, tiny_llama):
    result = cli("probe-target", tiny_llama, *SMALL)
    assert result.exit_code == 0, result.stderr
    assert "Differences vs HF" in result.stdout and "aux[2] (layer 4)" in result.stdout
    assert "honours the EAGLE-3 target contract" in result.stdout


def test_explicit_aux_layer_ids_and_bfloat16(cli, tiny_llama):
    result = cli("probe-target", tiny_llama, "--engine", "hf", "--batch", "2", "--seq-len", "8",
                 "--aux-layer-ids", "6", "0", "2", "--json")
    assert result.exit_code == 0, result.stderr
    r = _json(result)["result"]
    assert r["aux_layer_ids"] == [6, 0, 2] and r["dtype"] == "bfloat16"
    assert r["tolerance"] == probe.DEFAULT_TOLERANCE["bfloat16"]
    assert [d["name"] for d in r["diffs"]][1:4] == ["aux[0] (layer 6)", "aux[1] (layer 0)", "aux[2] (layer 2)"]


def test_last_layer_as_aux_is_refused_before_loading(cli, tiny_llama, monkeypatch):
    monkeypatch.setattr(probe, "make_engine_runner", lambda *a, **k: pytest.fail("loaded the target"))
    result = cli("probe-target", tiny_llama, *SMALL, "--aux-layer-ids", "1", "3", "7")
    assert result.exit_code == 1
    assert "out of bounds" in result.stderr and "never captures" in result.stderr


def test_compare_none_runs_only_the_engine(cli, tiny_llama):
    result = cli("probe-target", tiny_llama, *SMALL, "--compare", "none", "--json")
    assert result.exit_code == 0, result.stderr
    r = _json(result)["result"]
    assert r["reference_run"] is None and r["diffs"] == [] and r["top1_agreement"] is None
    assert r["shapes"]["input_embedding"] == [512, 64]  # the embedding's contract is checked anyway


def test_prompts_as_token_ids(cli, tiny_llama, tmp_path):
    prompts = _prompts(tmp_path, json.dumps([[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12, 13, 14, 15]]))
    result = cli("probe-target", tiny_llama, "--engine", "hf", "--prompts", prompts, "--seq-len", "6", "--json")
    assert result.exit_code == 0, result.stderr
    r = _json(result)["result"]
    assert r["row_lengths"] == [5, 2, 6]  # cut to --seq-len, padded to the longest
    assert r["shapes"]["input_ids"] == [3, 6]
    assert str(prompts) in r["inputs"]


def test_prompt_token_out_of_vocab(cli, tiny_llama, tmp_path):
    prompts = _prompts(tmp_path, "[[1, 2, 512]]")
    result = cli("probe-target", tiny_llama, *SMALL, "--prompts", prompts)
    assert result.exit_code == 1
    assert "token id 512 is out of range" in result.stderr


@pytest.mark.parametrize(("content", "message"), [
    ("{}", "must be a non-empty JSON list"), ("[]", "must be a non-empty JSON list"),
    ("[[1, -2]]", "prompt 0 is not a non-empty list of non-negative token ids"),
    ('[[1, 2], "text"]', "prompt 1 is not a non-empty list of non-negative token ids"),
])
def test_malformed_prompts(cli, tiny_llama, tmp_path, monkeypatch, content, message):
    monkeypatch.setattr(probe, "make_engine_runner", lambda *a, **k: pytest.fail("loaded the target"))
    prompts = _prompts(tmp_path, content)
    result = cli("probe-target", tiny_llama, *SMALL, "--prompts", prompts)
    assert result.exit_code == 1
    assert message in result.stderr


@pytest.mark.parametrize(("kind", "message"), [
    ("fifo", "prompts must be a regular file"),
    ("devzero", "prompts must be a regular file"),
    ("deep", "prompts nests JSON 5000 levels deep (at most 8)"),
    ("digits", "prompts holds an integer with 5000 digits (at most 40)"),
    ("nan", "prompts holds NaN, which is no JSON number"),
    ("not-utf8", "cannot read prompts (not UTF-8 text"),
])
def test_hostile_prompt_files_cost_nothing_and_say_what_they_are(cli, tiny_llama, tmp_path, monkeypatch, kind,
                                                                  message):
    """A FIFO would block, /dev/zero never end, 5000 nested lists overflow the recursion limit, a 5000-digit id
    the int-string limit: each is refused, as one line, before the target is loaded."""
    import os

    monkeypatch.setattr(probe, "make_engine_runner", lambda *a, **k: pytest.fail("loaded the target"))
    path = tmp_path / "prompts.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        path = Path("/dev/zero")
    else:
        path.write_bytes({"deep": b"[" * 5000 + b"]" * 5000, "digits": b"[[" + b"7" * 5000 + b"]]",
                          "nan": b"[[1, NaN]]", "not-utf8": b'["caf\xe9"]'}[kind])
    result = cli("probe-target", tiny_llama, *SMALL, "--prompts", path)
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr


def test_a_text_file_whose_lines_start_with_brackets_is_read_as_lines(tmp_path):
    path = _prompts(tmp_path, "[INST] the draft model [/INST]\n[INST] next [/INST]\n", "prompts.txt")
    assert probe._read_prompts(path) == ["[INST] the draft model [/INST]", "[INST] next [/INST]"]


@pytest.mark.parametrize(("args", "message"), [
    (("--seq-len", "1000", "--batch", "1"), "--seq-len 1000 is longer than the target's max_position_embeddings (256)"),
    (("--seq-len", "100000000"), "--batch 4 x --seq-len 100000000 is more than 32768 tokens"),
    (("--batch", "100000000"), "--batch 100000000 x --seq-len 128 is more than 32768 tokens"),
    (("--batch", "512", "--seq-len", "256"), "--batch 512 x --seq-len 256 is more than 32768 tokens"),
])
def test_rows_beyond_what_a_probe_needs_are_refused_before_anything_is_allocated(cli, tiny_llama, monkeypatch,
                                                                                 args, message):
    """`--seq-len 100000000` once tried to allocate 51 GB of logits for minutes; a usage error now, at once."""
    monkeypatch.setattr(probe, "make_engine_runner", lambda *a, **k: pytest.fail("loaded the target"))
    result = cli("probe-target", tiny_llama, "--engine", "hf", *args)
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr


def test_prompt_rows_beyond_what_a_probe_needs_are_refused(cli, tiny_llama, tmp_path):
    prompts = _prompts(tmp_path, json.dumps([[1] * 200] * 200))
    result = cli("probe-target", tiny_llama, "--engine", "hf", "--dtype", "float32", "--prompts", prompts)
    assert result.exit_code == 1 and "200 prompt(s) padded to 200 tokens are more than 32768 tokens" in result.stderr


def test_a_warmup_beyond_what_a_probe_needs_is_a_usage_error(cli, tiny_llama, monkeypatch):
    """`--warmup 1000000` ran a million forwards (hours) before the timed one."""
    monkeypatch.setattr(probe, "make_engine_runner", lambda *a, **k: pytest.fail("loaded the target"))
    result = cli("probe-target", tiny_llama, "--engine", "hf", "--warmup", "1000000", "--json")
    assert result.exit_code == 2 and "1000000 is not between 0 and 100" in _json(result)["error"]["message"]


@pytest.mark.parametrize("seed", ["99999999999999999999999", str(2**64), str(-(2**63) - 1)])
def test_a_seed_torch_cannot_take_is_a_usage_error(cli, tiny_llama, monkeypatch, seed):
    monkeypatch.setattr(probe, "make_engine_runner", lambda *a, **k: pytest.fail("loaded the target"))
    result = cli("probe-target", tiny_llama, "--engine", "hf", "--seed", seed, "--json")
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    assert "is not between -9223372036854775808 and 18446744073709551615" in _json(result)["error"]["message"]


def test_a_target_in_a_directory_named_in_other_bytes_than_utf8_is_probed(cli, tiny_llama, tmp_path):
    """A Latin-1 directory name: transformers and safetensors take text paths only (it was "a safetensors file of
    the target is corrupt or truncated"); the directory is handed over as /proc/self/fd/N."""
    import os
    import shutil

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    target = tmp_path / os.fsdecode(b"cible-\xe9t\xe9")
    shutil.copytree(tiny_llama, target)
    result = cli("probe-target", target, *SMALL, "--json")
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result.stderr
    assert _json(result)["result"]["failures"] == []


def test_a_target_the_hub_cannot_serve_is_one_error_line(cli, hub_cache, monkeypatch):
    """An unreachable Hub: huggingface_hub logs a line per retry and transformers raises a two-line OSError; the
    run says one line (the retries' log held back, the message's first line)."""
    import logging

    import transformers

    def unreachable(*args, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", unreachable)
    result = cli("probe-target", "org/target-x", "--engine", "hf", "--compare", "none")
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == ["error: org/target-x: transformers cannot read the target config (We "
                                          "couldn't connect to 'https://huggingface.co' to load the files.)"]


@pytest.mark.parametrize("content", ["[]", '{"tokenizer_class": 5}', "[" * 100_000 + "]" * 100_000])
def test_a_malformed_tokenizer_config_is_one_error_line(cli, tiny_llama, tmp_path, content):
    """transformers raises AttributeError for a list where an object belongs, RecursionError for deep nesting:
    the target's tokenizer cannot tokenize text prompts, said in one line."""
    import shutil

    target = tmp_path / "target"
    shutil.copytree(tiny_llama, target)
    (target / "tokenizer_config.json").write_text(content)
    prompts = _prompts(tmp_path, "hello world\n", "prompts.txt")
    result = cli("probe-target", target, *SMALL, "--prompts", prompts)
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {target}: no tokenizer to tokenize text prompts (")


def test_text_prompts_use_the_targets_tokenizer(cli, tiny_llama, tmp_path):
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    target = tmp_path / "target"
    shutil.copytree(tiny_llama, target)
    words = ["[UNK]", "the", "draft", "model", "predicts", "next", "token"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(target)
    prompts = _prompts(tmp_path, "the draft model\n\nthe model predicts the next token\n", "prompts.txt")
    result = cli("probe-target", target, *SMALL, "--prompts", prompts, "--json")
    assert result.exit_code == 0, result.stderr
    assert _json(result)["result"]["row_lengths"] == [3, 6]


def test_text_prompts_without_a_tokenizer(cli, tiny_llama, tmp_path):
    prompts = _prompts(tmp_path, "hello world\n", "prompts.txt")
    result = cli("probe-target", tiny_llama, *SMALL, "--prompts", prompts)
    assert result.exit_code == 1
    assert "no tokenizer to tokenize text prompts" in result.stderr
    assert "JSON list of token-id lists" in result.stderr  # the hint


class _Scaled:
    """Wraps a runner and scales its logits: an engine that drifts from the reference."""

    def __init__(self, inner, logit_scale=1.0, aux_chunks=3, embedding_cols=None):
        self.inner, self.model, self.logit_scale, self.aux_chunks = inner, inner.model, logit_scale, aux_chunks
        self.embedding_cols = embedding_cols

    def set_aux_layers(self, ids):
        self.inner.set_aux_layers(ids)

    def forward_eagle3(self, input_ids, attention_mask):
        logits, aux = self.inner.forward_eagle3(input_ids, attention_mask)
        return logits * self.logit_scale, aux[..., : aux.shape[-1] // 3 * self.aux_chunks]

    def input_embedding_weight(self):
        return self.inner.input_embedding_weight()[:, : self.embedding_cols]

    def close(self):
        self.inner.close()


def _wrap_engine(monkeypatch, **kw):
    real = probe.make_engine_runner
    monkeypatch.setattr(probe, "make_engine_runner", lambda *a, **k: _Scaled(real(*a, **k), **kw))


def test_difference_over_tolerance_exits_1(cli, tiny_llama, monkeypatch):
    _wrap_engine(monkeypatch, logit_scale=1.5)
    result = cli("probe-target", tiny_llama, *SMALL, "--json")
    assert result.exit_code == 1
    doc = _json(result)
    assert doc["ok"] is False
    by_name = {d["name"]: d for d in doc["result"]["diffs"]}
    assert by_name["logits"]["ok"] is False and by_name["logits"]["rel_mean"] == pytest.approx(0.5, rel=1e-4)
    assert all(d["ok"] for n, d in by_name.items() if n != "logits")  # aux untouched
    assert doc["result"]["top1_agreement"] == 1.0  # scaling keeps the argmax
    assert "probe-target failed: logits: relative mean difference" in result.stderr
    # one document (the report, with the error beside it), not a second failure envelope after it
    assert doc["error"]["type"] == "CheckFailedError" and doc["error"]["exit_code"] == 1
    assert doc["error"]["message"].startswith("probe-target failed: logits")


def test_tolerance_option_is_used_and_reported(cli, tiny_llama, monkeypatch):
    _wrap_engine(monkeypatch, logit_scale=1.5)
    result = cli("probe-target", tiny_llama, *SMALL, "--tolerance", "0.6", "--json")
    assert result.exit_code == 0, result.stderr
    r = _json(result)["result"]
    assert r["tolerance"] == 0.6 and r["tolerance_source"] == "--tolerance"


def test_broken_contract_exits_1(cli, tiny_llama, monkeypatch):
    _wrap_engine(monkeypatch, aux_chunks=2)
    result = cli("probe-target", tiny_llama, *SMALL, "--json")
    assert result.exit_code == 1
    r = _json(result)["result"]
    assert r["diffs"] == []
    assert r["failures"] == ["hf: aux hidden states have shape [3, 16, 128], the contract needs [3, 16, 192]"]


def test_wrong_embedding_shape_exits_1(cli, tiny_llama, monkeypatch):
    _wrap_engine(monkeypatch, embedding_cols=32)
    result = cli("probe-target", tiny_llama, *SMALL, "--compare", "none", "--json")
    assert result.exit_code == 1
    r = _json(result)["result"]
    assert r["failures"] == ["hf: input embedding has shape [512, 32], the contract needs [512, 64]"]
    assert "input embedding has shape [512, 32]" in result.stderr


def test_missing_transformers_exits_2(cli, tiny_llama, monkeypatch):
    _hide(monkeypatch, "transformers")
    result = cli("probe-target", tiny_llama, *SMALL)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "transformers is not installed" in result.stderr and 'pip install "transformers>=4.45"' in result.stderr


def test_sglang_engine_without_sglang_exits_2(cli, tiny_llama, monkeypatch):
    _hide(monkeypatch, "sglang")
    import eaglectl.runner.sglang as sglang_pkg

    if "SGLangTargetRunner" in vars(sglang_pkg):  # served by the package's lazy __getattr__ again
        monkeypatch.delattr(sglang_pkg, "SGLangTargetRunner")
    monkeypatch.delitem(sys.modules, "eaglectl.runner.sglang.runner", raising=False)  # whatever ran before
    result = cli("probe-target", tiny_llama, "--engine", "sglang", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]  # --json: the failure envelope, and nothing else, on stdout
    assert error["type"] == "MissingDependencyError" and error["exit_code"] == 2
    assert error["hint"] == 'pip install "sglang>=0.5.9"'
    assert "sglang is not installed" in result.stderr and 'pip install "sglang>=0.5.9"' in result.stderr
    assert "eaglectl.runner.sglang.runner" not in sys.modules


def test_tp_size_needs_sglang(cli, tiny_llama):
    result = cli("probe-target", tiny_llama, "--engine", "hf", "--tp-size", "2")
    assert result.exit_code == 2  # a usage error
    assert "--tp-size > 1 needs --engine sglang" in result.stderr


class _Configured(_Scaled):
    """The HF runner standing in for an SGLang one: reports the settings it was built with."""

    def __init__(self, inner, settings):
        super().__init__(inner)
        self.engine_settings = settings


@pytest.fixture
def fake_sglang_runner(monkeypatch, fake_server_args_cls):
    """`--engine sglang` through the real `make_engine_runner`, with SGLang replaced at its edges: the flag parser
    gets the fake ServerArgs, and the runner class is the HF runner recording what it was built with."""
    import eaglectl.runner.sglang as sglang_pkg
    from eaglectl.runner.sglang import settings as sglang_settings

    built = {}
    real_require = probe.require

    def runner(target, *, dtype, tp_size, trust_remote_code, **overrides):
        built.update(overrides, tp_size=tp_size)
        return _Configured(probe.make_reference_runner(target, dtype=dtype, device="cpu",
                                                       trust_remote_code=trust_remote_code), dict(overrides))

    monkeypatch.setattr(probe, "require", lambda name, **k: None if name == "sglang" else real_require(name, **k))
    monkeypatch.setattr(sglang_settings, "load_sglang", lambda: SimpleNamespace(ServerArgs=fake_server_args_cls))
    monkeypatch.setattr(sglang_pkg, "SGLangTargetRunner", runner)
    return built


SGLANG_SMALL = ("--engine", "sglang", "--batch", "2", "--seq-len", "8", "--dtype", "float32")


def test_sglang_options_and_flags_reach_the_runner_and_the_report(cli, tiny_llama, fake_sglang_runner):
    args = (tiny_llama, *SGLANG_SMALL, "--attention-backend", "fa3", "--mem-fraction-static", "0.5")
    flags = ("--", "--page-size", "16", "--disable-radix-cache", "--cuda-graph-bs", "1", "2")
    result = cli("probe-target", *args, "--json", *flags)
    assert result.exit_code == 0, result.stderr
    assert fake_sglang_runner == {"attention_backend": "fa3", "mem_fraction_static": 0.5, "page_size": 16,
                                  "disable_radix_cache": True, "cuda_graph_bs_decode": [1, 2], "tp_size": 1}
    r = _json(result)["result"]
    assert r["engine_run"]["engine"] == "sglang"
    assert r["engine_run"]["settings"] == {"page_size": 16, "disable_radix_cache": True,
                                           "cuda_graph_bs_decode": [1, 2], "attention_backend": "fa3",
                                           "mem_fraction_static": 0.5}
    assert r["reference_run"]["settings"] == {"attn_implementation": "sdpa", "device": "cpu"}
    table = cli("probe-target", *args, *flags)
    assert table.exit_code == 0, table.stderr
    assert "engine settings (sglang)" in table.stdout and "attention_backend=fa3" in table.stdout
    assert "reference settings (hf)" in table.stdout and "attn_implementation=sdpa" in table.stdout


@pytest.mark.parametrize(("flags", "message"), [
    (("--page-size", "sixteen"), "SGLang server flags: argument --page-size: invalid int value: 'sixteen'"),
    (("--no-such-flag", "1"), "SGLang server flags: unrecognized arguments: --no-such-flag 1"),
    (("--attention-backend", "nope"), "argument --attention-backend: invalid choice: 'nope'"),
    (("--tp-size", "2"), "--tp-size cannot be passed to SGLang here: set it with --tp-size"),
    (("--model", "/x"), "--model-path cannot be passed to SGLang here: set it with the TARGET argument"),
    (("--attention-backend", "triton"), "--attention-backend is given both as a probe-target option and after --"),
])
def test_bad_sglang_flags_are_one_error_before_loading(cli, tiny_llama, fake_sglang_runner, flags, message):
    result = cli("probe-target", tiny_llama, *SGLANG_SMALL, "--attention-backend", "fa3", "--", *flags)
    assert result.exit_code == 2 and result.stdout == ""  # usage errors
    assert message in result.stderr and "Traceback" not in result.stderr
    assert fake_sglang_runner == {}  # nothing was built


def test_flags_are_checked_before_the_target_is_read(cli, tmp_path, fake_sglang_runner):
    result = cli("probe-target", tmp_path / "missing", *SGLANG_SMALL, "--", "--page-size", "x")
    assert result.exit_code == 2 and "argument --page-size: invalid int value: 'x'" in result.stderr


def test_a_misspelt_option_is_a_usage_error_not_an_sglang_flag(cli, tiny_llama, fake_sglang_runner):
    result = cli("probe-target", tiny_llama, *SGLANG_SMALL, "--seeed", "3")
    assert result.exit_code == 2 and "No such option: --seeed" in result.stderr
    assert fake_sglang_runner == {}


@pytest.mark.parametrize("extra", [("--attention-backend", "fa3"), ("--mem-fraction-static", "0.5"),
                                   ("--", "--page-size", "16")])
def test_sglang_options_need_the_sglang_engine(cli, tiny_llama, monkeypatch, extra):
    monkeypatch.setattr(probe, "make_engine_runner", lambda *a, **k: pytest.fail("loaded the target"))
    result = cli("probe-target", tiny_llama, "--engine", "hf", *extra)
    assert result.exit_code == 2 and result.stdout == ""  # a usage error, as Click's own
    assert "need --engine sglang" in result.stderr


def test_mem_fraction_static_must_be_above_zero(cli, tiny_llama):
    result = cli("probe-target", tiny_llama, *SGLANG_SMALL, "--mem-fraction-static", "0")
    assert result.exit_code == 2 and "0.0 is not above 0 and at most 1" in result.stderr


def test_engine_server_args_check_their_ranges():
    assert probe.engine_server_args() == {}
    assert probe.engine_server_args(attention_backend=" fa3 ", mem_fraction_static=1) == {
        "attention_backend": "fa3", "mem_fraction_static": 1.0}
    with pytest.raises(probe.UsageError, match=r"must be in \(0, 1\]"):
        probe.engine_server_args(mem_fraction_static=0.0)
    with pytest.raises(probe.UsageError, match="needs a backend name"):
        probe.engine_server_args(attention_backend=" ")


def test_relative_difference():
    ref = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    d = diff("x", ref + torch.tensor([[0.5, 0.0], [0.0, -0.5]]), ref, tolerance=0.1)
    assert (d.max_abs, d.mean_abs) == (0.5, 0.25)
    assert d.rel_mean == pytest.approx(0.25 / 2.5) and d.ok is True
    assert diff("z", torch.ones(3), torch.zeros(3), 1.0).rel_mean == float("inf")


def test_text_output_shows_a_hostile_target_path_escaped(cli, tiny_llama, tmp_path):
    (tmp_path / "t[").mkdir()
    hostile = tmp_path / "t[" / "]x[bold]\x1b[31m\r"
    hostile.symlink_to(tiny_llama, target_is_directory=True)
    result = cli("probe-target", hostile, *SMALL)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr and "\x1b" not in result.stdout + result.stderr
    assert "t[/]x[bold]\\x1b[31m\\r" in result.stdout.replace("\n", "").replace("│", "").replace(" ", "")


def test_the_demo_target_probes_with_hf_without_progress_bars(cli, sample_root):
    """The README quick start: `eaglectl probe-target DEMO/target --engine hf` on the demo's own target."""
    pytest.importorskip("transformers")
    result = cli("probe-target", sample_root / "target", "--engine", "hf")
    assert result.exit_code == 0, result.stderr
    assert "Loading weights" not in result.stderr and "it/s" not in result.stderr  # transformers' bars
    assert "engine (hf)" in result.stdout and "reference (hf)" in result.stdout  # Runs rows by role
    assert "The engine honours the EAGLE-3 target contract" in result.stdout


# --- targets that cannot be loaded, and drafters given as targets: one error line, no traceback ----------------
def _broken_target(tiny_llama, tmp_path, how: str):
    import os
    import shutil

    t = tmp_path / how
    shutil.copytree(tiny_llama, t)
    if how == "truncated":
        st = next(t.glob("*.safetensors"))
        os.truncate(st, st.stat().st_size // 2)
    elif how == "config-disagrees":
        cfg = json.loads((t / "config.json").read_text())
        (t / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 2 * cfg["intermediate_size"]}))
    elif how == "config-deeper":  # two layers the weights do not hold: transformers initialises them at random
        cfg = json.loads((t / "config.json").read_text())
        (t / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": cfg["num_hidden_layers"] + 2}))
    elif how in ("shard-missing", "index-without-metadata", "index-without-weight-map"):
        _shard(t)
        index = json.loads((t / "model.safetensors.index.json").read_text())
        if how == "shard-missing":
            (t / "model-00002-of-00002.safetensors").unlink()
        else:
            del index["metadata" if how == "index-without-metadata" else "weight_map"]
        (t / "model.safetensors.index.json").write_text(json.dumps(index))
    else:  # a pickle whose unpickling would run code
        from safetensors.torch import load_file

        st = next(t.glob("*.safetensors"))
        state: dict = dict(load_file(st))
        state["evil"] = _Evil()
        st.unlink()
        torch.save(state, t / "pytorch_model.bin")
    return t


def _shard(t):
    """The target's model.safetensors split in two shards with an index, as transformers writes them."""
    from safetensors.torch import load_file, save_file

    state = load_file(t / "model.safetensors")
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, part in shards.items():
        save_file({n: state[n] for n in part}, t / shard, metadata={"format": "pt"})
    (t / "model.safetensors").unlink()
    weight_map = {n: shard for shard, part in shards.items() for n in part}
    (t / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


class _Evil:
    def __reduce__(self):
        import os

        return os.system, ("echo pickled code ran >&2",)


@pytest.mark.parametrize(("how", "said"), [
    ("truncated", "a safetensors file of the target is corrupt or truncated"),
    ("config-disagrees", "the target's config disagrees with its weights: model.layers."),
    ("config-deeper", "the target's config disagrees with its weights: 18 parameter(s) it builds are not in the "
                      "weights (model.layers.8.input_layernorm.weight, "),
    ("shard-missing", "model-00002-of-00002.safetensors"),
    ("index-without-metadata", "model.safetensors.index.json has no \"metadata\", which transformers reads"),
    ("index-without-weight-map", "model.safetensors.index.json has no \"weight_map\", which transformers reads"),
    ("pickle-refused", "refused to unpickle the target's weights: they need objects beyond tensors (posix.system)"),
])
def test_a_target_that_cannot_load_is_one_error_line(cli, tiny_llama, tmp_path, how, said):
    target = _broken_target(tiny_llama, tmp_path, how)
    result = cli("probe-target", target, *SMALL, "--compare", "none")
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and said in lines[0], result.stderr
    assert all(line.startswith(("error:", "hint:")) for line in lines), result.stderr  # no load report around it
    assert "pickled code ran" not in result.stderr


@pytest.mark.parametrize("key", ["specforge", "nemo-consolidated", "nemo-legacy-eagle3", "nemo-sharded"])
def test_a_drafter_given_as_target_is_named_so_before_loading(cli, samples, monkeypatch, key):
    from eaglectl.runner import hf

    monkeypatch.setattr(hf, "HFTargetRunner", lambda *a, **k: pytest.fail("a drafter was loaded as a target"))
    result = cli("probe-target", samples[key], *SMALL)
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {samples[key]}: this is a drafter, not a target")
