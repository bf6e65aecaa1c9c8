"""All-position logits and aux capture (eaglectl/runner/sglang/forward.py): SGLang's logits maths for every
position, the fast path into the output, the wrapped logits processor and the sink it writes into.

The fake SGLang (tests/fakes/sglang_internals.py) follows SGLang's contracts where the runner depends on
them; the modules under test are imported on first use, not while collecting.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests.fakes.sglang_internals import (
    VPAD,
    FakeLlama,
    FakeLogitsProcessor,
    H,
    L,
    V,
    make_runner,
    padded_batch,
)
from tests.helpers import LazyModule

forward = LazyModule("eaglectl.runner.sglang.forward")


# ----------------------------------------------------------------------------------------------------------------
# Pieces and aux order


def test_token_pieces_merge_full_rows_and_cut_to_chunks():
    # Rows 0..2 full (S=4) are contiguous in the flat [B*S] output: one piece.
    assert forward.token_pieces([0, 1, 2], [4, 4, 4], 4) == [(0, 0, 12)]
    # A short row breaks the run: its successor starts at the next row boundary.
    assert forward.token_pieces([0, 1, 2], [4, 2, 4], 4) == [(0, 0, 6), (6, 8, 4)]
    # A second extend's rows are numbered from 0 in its own flat outputs.
    assert forward.token_pieces([3, 5], [4, 4, 4, 3, 0, 4], 4) == [(0, 12, 3), (3, 20, 4)]
    assert forward.token_pieces([0, 1], [4, 4], 4, chunk=3) == [(0, 0, 3), (3, 3, 3), (6, 6, 2)]


def test_aux_capture_order_keeps_the_callers_order():
    assert forward.aux_capture_order([5, 1, 3]) == ([1, 3, 5], [2, 0, 1])
    assert forward.aux_capture_order([1, 3, 5]) == ([1, 3, 5], [0, 1, 2])


# ----------------------------------------------------------------------------------------------------------------
# Logits maths


def lp_and_head(*, vocab=V, rows=VPAD, scale=None, softcap=None, dtype=torch.float32):
    gen = torch.Generator().manual_seed(1)
    lp = FakeLogitsProcessor(SimpleNamespace(vocab_size=vocab), scale, softcap)
    head = nn.Linear(H, rows, bias=False).to(dtype)
    head.weight.data = torch.randn(rows, H, generator=gen).to(dtype)
    head.requires_grad_(False)  # as SGLang's weights are
    hidden = torch.randn(6, H, generator=gen).to(dtype)
    return lp, head, hidden


def test_logits_slice_off_vocab_padding():
    lp, head, hidden = lp_and_head()
    logits = forward.compute_logits(lp, hidden, head)
    assert logits.shape == (6, V)
    torch.testing.assert_close(logits, (hidden @ head.weight.t())[:, :V])


def test_logit_scale_then_softcapping():
    lp, head, hidden = lp_and_head(scale=0.5, softcap=2.0)
    raw = (hidden @ head.weight.t())[:, :V]
    want = torch.tanh(raw * 0.5 / 2.0) * 2.0
    torch.testing.assert_close(forward.compute_logits(lp, hidden, head), want)
    assert float(forward.compute_logits(lp, hidden * 100, head).abs().max()) <= 2.0  # capped


def test_negative_or_missing_softcap_is_off():
    lp, head, hidden = lp_and_head(softcap=-1.0)
    torch.testing.assert_close(forward.compute_logits(lp, hidden, head), (hidden @ head.weight.t())[:, :V])


def test_tensor_parallel_shards_are_gathered_before_the_slice():
    lp, head, hidden = lp_and_head()
    full = head.weight.data.clone()
    shard = nn.Linear(H, VPAD // 2, bias=False)
    shard.weight.data = full[: VPAD // 2].clone()
    lp.do_tensor_parallel_all_gather = True
    other = hidden @ full[VPAD // 2:].t()
    gathered = forward.compute_logits(lp, hidden, shard, gather=lambda t: torch.cat([t, other], dim=-1))
    torch.testing.assert_close(gathered, (hidden @ full.t())[:, :V])
    with pytest.raises(RuntimeError, match="no all-gather"):
        forward.compute_logits(lp, hidden, shard)


def test_cast_happens_before_softcapping():
    lp, head, hidden = lp_and_head(softcap=3.0, dtype=torch.bfloat16)
    out = forward.compute_logits(lp, hidden, head, dtype=torch.float32)
    raw = (hidden @ head.weight.t())[:, :V].float()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tanh(raw / 3.0) * 3.0)


def test_direct_path_multiplies_into_the_output_and_matches():
    lp, head, hidden = lp_and_head(rows=V, scale=0.25, softcap=1.5)
    out = torch.full((6, V), float("nan"))
    ptr = out.data_ptr()
    assert forward.direct_matmul_possible(lp, head, out, hidden)
    forward.write_logits(lp, hidden, head, out)
    assert out.data_ptr() == ptr
    torch.testing.assert_close(out, forward.compute_logits(lp, hidden, head))


def test_direct_path_only_when_it_is_exact():
    lp, head, hidden = lp_and_head()  # padded vocab: must slice
    assert not forward.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    lp, head, hidden = lp_and_head(rows=V)
    assert forward.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    assert not forward.direct_matmul_possible(lp, head, torch.empty(6, V, dtype=torch.bfloat16), hidden)  # cast
    assert not forward.direct_matmul_possible(lp, head, None, hidden)  # nothing to write (ranks > 0)
    lp.do_tensor_parallel_all_gather = True
    assert not forward.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    lp.do_tensor_parallel_all_gather = False
    lp.use_fp32_lm_head = True
    assert not forward.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    lp.use_fp32_lm_head = False
    head.quant_method = type("Fp8LinearMethod", (), {})()
    assert not forward.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    head.quant_method = type("UnquantizedEmbeddingMethod", (), {})()
    assert forward.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)


def test_write_logits_generic_path_and_collective_only_rank():
    lp, head, hidden = lp_and_head(softcap=2.0)
    out = torch.zeros(6, V)
    forward.write_logits(lp, hidden, head, out)
    torch.testing.assert_close(out, forward.compute_logits(lp, hidden, head))
    forward.write_logits(lp, hidden, head, None)  # ranks > 0: computed (for the gather) and dropped


# ----------------------------------------------------------------------------------------------------------------
# The wrapper and its sink


def test_wrapper_is_stock_without_a_sink_and_writes_every_position_with_one():
    model = FakeLlama(SimpleNamespace(num_hidden_layers=L, hidden_size=H, vocab_size=V))
    wrappers = forward.wrap_logits_processors(model, FakeLogitsProcessor)
    assert len(wrappers) == 1 and model.logits_processor is wrappers[0]
    assert model.logits_processor.vocab_size == V  # attributes still read through
    assert forward.wrap_logits_processors(model, FakeLogitsProcessor) == []  # not wrapped twice
    ids = torch.tensor([1, 2, 3, 4, 5])
    fb = SimpleNamespace(extend_seq_lens=[3, 2])
    assert model(ids, torch.tensor([0, 1, 2, 0, 1]), fb) == "stock"
    assert wrappers[0].inner.stock_calls == 1

    model.set_eagle3_layers_to_capture([1, 3, 4])
    seq_len, batch = 4, 3
    logits, aux = torch.full((batch * seq_len, V), -7.0), torch.full((batch * seq_len, 3 * H), -7.0)
    sink = forward.ExtendSink(group=[0, 2], lengths=[3, 0, 2], seq_len=seq_len, logits=logits, aux=aux,
                              aux_order=[2, 0, 1])
    wrappers[0].sink = sink
    model(ids, torch.tensor([0, 1, 2, 0, 1]), fb)
    assert sink.calls == 1 and wrappers[0].inner.stock_calls == 1
    inputs, outputs = model.layers(ids, torch.tensor([0, 1, 2, 0, 1]), [3, 2])
    want_logits = forward.compute_logits(wrappers[0].inner, outputs[-1], model.lm_head)
    want_aux = torch.cat([outputs[4], outputs[1], outputs[3]], dim=-1)  # ids [4, 1, 3] -> captures in layer order
    torch.testing.assert_close(logits[0:3], want_logits[0:3])
    torch.testing.assert_close(logits[8:10], want_logits[3:5])
    torch.testing.assert_close(aux[0:3], want_aux[0:3])
    torch.testing.assert_close(aux[8:10], want_aux[3:5])
    assert (logits[3:8] == -7).all() and (logits[10:] == -7).all()  # other rows untouched


def test_sink_refuses_a_mismatched_extend():
    model = FakeLlama(SimpleNamespace(num_hidden_layers=L, hidden_size=H, vocab_size=V))
    sink = forward.ExtendSink(group=[0], lengths=[3], seq_len=3, logits=torch.zeros(3, V), aux=torch.zeros(3, 3 * H),
                              aux_order=[0, 1, 2])
    with pytest.raises(RuntimeError, match="4 hidden states for 3 tokens"):
        sink.consume(model.logits_processor, torch.zeros(4, H), model.lm_head, None)
    with pytest.raises(RuntimeError, match="captured 1 aux hidden state"):
        sink.consume(model.logits_processor, torch.zeros(3, H), model.lm_head, [torch.zeros(3, H)])


def test_a_broken_wrapper_contract_inside_the_forward_keeps_its_traceback():
    runner, engine = make_runner()
    runner.set_aux_layers([1, 3, 5])
    wrapper = engine.wrappers[0]
    real = wrapper.forward

    def short(input_ids, hidden_states, lm_head, logits_metadata, aux_hidden_states=None, *a, **k):
        return real(input_ids, hidden_states[:-1], lm_head, logits_metadata, aux_hidden_states, *a, **k)

    wrapper.forward = short
    ids, mask, _ = padded_batch([4, 4])
    with pytest.raises(forward.ExtendContractError, match="7 hidden states for 8 tokens"):  # a bug, not a user error
        runner.forward_eagle3(ids, mask)
