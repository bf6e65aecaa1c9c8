"""The SGLang runner's settings (eaglectl/runner/sglang/settings.py): dtype spellings, ServerArgs defaults and
overrides, `launch_server` flags read by SGLang's own parser, and what `engine_settings` reports.

The fake SGLang (tests/fakes/sglang_internals.py) follows SGLang's contracts where the runner depends on
them; the modules under test are imported on first use, not while collecting.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from eaglectl.errors import EaglectlError, MissingDependencyError
from tests.fakes.sglang_internals import (
    fake_sglang,
    make_runner,
)
from tests.helpers import LazyModule

sglang_settings = LazyModule("eaglectl.runner.sglang.settings")
runner_mod = LazyModule("eaglectl.runner.sglang.runner")


# ----------------------------------------------------------------------------------------------------------------
# dtype and ServerArgs


@pytest.mark.parametrize(("given", "want"), [
    (None, "auto"), ("auto", "auto"), (torch.bfloat16, "bfloat16"), ("bf16", "bfloat16"),
    ("torch.bfloat16", "bfloat16"), (torch.float16, "float16"), ("half", "float16"), ("FP16", "float16"),
    (torch.float32, "float32"), ("float", "float32"), ("fp32", "float32"),
])
def test_dtype_maps_to_sglang_strings(given, want):
    assert sglang_settings.sglang_dtype_str(given) == want


@pytest.mark.parametrize("given", [torch.float64, torch.int8, torch.float8_e4m3fn, "fp8", "int4", "bfloat"])
def test_unsupported_dtype_is_rejected_clearly(given):
    with pytest.raises(EaglectlError, match=r"not supported by the SGLang engine; use one of auto, bfloat16"):
        sglang_settings.sglang_dtype_str(given)


def test_runner_rejects_a_bad_dtype_before_touching_sglang():
    with pytest.raises(EaglectlError, match="'int8' is not supported"):
        runner_mod.SGLangTargetRunner("/nowhere", dtype="int8")


def test_server_args_defaults_and_pass_through_overrides():
    kw = sglang_settings.build_server_args_kwargs("/m", dtype=torch.bfloat16, tp_size=2, trust_remote_code=True,
                                                  overrides={"mem_fraction_static": 0.3, "attention_backend": "fa3",
                                                             "page_size": 16, "dtype": "half"})
    assert kw["model_path"] == "/m" and kw["tp_size"] == 2 and kw["trust_remote_code"] is True
    assert kw["mem_fraction_static"] == 0.3 and kw["attention_backend"] == "fa3" and kw["page_size"] == 16
    assert kw["dtype"] == "float16"  # an override wins, in SGLang's spelling
    assert kw["disable_cuda_graph"] is True and kw["skip_tokenizer_init"] is True
    assert kw["sampling_backend"] == "pytorch" and kw["disable_radix_cache"] is True
    assert sglang_settings.build_server_args_kwargs("/m")["attention_backend"] == "triton"
    # a cap, not 60 % of the GPU in KV
    assert sglang_settings.build_server_args_kwargs("/m")["max_total_tokens"] == 131072
    uncapped = sglang_settings.build_server_args_kwargs("/m", overrides={"max_total_tokens": None})
    assert uncapped["max_total_tokens"] is None
    assert sglang_settings.build_server_args_kwargs("/m")["dtype"] == "auto"


@pytest.mark.parametrize(("overrides", "match"), [
    ({"tp_size": 2}, "pass tp_size as an argument"), ({"pp_size": 2}, "pipeline parallelism"),
    ({"enable_dp_attention": True}, "DP attention"),
])
def test_server_args_refuses_what_the_runner_cannot_do(overrides, match):
    with pytest.raises(EaglectlError, match=match):
        sglang_settings.build_server_args_kwargs("/m", overrides=overrides)


def test_missing_sglang_is_exit_code_2():
    import importlib.util

    if importlib.util.find_spec("sglang") is not None:
        pytest.skip("sglang is installed here")
    with pytest.raises(MissingDependencyError, match="sglang is not installed") as info:
        runner_mod.SGLangTargetRunner("/nowhere", dtype="bf16")
    assert info.value.exit_code == 2 and 'pip install "sglang>=0.5.9"' in info.value.hint


def test_settings_sglang_refuses_are_one_clear_error(monkeypatch):
    def server_args_refusing(**kw):
        raise ValueError(f"attention backend {kw['attention_backend']!r} is not supported on this device")

    sg = fake_sglang()
    monkeypatch.setattr("eaglectl.runner.sglang.runner.load_sglang",
                        lambda: dataclasses.replace(sg, ServerArgs=server_args_refusing))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(EaglectlError, match="SGLang refused these settings: ValueError: attention backend 'wave' "
                                            "is not supported") as info:
        runner_mod.SGLangTargetRunner("/m", dtype="bf16", attention_backend="wave")
    assert "EAGLECTL_DEBUG=1" in info.value.hint


# ----------------------------------------------------------------------------------------------------------------
# launch_server flags


def test_server_flags_are_typed_by_sglangs_parser_and_only_given_ones_return(fake_server_args_cls):
    got = sglang_settings.server_args_from_flags(
        ["--page-size", "16", "--disable-radix-cache", "--cuda-graph-bs", "1", "2", "--kv-cache-dtype=fp8_e5m2",
         "--no-enable-metrics", "--quiet-logs"], fake_server_args_cls)
    assert got == {"page_size": 16, "disable_radix_cache": True, "cuda_graph_bs_decode": [1, 2],
                   "kv_cache_dtype": "fp8_e5m2", "enable_metrics": False, "log_level": "error"}
    # Nothing given, nothing returned: required flags and required groups are not required here.
    assert sglang_settings.server_args_from_flags([], fake_server_args_cls) == {}


@pytest.mark.parametrize(("flags", "message"), [
    (["--page", "16"], "unrecognized arguments: --page 16"),  # no abbreviations
    (["--page-size", "x"], "argument --page-size: invalid int value: 'x'"),
    (["--log-level", "debug", "--quiet-logs"], "not allowed with argument --log-level"),
    (["--tokenizer-path", "relative"], "SGLang server flags: AssertionError: --tokenizer-path takes an absolute"),
    (["--config", "x.yaml"], "--config is not a ServerArgs setting (config)"),
    (["--dtype", "float16"], "--dtype cannot be passed to SGLang here: set it with dtype"),
    (["--model", "/m"], "--model-path cannot be passed to SGLang here: set it with the model path"),
])
def test_bad_server_flags_are_one_eaglectl_error(fake_server_args_cls, flags, message):
    with pytest.raises(EaglectlError) as info:
        sglang_settings.server_args_from_flags(flags, fake_server_args_cls)
    assert message in str(info.value)
    assert "cannot be passed" in message or "spelled out in full" in info.value.hint


def test_own_options_are_named_when_a_flag_sets_them(fake_server_args_cls):
    with pytest.raises(EaglectlError, match="--page-size cannot be passed to SGLang here: set it with --my-page"):
        sglang_settings.server_args_from_flags(["--page-size", "4"], fake_server_args_cls,
                                               own_options={"page_size": "--my-page"})


# ----------------------------------------------------------------------------------------------------------------
# Reported settings


def test_engine_settings_report_the_resolved_server_args_and_every_override():
    runner, engine = make_runner(attention_backend="fa3", page_size=16, chunked_prefill_size=8192)
    assert runner.engine_settings == {"attention_backend": "fa3", "page_size": 16, "mem_fraction_static": 0.5,
                                      "max_total_tokens": 4096, "max_running_requests": 8,
                                      "disable_cuda_graph": None,
                                      "kv_slots": 4096 - 16, "request_slots": 8, "max_row_tokens": 64}
    runner = runner_mod.SGLangTargetRunner.from_group(runner._group, api=runner.api,
                                                      override_keys=("chunked_prefill_size", "page_size"))
    settings = runner.engine_settings
    assert list(settings) == [*sglang_settings.REPORTED_SERVER_ARGS, "chunked_prefill_size", "kv_slots",
                              "request_slots", "max_row_tokens"]
    assert settings["chunked_prefill_size"] == 8192
    engine.spec.server_args.chunked_prefill_size = Path("/not/json")  # anything else is reported as text
    assert runner.engine_settings["chunked_prefill_size"] == "/not/json"
    engine.spec.server_args.page_size = (1, 2)  # lists stay lists
    assert runner.engine_settings["page_size"] == [1, 2]
