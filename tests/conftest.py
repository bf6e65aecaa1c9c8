"""Shared fixtures: the sample checkpoints (built once per session, copied per test that mutates them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eaglectl.cli.app import app


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    from eaglectl.samples import build_samples

    root = tmp_path_factory.mktemp("samples")
    build_samples(root)
    return root


@pytest.fixture
def samples(sample_root, tmp_path) -> dict[str, Path]:
    """A private copy of every sample (tests may export into or corrupt them)."""
    from eaglectl.samples import build_samples

    dest = tmp_path / "s"
    shutil.copytree(sample_root, dest, symlinks=True)
    # Paths of the copy, same keys as build_samples returns.
    layout = {
        "nemo-consolidated": "nemo-consolidated/epoch_0_step_100", "nemo-legacy-eagle3": "nemo-legacy-eagle3",
        "nemo-legacy-eagle": "nemo-legacy-eagle", "specforge": "specforge", "eagle-research": "eagle-research",
        "nemo-sharded": "nemo-sharded/epoch_1_step_200", "p-eagle": "p-eagle/epoch_0_step_10", "target": "target",
    }
    assert set(layout) == set(build_samples.__annotations__ and layout)
    return {k: dest / v for k, v in layout.items()}


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
