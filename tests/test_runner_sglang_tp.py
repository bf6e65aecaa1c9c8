"""Tensor-parallel orchestration (eaglectl/runner/sglang/tp.py): remote ranks on threads over the real worker loop
and in spawned processes, then the SGLang runner over several fake ranks.

The fake SGLang (tests/fakes/sglang_internals.py) follows SGLang's contracts where the runner depends on
them; the modules under test are imported on first use, not while collecting.
"""

from __future__ import annotations

import pytest

from eaglectl.runner.sglang.tp import ProcessRankWorker, RankFailure, RankGroup
from tests.fakes.ranks import EchoEngine, ThreadWorker
from tests.fakes.sglang_internals import (
    assert_matches,
    engine_factory,
    fake_sglang,
    padded_batch,
    reference,
    server_args,
)
from tests.helpers import LazyModule

engine_mod = LazyModule("eaglectl.runner.sglang.engine")
runner_mod = LazyModule("eaglectl.runner.sglang.runner")


# ----------------------------------------------------------------------------------------------------------------
# Rank orchestration


@pytest.fixture
def echo_log():
    EchoEngine.log = []
    return EchoEngine.log


def test_remote_ranks_start_before_rank_0_and_every_call_reaches_every_rank(echo_log):
    group = RankGroup.start(EchoEngine, {}, 3, worker_factory=ThreadWorker)
    # Rank 0 is built after the remote ranks were started: NCCL init blocks until every rank joins.
    assert echo_log.index(("start", 0)) > max(echo_log.index(("spawn", 1)), echo_log.index(("spawn", 2)))
    assert group.call("add", 5) == 5  # rank 0's result
    assert sorted(e for e in echo_log if e[0] == "add") == [("add", 0, 5), ("add", 1, 5), ("add", 2, 5)]
    group.close()
    group.close()
    assert sorted(e for e in echo_log if e[0] == "close") == [("close", 0), ("close", 1), ("close", 2)]
    with pytest.raises(RuntimeError, match="closed"):
        group.call("add", 1)


def test_a_remote_failure_names_the_rank_and_tears_the_group_down(echo_log):
    group = RankGroup.start(EchoEngine, {}, 3, worker_factory=ThreadWorker)
    with pytest.raises(RankFailure, match="rank 2 failed in fail_on") as info:
        group.call("fail_on", 2)
    assert "ValueError: rank 2 says no" in str(info.value)
    assert group.closed and group.local.closed == 1
    assert all(w.stopped for w in group.workers)


@pytest.mark.parametrize("debug", [False, True])
def test_a_remote_user_error_comes_back_as_its_message_and_hint(echo_log, monkeypatch, debug):
    monkeypatch.setenv("EAGLECTL_DEBUG", "1" if debug else "0")
    group = RankGroup.start(EchoEngine, {}, 2, worker_factory=ThreadWorker)
    with pytest.raises(RankFailure) as info:
        group.call("refuse_on", 1)
    text = str(info.value)
    assert "rank 1 failed in refuse_on:\nrank 1 refuses these settings\nhint: use triton" in text or debug
    assert ("Traceback" in text) is debug  # a user-facing error needs no traceback unless asked for


def test_a_local_failure_stops_the_remote_ranks(echo_log):
    group = RankGroup.start(EchoEngine, {}, 2, worker_factory=ThreadWorker)
    with pytest.raises(ValueError, match="rank 0 says no"):
        group.call("fail_on", 0)
    assert group.closed and group.workers[0].stopped


def test_a_rank_that_cannot_start_fails_the_start(echo_log):
    with pytest.raises(RankFailure, match="rank 1 failed to start") as info:
        RankGroup.start(EchoEngine, {"fail_start": 1}, 3, worker_factory=ThreadWorker)
    assert "RuntimeError: rank 1 cannot start" in str(info.value)
    assert ("close", 0) in echo_log  # rank 0 was released again


def test_spawned_process_ranks(echo_log):
    group = RankGroup.start(EchoEngine, {}, 2)
    assert isinstance(group.workers[0], ProcessRankWorker)
    assert group.call("add", 7) == 7
    with pytest.raises(RankFailure, match="rank 1 failed in fail_on"):
        group.call("fail_on", 1)
    assert group.closed


# ----------------------------------------------------------------------------------------------------------------
# The runner over several ranks


def test_tensor_parallel_runner_runs_identical_extends_on_every_rank():
    spec = engine_mod.RankSpec(server_args=server_args(tp_size=2, max_running_requests=2), nccl_port=4321)
    group = RankGroup.start(engine_factory(), spec, 2, worker_factory=ThreadWorker)
    runner = runner_mod.SGLangTargetRunner.from_group(group)
    assert runner.tp_size == 2
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([4, 4, 2], seed=7)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert runner.last_extend_count == 2  # request table of 2: split, identically on both ranks
    local = group.local
    assert local.mr.init_kwargs == {"gpu_id": 0, "tp_rank": 0, "tp_size": 2, "nccl_port": 4321}
    assert_matches(logits, aux, rows, reference(local.model, rows, [1, 3, 5]), 4)
    runner.close()
    runner.close()
    assert group.closed and local.mr is None


def test_tensor_parallel_ranks_see_the_same_calls():
    engines = {}

    def factory(*, rank, spec):
        engines[rank] = engine_mod.SGLangRankEngine(rank=rank, spec=spec, sg=fake_sglang())
        return engines[rank]

    spec = engine_mod.RankSpec(server_args=server_args(tp_size=3, max_total_tokens=8), nccl_port=1)
    group = RankGroup.start(factory, spec, 3, worker_factory=ThreadWorker)
    runner = runner_mod.SGLangTargetRunner.from_group(group)
    runner.set_aux_layers([0, 2, 4])
    ids, mask, _ = padded_batch([5, 5, 3], seed=9)
    runner.forward_eagle3(ids, mask)
    logs = [[(e["reqs"], e["ids"]) for e in engines[r].mr.log] for r in range(3)]
    assert logs[0] == logs[1] == logs[2] and len(logs[0]) == 2
    assert [engines[r].mr.init_kwargs["tp_rank"] for r in range(3)] == [0, 1, 2]
    assert [engines[r].mr.init_kwargs["gpu_id"] for r in range(3)] == [0, 1, 2]
    assert engines[1].aux_layers == engines[2].aux_layers == [0, 2, 4]
    runner.close()
    assert all(engines[r].mr is None for r in range(3))
