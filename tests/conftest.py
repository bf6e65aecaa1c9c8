"""Shared fixtures: the sample checkpoints (built once per session, copied per test that mutates them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eaglectl.cli.app import app
from tests.fakes.server_args import FakeServerArgs


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


@pytest.fixture
def fake_server_args_cls():
    """SGLang's ServerArgs as far as flag parsing goes (no SGLang on the CPU machines)."""
    return FakeServerArgs


@pytest.fixture(autouse=True)
def hub_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test runs against an empty Hugging Face cache of its own with HF_HUB_OFFLINE set: no test reaches the
    network or reads the user's cache. huggingface_hub reads these variables once, when it is imported, so its
    constants are set as a fresh import under this environment would set them. Returns the hub cache folder."""
    import huggingface_hub.constants as constants

    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


@pytest.fixture(autouse=True)
def fresh_interrupts():
    """Every test starts as a run starts: no signal has ended it, nothing held (`eaglectl.interrupts` is state of
    the process, which in-process runs share)."""
    from eaglectl import interrupts

    interrupts.reset()
    yield
    interrupts.reset()
