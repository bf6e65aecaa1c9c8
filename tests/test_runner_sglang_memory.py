"""Request and KV slots (eaglectl/runner/sglang/memory.py): the limits read from the pools, every slot given back
after each extend (failed or not), and teardown that leaves nothing behind.

The fake SGLang (tests/fakes/sglang_internals.py) follows SGLang's contracts where the runner depends on
them; the modules under test are imported on first use, not while collecting.
"""

from __future__ import annotations

import pytest
from torch import nn

from eaglectl.errors import EaglectlError
from tests.fakes.sglang_internals import (
    assert_matches,
    fake_sglang,
    make_runner,
    padded_batch,
    reference,
    server_args,
)
from tests.helpers import LazyModule

api = LazyModule("eaglectl.runner.sglang.api")
batch = LazyModule("eaglectl.runner.sglang.batch")
engine_mod = LazyModule("eaglectl.runner.sglang.engine")


# ----------------------------------------------------------------------------------------------------------------
# Pool limits


def test_rows_are_held_to_the_models_context_not_the_wider_request_table():
    _, engine = make_runner(context_len=64)
    engine.mr.req_to_token_pool.max_context_len = 64 + 4  # SGLang's table: context + 4 (+ draft tokens)
    assert engine.limits().max_row_tokens == 64
    with pytest.raises(EaglectlError, match="row 0 has 65 tokens; the SGLang runner takes at most 64"):
        batch.plan_extends([65], engine.limits())


# ----------------------------------------------------------------------------------------------------------------
# Slots returned


def test_kv_slots_are_returned_after_every_call():
    runner, engine = make_runner(max_total_tokens=64)
    runner.set_aux_layers([1, 3, 5])
    before = runner.pool_state()
    assert before == (8, 64)
    for i in range(1000):
        ids, mask, _ = padded_batch([3 + i % 5, 2], seed=i)
        runner.forward_eagle3(ids, mask)
        assert runner.pool_state() == before
    assert engine.mr.log[-1]["free_kv"] == 64 - (3 + 999 % 5) - 2  # the slots were really taken during the extend


def test_slots_are_returned_when_an_extend_fails_and_a_single_rank_stays_usable():
    runner, engine = make_runner()
    runner.set_aux_layers([1, 3, 5])
    working = engine.mr.forward

    def failing(fb):
        assert engine.pool_state() == (6, 4096 - 8)  # slots taken for the extend ...
        raise RuntimeError("kernel failed\n" + "pages of compiler output\n" * 50)

    engine.mr.forward = failing
    ids, mask, rows = padded_batch([4, 4])
    with pytest.raises(EaglectlError) as info:
        runner.forward_eagle3(ids, mask)
    assert str(info.value) == "SGLang's forward failed: RuntimeError: kernel failed"  # one line, SGLang's first
    assert "EAGLECTL_DEBUG=1" in info.value.hint and isinstance(info.value.__cause__, RuntimeError)
    assert runner.pool_state() == (8, 4096)  # ... and given back
    engine.mr.forward = working  # one rank: nothing can be left half-way in a collective, so it goes on
    logits, aux = runner.forward_eagle3(ids, mask)
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 4)


# ----------------------------------------------------------------------------------------------------------------
# Teardown


def test_close_is_idempotent_and_final():
    destroyed = []
    runner, engine = make_runner(destroyed=destroyed)
    runner.close()
    runner.close()
    engine.close()
    assert destroyed == [1] and engine.mr is None and runner.model is None
    ids, mask, _ = padded_batch([2])
    with pytest.raises(RuntimeError, match="closed"):
        runner.forward_eagle3(ids, mask)
    with pytest.raises(RuntimeError, match="closed"):
        runner.set_aux_layers([1, 2, 3])


def test_a_failed_start_tears_down_what_it_built():
    destroyed = []
    sg = fake_sglang(destroyed=destroyed)
    sg = api.SGLangClasses(**{**sg.__dict__, "LogitsProcessor": nn.Identity})  # nothing to wrap
    spec = engine_mod.RankSpec(server_args=server_args(), nccl_port=1)
    with pytest.raises(EaglectlError, match="has no LogitsProcessor to wrap"):
        engine_mod.SGLangRankEngine(rank=0, spec=spec, sg=sg)
    assert destroyed == [1]
