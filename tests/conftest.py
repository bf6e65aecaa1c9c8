"""Shared fixtures: the sample checkpoints (built once per session, copied per test that mutates them)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eaglectl.cli.app import app


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory):
    from eaglectl.demo.samples import build_samples

    return build_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def sample_root(sample_set) -> Path:
    return sample_set.root


@pytest.fixture
def samples(sample_set, tmp_path) -> dict[str, Path]:
    """A private copy of every sample (tests may export into or corrupt them), keyed as build_samples keys them."""
    dest = tmp_path / "s"
    shutil.copytree(sample_set.root, dest, symlinks=True)
    return {k: dest / p.relative_to(sample_set.root) for k, p in sample_set.paths.items()}


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(app, [str(a) for a in args], **kwargs)

    return invoke


def run_json(cli, *args: str) -> tuple[int, dict]:
    result = cli(*args, "--json")
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A random Llama target saved with transformers: 8 layers, hidden 64, vocab 512, float32 (no tokenizer)."""
    pytest.importorskip("transformers")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=8,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(path)
    return path


class _AssertingAction(argparse.Action):
    """Like SGLang's own option actions, which validate with `assert` while parsing."""

    def __call__(self, parser, namespace, values, option_string=None):
        assert values.startswith("/"), f"{option_string} takes an absolute path"
        setattr(namespace, self.dest, values)


@dataclasses.dataclass
class _FakeServerArgs:
    """A few of SGLang's `launch_server` flags, declared the way 0.5.15's `ServerArgs.add_cli_args` declares them
    (a dataclass whose fields are the flags' destinations, plus `--config`, which is not a field)."""

    model_path: str = ""
    tp_size: int = 1
    dtype: str = "auto"
    page_size: int = 1
    mem_fraction_static: float | None = None
    attention_backend: str | None = None
    kv_cache_dtype: str = "auto"
    disable_radix_cache: bool = False
    cuda_graph_bs_decode: list[int] | None = None
    enable_metrics: bool = False
    tokenizer_path: str | None = None
    log_level: str = "info"

    @staticmethod
    def add_cli_args(parser) -> None:
        parser.add_argument("--model-path", "--model", type=str, required=True)
        parser.add_argument("--tp-size", type=int, default=1)
        parser.add_argument("--dtype", type=str, default="auto")
        parser.add_argument("--page-size", type=int, default=1)
        parser.add_argument("--mem-fraction-static", type=float, default=None)
        parser.add_argument("--attention-backend", type=str, choices=["triton", "fa3", "torch_native"], default=None)
        parser.add_argument("--kv-cache-dtype", type=str, default="auto")
        parser.add_argument("--disable-radix-cache", action="store_true")
        parser.add_argument("--cuda-graph-bs-decode", "--cuda-graph-bs", dest="cuda_graph_bs_decode", type=int,
                            nargs="+", default=None)
        parser.add_argument("--enable-metrics", action=argparse.BooleanOptionalAction, default=False)
        parser.add_argument("--tokenizer-path", action=_AssertingAction, default=None)
        parser.add_argument("--config", type=str, default=None)
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--log-level", type=str, default="info")
        group.add_argument("--quiet-logs", dest="log_level", action="store_const", const="error")


@pytest.fixture
def fake_server_args_cls():
    """SGLang's ServerArgs as far as flag parsing goes (no SGLang on the CPU machines)."""
    return _FakeServerArgs
