"""The Hugging Face reference runner on a tiny random Llama (CPU)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from eaglectl.errors import ConfigError, MissingDependencyError
from eaglectl.runner.contract import TargetRunner, build_eagle3_batch
from eaglectl.runner.hf import HFTargetRunner, canonical_dtype, config_dtype, resolve_dtype

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def runner(tiny_llama):
    r = HFTargetRunner(str(tiny_llama), dtype="float32", device="cpu")
    yield r
    r.close()


def _rows():
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 512, (3, 12), generator=gen)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
    return input_ids, mask


def _reference(runner, input_ids, mask):
    with torch.inference_mode():
        return runner.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True, use_cache=False)


def test_runner_satisfies_the_protocol(runner):
    assert isinstance(runner, TargetRunner)
    assert runner.model.config.num_hidden_layers == 8
    assert sum(p.numel() for p in runner.model.parameters()) > 0
    assert all(not p.requires_grad for p in runner.model.parameters())


@pytest.mark.parametrize("ids", [None, [0, 2, 6], [6, 1, 3]])
def test_aux_is_the_output_of_decoder_layer_k(runner, ids):
    runner.set_aux_layers(ids)
    expected_ids = ids or [1, 3, 4]
    assert runner.aux_layer_ids == expected_ids
    input_ids, mask = _rows()
    logits, aux = runner.forward_eagle3(input_ids, mask)
    ref = _reference(runner, input_ids, mask)
    assert aux.shape == (3, 12, 3 * 64)
    for chunk, k in zip(aux.split(64, dim=-1), expected_ids, strict=True):
        assert torch.equal(chunk, ref.hidden_states[k + 1])
    assert torch.equal(logits, ref.logits)


def test_logits_cover_the_full_vocab(runner):
    logits, _ = runner.forward_eagle3(*_rows())
    assert logits.shape == (3, 12, 512)


def test_last_layer_is_refused(runner):
    # hidden_states[N] is taken after the final norm, and SGLang never captures layer N-1.
    with pytest.raises(ConfigError, match="out of bounds"):
        runner.set_aux_layers([1, 3, 7])


def test_embedding_is_the_models_input_embedding(runner):
    weight = runner.input_embedding_weight()
    assert weight.shape == (512, 64)
    assert weight is runner.model.get_input_embeddings().weight


def test_batch_from_the_hf_runner(runner):
    runner.set_aux_layers(None)
    input_ids, mask = _rows()
    batch = build_eagle3_batch(runner, input_ids, mask)
    logits, aux = runner.forward_eagle3(input_ids, mask)
    assert torch.equal(batch.target_logits[:, :-1], logits[:, 1:])
    assert not batch.target_logits[:, -1].any()
    assert torch.equal(batch.aux_hidden_states, aux)
    assert batch.loss_mask[2].tolist() == [1, 1, 1, 1] + [0] * 8


def test_dtype_auto_reads_the_config_and_explicit_dtype_wins(tiny_llama):
    auto = HFTargetRunner(str(tiny_llama), dtype="auto", device="cpu")
    bf16 = HFTargetRunner(str(tiny_llama), dtype="bfloat16", device="cpu")
    try:
        assert auto.dtype == "float32" and next(auto.model.parameters()).dtype == torch.float32
        assert bf16.dtype == "bfloat16" and next(bf16.model.parameters()).dtype == torch.bfloat16
        logits, aux = bf16.forward_eagle3(*_rows())
        assert logits.shape == (3, 12, 512) and aux.dtype == torch.bfloat16
    finally:
        auto.close()
        bf16.close()


def test_close_is_idempotent(tiny_llama):
    r = HFTargetRunner(str(tiny_llama), dtype="float32", device="cpu", aux_layer_ids=[0, 1, 2])
    r.close()
    r.close()
    assert r.model is None
    with pytest.raises(RuntimeError, match="closed"):
        r.forward_eagle3(*_rows())


def test_missing_target_is_a_checkpoint_error(tmp_path):
    from eaglectl.errors import CheckpointError

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="transformers cannot"):
        HFTargetRunner(str(tmp_path), device="cpu")


def test_missing_transformers_is_exit_2(monkeypatch, tiny_llama):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(MissingDependencyError) as info:
        HFTargetRunner(str(tiny_llama))
    assert info.value.exit_code == 2
    assert info.value.hint == 'pip install "transformers>=4.45"'


@pytest.mark.parametrize(("requested", "recorded", "expected"), [
    ("auto", "bfloat16", "bfloat16"), ("auto", "torch.float16", "float16"), ("auto", None, "float32"),
    ("bf16", "float32", "bfloat16"), ("float32", "bfloat16", "float32"),
])
def test_resolve_dtype(requested, recorded, expected):
    assert resolve_dtype(requested, recorded) == expected


def test_resolve_dtype_rejects_what_it_cannot_run():
    with pytest.raises(ConfigError, match="not one of"):
        resolve_dtype("int8", None)
    with pytest.raises(ConfigError, match="float8_e4m3fn") as info:
        resolve_dtype("auto", "float8_e4m3fn")
    assert "--dtype" in (info.value.hint or "")


def test_dtype_helpers():
    assert canonical_dtype(torch.bfloat16) == "bfloat16"
    assert canonical_dtype("half") == "float16"
    assert config_dtype({"text_config": {"dtype": "bfloat16"}, "dtype": "float32"}) == "bfloat16"
    assert config_dtype({"torch_dtype": "float16"}) == "float16"
    assert config_dtype({}) is None


def test_a_key_error_names_the_shard_index_only_for_the_keys_transformers_reads_there(tmp_path):
    """A KeyError from a sharded target's config ('swiglu', an unknown activation) is not blamed on the index."""
    from eaglectl.runner.hf import load_error

    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    lacking = load_error(str(tmp_path), KeyError("metadata"), [], tmp_path)
    assert lacking is not None and 'has no "metadata"' in str(lacking)
    other = load_error(str(tmp_path), KeyError("swiglu"), [], tmp_path)
    assert other is None or "index" not in str(other)
