"""The SGLang target runner on a GPU against the Hugging Face reference (deselected by default: `-m gpu`).

Tiny random Llamas are built inside the tests (plain, tied embeddings, and a vocab SGLang pads to a multiple of
64). Runners are built one at a time and closed before the next: SGLang keeps process-wide distributed state.
Set EAGLECTL_GPU_REPORT=<file> to get the measured differences as JSON lines.

Also a script: `python tests/test_sglang_runner_gpu.py make-model DIR` writes the tiny plain Llama to DIR (the
CLI probe in the GPU run uses it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

AUX_IDS = [5, 1, 3]  # deliberately not in layer order
NUM_LAYERS = 8
MODELS = {
    "plain": {"vocab_size": 1024, "tie_word_embeddings": False},
    "tied": {"vocab_size": 1024, "tie_word_embeddings": True},
    "padded-vocab": {"vocab_size": 1000, "tie_word_embeddings": False},  # SGLang pads it to 1024
}
# bf16 engines drift apart by about a percent over a deep model; these are the probe's defaults.
REL_TOL = 5e-2
MIN_TOP1 = 0.90
RUNNER_KW = {"dtype": "bfloat16", "attention_backend": "triton", "sampling_backend": "pytorch",
             "disable_cuda_graph": True, "max_total_tokens": 65536}


def make_tiny_llama(path: Path, *, vocab_size: int = 1024, tie_word_embeddings: bool = False, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=NUM_LAYERS, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=64, vocab_size=vocab_size, max_position_embeddings=1024,
                      tie_word_embeddings=tie_word_embeddings, initializer_range=0.05, rms_norm_eps=1e-5,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(str(path))
    return path


def _skip_without_gpu_stack():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("sglang")
    pytest.importorskip("transformers")
    return torch


def report(name: str, **values) -> None:
    print(f"[{name}] {json.dumps(values)}")
    path = os.environ.get("EAGLECTL_GPU_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"test": name, **values}) + "\n")


def rows(batch_lengths, seq_len, vocab, seed=0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(batch_lengths), seq_len, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(batch_lengths):
        ids[i, :n] = torch.randint(0, vocab, (n,), generator=gen)
        mask[i, :n] = 1
    return ids, mask


def diff_stats(a, b) -> dict:
    a, b = a.float(), b.float()
    d = (a - b).abs()
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()),
            "rel_mean": float(d.mean() / b.abs().mean().clamp_min(1e-12))}


def compare(name, out, ref, mask, hidden) -> dict:
    real = mask.bool()
    stats = {"logits": diff_stats(out[0][real], ref[0][real])}
    for j, k in enumerate(AUX_IDS):
        sl = slice(j * hidden, (j + 1) * hidden)
        stats[f"aux_layer_{k}"] = diff_stats(out[1][real][:, sl], ref[1][real][:, sl])
    stats["top1_agreement"] = float((out[0][real].argmax(-1) == ref[0][real].argmax(-1)).float().mean())
    report(name, **stats)
    for key, s in stats.items():
        if key != "top1_agreement":
            assert s["rel_mean"] <= REL_TOL, f"{key}: {s}"
    assert stats["top1_agreement"] >= MIN_TOP1
    return stats


def hf_outputs(path, ids, mask):
    """The reference run (and its backend batch) on the GPU, moved to the CPU."""
    from eaglectl.runner.contract import Eagle3TargetBackend
    from eaglectl.runner.hf import HFTargetRunner

    runner = HFTargetRunner(str(path), dtype="bfloat16", device="cuda")
    try:
        backend = Eagle3TargetBackend(runner, AUX_IDS)
        logits, aux = runner.forward_eagle3(ids.cuda(), mask.cuda())
        batch = backend.build(ids.cuda(), mask.cuda())
        emb = runner.input_embedding_weight()
        return ((logits.cpu(), aux.cpu()), {k: v.cpu() for k, v in vars(batch).items()}, emb.cpu())
    finally:
        runner.close()


@pytest.mark.parametrize("kind", list(MODELS))
def test_parity_with_hf_one_extend_and_close(kind, tmp_path):
    torch = _skip_without_gpu_stack()
    from eaglectl.runner.contract import Eagle3TargetBackend
    from eaglectl.runner.sglang import SGLangTargetRunner

    path = make_tiny_llama(tmp_path / kind, **MODELS[kind])
    vocab = MODELS[kind]["vocab_size"]
    ids, mask = rows([64, 37, 5, 1], 64, vocab, seed=1)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    runner = SGLangTargetRunner(str(path), **RUNNER_KW)
    try:
        assert runner.api is not None and runner.api.shape in ("0.5.15+", "0.5.9/0.5.12", "mixed")
        backend = Eagle3TargetBackend(runner, AUX_IDS)
        pools = runner.pool_state()
        logits, aux = runner.forward_eagle3(ids, mask)
        assert runner.last_extend_count == 1  # the whole batch in one extend
        assert runner.pool_state() == pools  # KV slots and request slots given back
        assert logits.shape == (4, 64, vocab) and aux.shape == (4, 64, 3 * 256)
        assert logits.is_cuda and logits.dtype == torch.bfloat16 and aux.dtype == torch.bfloat16
        assert not logits[~mask.bool().cuda()].any()  # padded positions are zeros
        batch = backend.build(ids, mask)
        emb = runner.input_embedding_weight()
        assert emb.shape == (vocab, 256)
        out = (logits.cpu(), aux.cpu())
        sgl_batch = {k: v.cpu() for k, v in vars(batch).items()}
        emb = emb.cpu()
        in_use = torch.cuda.memory_allocated()
    finally:
        runner.close()
        runner.close()  # idempotent
    torch.cuda.synchronize()
    freed = torch.cuda.memory_allocated()
    report(f"memory[{kind}]", base=base, in_use=in_use, after_close=freed)
    assert freed - base < 64 * 2**20, "close() must give the GPU memory back"

    ref, hf_batch, hf_emb = hf_outputs(path, ids, mask)
    stats = compare(f"parity[{kind}]", out, ref, mask, 256)
    torch.testing.assert_close(emb, hf_emb, rtol=0, atol=0)  # the same weights, padding rows dropped

    # The shift contract end to end, through the engine-agnostic backend, engine vs reference.
    real = mask.bool()
    shifted_real = real[:, 1:]
    assert torch.equal(sgl_batch["input_ids"], hf_batch["input_ids"])
    assert torch.equal(sgl_batch["loss_mask"], hf_batch["loss_mask"])
    torch.testing.assert_close(sgl_batch["target_logits"][:, :-1], out[0][:, 1:])
    assert not sgl_batch["target_logits"][:, -1].any()
    tl = diff_stats(sgl_batch["target_logits"][:, :-1][shifted_real], hf_batch["target_logits"][:, :-1][shifted_real])
    ah = diff_stats(sgl_batch["aux_hidden_states"][real], hf_batch["aux_hidden_states"][real])
    report(f"backend[{kind}]", target_logits=tl, aux_hidden_states=ah)
    assert tl["rel_mean"] <= REL_TOL and ah["rel_mean"] <= REL_TOL
    assert stats["top1_agreement"] >= MIN_TOP1


def test_split_extends_pool_reuse_and_rebuild(tmp_path):
    torch = _skip_without_gpu_stack()
    from eaglectl.runner.sglang import SGLangTargetRunner

    path = make_tiny_llama(tmp_path / "plain", **MODELS["plain"])
    ids, mask = rows([60, 50, 40, 30, 20], 60, 1024, seed=2)
    kw = {**RUNNER_KW, "max_total_tokens": 128, "max_running_requests": 2}
    runner = SGLangTargetRunner(str(path), **kw)
    try:
        runner.set_aux_layers(AUX_IDS)
        limits = runner.limits
        logits, aux = runner.forward_eagle3(ids, mask)
        extends = runner.last_extend_count
        assert limits.max_requests <= 2 and limits.max_tokens <= 128
        assert extends >= 3  # 200 tokens over a 128-token pool and a 2-request table
        out = (logits.cpu(), aux.cpu())

        # 1,000 calls: the pools come back to the same state and no memory accumulates.
        small_ids, small_mask = rows([16, 9], 16, 1024, seed=3)
        runner.forward_eagle3(small_ids, small_mask)
        torch.cuda.synchronize()
        pools, mem = runner.pool_state(), torch.cuda.memory_allocated()
        for _ in range(1000):
            runner.forward_eagle3(small_ids, small_mask)
        torch.cuda.synchronize()
        grown = torch.cuda.memory_allocated() - mem
        report("kv-reuse", extends_for_split_batch=extends, limits=vars(limits), pools=list(pools),
               pools_after_1000=list(runner.pool_state()), memory_growth_bytes=grown)
        assert runner.pool_state() == pools
        assert grown <= 1 * 2**20
    finally:
        runner.close()
    ref, _, _ = hf_outputs(path, ids, mask)
    compare("parity[split-extends]", out, ref, mask, 256)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make-model":
        print(make_tiny_llama(Path(sys.argv[2])))
    else:
        sys.exit(f"usage: {sys.argv[0]} make-model DIR")
