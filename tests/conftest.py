"""Shared fixtures: the sample checkpoints (built once per session, copied per test that mutates them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eaglectl.cli.app import app


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory):
    from eaglectl.samples import build_samples

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


class _FakeServerArgs:
    """A few of SGLang's `launch_server` flags, declared the way `ServerArgs.add_cli_args` declares them."""

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
        parser.add_argument("--cuda-graph-bs", type=int, nargs="+", default=None)


@pytest.fixture
def fake_server_args_cls():
    """SGLang's ServerArgs as far as flag parsing goes (no SGLang on the CPU machines)."""
    return _FakeServerArgs
