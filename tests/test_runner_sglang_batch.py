"""From padded rows to extends (eaglectl/runner/sglang/batch.py): each row's real ids, token ids checked against
the vocab, and the plan of extends that the request table and KV pool allow.

The fake SGLang (tests/fakes/sglang_internals.py) follows SGLang's contracts where the runner depends on
them; the modules under test are imported on first use, not while collecting.
"""

from __future__ import annotations

import pytest
import torch

from eaglectl.errors import EaglectlError
from eaglectl.runner.contract import row_lengths
from tests.fakes.sglang_internals import (
    make_runner,
    padded_batch,
)
from tests.helpers import LazyModule

batch = LazyModule("eaglectl.runner.sglang.batch")


# ----------------------------------------------------------------------------------------------------------------
# Rows


def test_row_lengths_require_right_padding():
    assert row_lengths(torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])) == [2, 3, 0]
    with pytest.raises(ValueError, match="right-padded"):
        row_lengths(torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match="right-padded"):
        row_lengths(torch.tensor([[1, 0, 1]]))


def test_row_lengths_take_any_mask_dtype():
    assert row_lengths(torch.tensor([[True, False], [True, True]])) == [1, 2]
    assert row_lengths(torch.tensor([[1.0, 1.0, 0.0]])) == [2]
    assert row_lengths(torch.tensor([[2, 0, 0]])) == [1]  # any non-zero is a real token
    assert row_lengths(torch.ones(2, 3, dtype=torch.long)[:, ::2]) == [2, 2]  # a strided view
    assert row_lengths(torch.zeros(0, 5, dtype=torch.long)) == []


def test_token_ids_outside_the_vocab_are_refused_only_where_real():
    ids = torch.tensor([[1, 2, -100], [3, 4, 5]])
    batch.check_token_ids(ids, [2, 3], vocab=10)  # -100 is padding: ignored
    with pytest.raises(ValueError, match=r"row 1: token id 12 is outside the target's vocab \[0, 10\)"):
        batch.check_token_ids(torch.tensor([[1, 2, -100], [3, 12, 5]]), [2, 3], vocab=10)
    with pytest.raises(ValueError, match="row 0: token id -1"):
        batch.check_token_ids(torch.tensor([[-1, 2]]), [1], vocab=10)


def test_token_rows_copy_each_rows_real_ids_whatever_the_tensor_layout():
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12], [2**40, 1, 2, 3]], dtype=torch.int64)
    assert [r.tolist() for r in batch.token_rows(ids, [4, 2, 1])] == [[5, 6, 7, 8], [9, 10], [2**40]]
    # int32 ids, a non-contiguous view, an empty row: copied through, never aliased
    strided = ids.t().contiguous().t()[:, 1:].to(torch.int32)
    rows = batch.token_rows(strided, [3, 0, 1])
    assert [r.tolist() for r in rows] == [[6, 7, 8], [], [1]]
    assert all(r.typecode == "q" for r in rows)
    assert batch.token_rows(torch.zeros(0, 4, dtype=torch.int64), []) == []
    with pytest.raises(ValueError, match="length 5 outside"):
        batch.token_rows(ids, [5, 0, 0])  # never read into the next row


# ----------------------------------------------------------------------------------------------------------------
# Plans


def test_plan_fits_everything_in_one_extend_when_it_can():
    limits = batch.ExtendLimits(max_requests=8, max_tokens=100, max_row_tokens=64)
    assert batch.plan_extends([5, 0, 7, 3], limits) == [[0, 2, 3]]  # the empty row is left out


def test_plan_splits_over_the_request_table():
    limits = batch.ExtendLimits(max_requests=2, max_tokens=1000, max_row_tokens=64)
    assert batch.plan_extends([4, 4, 4, 4, 4], limits) == [[0, 1], [2, 3], [4]]


def test_plan_splits_over_the_kv_pool():
    limits = batch.ExtendLimits(max_requests=8, max_tokens=10, max_row_tokens=64)
    assert batch.plan_extends([6, 4, 3, 8, 2], limits) == [[0, 1], [2], [3, 4]]


def test_plan_counts_whole_pages():
    limits = batch.ExtendLimits(max_requests=8, max_tokens=32, max_row_tokens=64, page_size=16)
    assert batch.row_cost(17, 16) == 32
    assert batch.plan_extends([1, 15, 17], limits) == [[0, 1], [2]]


def test_plan_names_the_setting_for_a_row_that_never_fits():
    with pytest.raises(EaglectlError, match="row 1 has 11 tokens but one extend holds at most 10") as info:
        batch.plan_extends([3, 11], batch.ExtendLimits(max_requests=8, max_tokens=10, max_row_tokens=64))
    assert "mem_fraction_static" in info.value.hint
    with pytest.raises(EaglectlError, match="at most 8 per row"):
        batch.plan_extends([9], batch.ExtendLimits(max_requests=8, max_tokens=100, max_row_tokens=8))


def test_a_row_the_pool_cannot_hold_is_a_clear_error():
    runner, _ = make_runner(max_total_tokens=4)
    ids, mask, _ = padded_batch([3, 5])
    with pytest.raises(EaglectlError, match="row 1 has 5 tokens but one extend holds at most 4"):
        runner.forward_eagle3(ids, mask)
