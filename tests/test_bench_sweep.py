"""Sweep expansion and pruning: what SGLang refuses, fails on or rewrites never launches, and each pruned
configuration says why."""

from __future__ import annotations

import pytest

from tests.helpers import LazyModule

sweep = LazyModule("eaglectl.bench.sweep")


def labels(configs) -> list[str]:
    return [c.label for c in configs]


def test_cross_product_pruned_with_reasons():
    keep, pruned = sweep.expand([1, 3], [1, 4], [2, 4, 8], [])
    assert labels(keep) == ["1,1,2", "1,4,2", "1,4,4", "3,1,4", "3,4,2", "3,4,4", "3,4,8"]
    reasons = {p.config.label: p.reason for p in pruned}
    assert set(reasons) == {"1,1,4", "1,1,8", "1,4,8", "3,1,2", "3,1,8"}
    assert "rewrites it to 1,1,2" in reasons["1,1,4"] and "rewrites it to 3,1,4" in reasons["3,1,8"]
    assert "holds 4 candidate(s)" in reasons["1,4,8"] and "more than 5 draft tokens" in reasons["1,4,8"]


def test_topk1_with_only_wrong_draft_tokens_runs_what_sglang_would():
    keep, pruned = sweep.expand([3, 5], [1], [8], [])
    assert labels(keep) == ["3,1,4", "5,1,6"]
    assert labels(p.config for p in pruned) == ["3,1,8", "5,1,8"]


@pytest.mark.parametrize(("steps", "topk", "limit"), [(1, 1, 2), (3, 1, 4), (1, 4, 5), (2, 4, 21), (3, 2, 11)])
def test_draft_tree_limit(steps, topk, limit):
    """topk candidates at step 1, topk**2 at each later step, plus the root (eagle_utils.organize_draft_results)."""
    assert sweep.max_draft_tokens(steps, topk) == limit
    assert sweep.why_pruned(sweep.SpecConfig(steps, topk, limit)) is None
    assert sweep.why_pruned(sweep.SpecConfig(steps, topk, limit + 1)) is not None


def test_default_draft_tokens_per_topk():
    keep, pruned = sweep.expand([3], [1, 4], None, [])
    assert labels(keep) == ["3,1,4", "3,4,12"] and pruned == []
    keep, _ = sweep.expand([1], [2], None, [])
    assert labels(keep) == ["1,2,3"]


def test_explicit_configs_checked_and_deduplicated():
    configs = [sweep.parse_config(t) for t in ("3,1,4", "5,4,8", "3,1,4", "1,4,9", "2,3,1")]
    keep, pruned = sweep.expand([9], [9], None, configs)
    assert labels(keep) == ["3,1,4", "5,4,8"]
    assert {p.config.label: p.reason.split(":")[0] for p in pruned} == {
        "3,1,4": "listed twice", "1,4,9": "the draft tree of 1 step(s) x topk 4 holds 4 candidate(s)",
        "2,3,1": "draft tokens 1 verifies no drafted token"}


def test_nothing_left_is_an_error():
    with pytest.raises(sweep.SweepError, match="no configuration left"):
        sweep.expand([1], [4], [9], [])


def test_too_many_configs_refused():
    with pytest.raises(sweep.SweepError, match="at most 64"):
        sweep.expand(list(range(1, 70)), [1], None, [])


@pytest.mark.parametrize("text", ["3,1", "3,1,4,5", "a,b,c", "0,1,2", "-1,1,2", "3,,4", "1,1,99999999"])
def test_bad_config_text(text):
    with pytest.raises(sweep.SweepError, match="STEPS,TOPK,DRAFT_TOKENS"):
        sweep.parse_config(text)


@pytest.mark.parametrize("text", ["", "1,,2", "x", "0", "1.5", "-2", "9999999"])
def test_bad_int_lists(text):
    with pytest.raises(sweep.SweepError, match="positive integers"):
        sweep.parse_int_list(text, option="--steps")


def test_int_list_keeps_order_and_drops_duplicates():
    assert sweep.parse_int_list("5, 1,5,3", option="--steps") == [5, 1, 3]
