"""The SGLang target runner on CPU: its SGLang-independent logic driven through fakes of SGLang's classes.

The fakes follow SGLang's contracts where the runner depends on them (a request table and a KV pool that refuse
over-allocation, per-request positions, aux captured *before* layer id+1, a logits processor that is replaced),
so row cutting, batch splitting, re-padding, the logits maths and the rank orchestration are checked for real.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import threading
from multiprocessing import Pipe
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from torch import nn

from eaglectl.errors import EaglectlError, MissingDependencyError
from eaglectl.runner.contract import Eagle3TargetBackend
from eaglectl.runner.tp import ProcessRankWorker, RankFailure, RankGroup, worker_main


class _LazyRunnerModule:
    """`eaglectl.runner.sglang_runner`, imported on first use: collecting this file must not import it (other
    tests check that the CLI never does)."""

    def __getattr__(self, name):
        if name.startswith("_") and name != "_Sglang":  # pytest's collection probes must not import it
            raise AttributeError(name)
        import importlib

        return getattr(importlib.import_module("eaglectl.runner.sglang_runner"), name)


sr = _LazyRunnerModule()

ROOT = Path(__file__).resolve().parents[1]
V, VPAD, H, L = 10, 16, 8, 7

# ----------------------------------------------------------------------------------------------------------------
# Fakes of SGLang's classes


class FakeLogitsProcessor(nn.Module):
    def __init__(self, config, logit_scale=None, softcap=None):
        super().__init__()
        self.vocab_size = config.vocab_size
        self.logit_scale = logit_scale
        self.final_logit_softcapping = softcap
        self.do_tensor_parallel_all_gather = False
        self.use_fp32_lm_head = False
        self.stock_calls = 0

    def _compute_lm_head(self, hidden, lm_head, embedding_bias=None):
        return torch.matmul(hidden.to(lm_head.weight.dtype), lm_head.weight.t())

    def forward(self, input_ids, hidden_states, lm_head, logits_metadata, aux_hidden_states=None):
        self.stock_calls += 1
        return "stock"


class FakeLlama(nn.Module):
    """Layers that mix each token with the mean of its own request's earlier tokens (so a batching mistake that
    lets requests see each other, or positions that do not restart, changes the outputs)."""

    def __init__(self, config, *, tied=False, logit_scale=None, softcap=None, dtype=torch.float32):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.config = config
        self.embed_tokens = nn.Embedding(VPAD, H)
        self.embed_tokens.weight.data = torch.randn(VPAD, H, generator=gen)
        if tied:
            self.lm_head = self.embed_tokens
        else:
            self.lm_head = nn.Linear(H, VPAD, bias=False)
            self.lm_head.weight.data = torch.randn(VPAD, H, generator=gen)
        self.mix = nn.Parameter(torch.randn(L, H, generator=gen))
        self.logits_processor = FakeLogitsProcessor(config, logit_scale, softcap)
        self.layers_to_capture: list[int] = []
        self.capture_aux_hidden_states = False
        self.to(dtype).requires_grad_(False)

    def set_eagle3_layers_to_capture(self, layer_ids=None):
        self.capture_aux_hidden_states = True
        self.layers_to_capture = [k + 1 for k in layer_ids]

    def get_input_embeddings(self):
        return self.embed_tokens

    def layers(self, input_ids, positions, seq_lens):
        """Every layer's output, and each layer's input (what SGLang captures)."""
        h = self.embed_tokens(input_ids) + positions[:, None].to(self.mix.dtype) * 0.01
        inputs, outputs = [], []
        for i in range(L):
            inputs.append(h)
            means = []
            for seg in torch.split(h, seq_lens):
                counts = torch.arange(1, seg.shape[0] + 1, dtype=seg.dtype)[:, None]
                means.append(seg.cumsum(0) / counts)
            h = torch.tanh(h * (1 + 0.1 * self.mix[i])) + 0.5 * torch.cat(means)
            outputs.append(h)
        return inputs, outputs

    def forward(self, input_ids, positions, forward_batch):
        inputs, outputs = self.layers(input_ids, positions, forward_batch.extend_seq_lens)
        aux = [inputs[i] for i in range(L) if i in self.layers_to_capture] if self.capture_aux_hidden_states else None
        return self.logits_processor(input_ids, outputs[-1], self.lm_head, forward_batch, aux)


class FakeReqPool:
    def __init__(self, size, max_context_len):
        self.size, self.max_context_len = size, max_context_len
        self.clear()

    def available_size(self):
        return len(self.free)

    def alloc(self, reqs):
        if len(reqs) > len(self.free):
            return None
        for r in reqs:
            r.req_pool_idx = self.free.pop()
        return [r.req_pool_idx for r in reqs]

    def clear(self):
        self.free = list(range(1, self.size + 1))


class FakeAllocator:
    def __init__(self, size):
        self.size = size
        self.clear()

    def available_size(self):
        return self.free

    def alloc(self, n):
        if n > self.free:
            return None
        self.free -= n
        return torch.arange(n)

    def clear(self):
        self.free = self.size


class FakeModelRunner:
    model_kwargs: ClassVar[dict] = {}

    def __init__(self, model_config, mem_fraction_static, gpu_id, tp_rank, tp_size, moe_ep_rank, moe_ep_size,
                 pp_rank, pp_size, nccl_port, server_args):
        self.init_kwargs = dict(gpu_id=gpu_id, tp_rank=tp_rank, tp_size=tp_size, nccl_port=nccl_port)
        self.server_args = server_args
        self.model_config = model_config
        self.device = "cpu"
        self.model = FakeLlama(SimpleNamespace(num_hidden_layers=L, hidden_size=H, vocab_size=V),
                               **self.model_kwargs)
        self.max_running_requests = server_args.max_running_requests
        self.log: list[dict] = []
        self.req_to_token_pool = self.token_to_kv_pool_allocator = None
        self._make_pools()

    def _make_pools(self):
        sa = self.server_args
        self.req_to_token_pool = FakeReqPool(sa.max_running_requests, self.model_config.context_len)
        self.token_to_kv_pool_allocator = FakeAllocator(sa.max_total_tokens)

    def forward(self, fb):
        assert fb.capture_hidden_mode == "full"
        out = self.model(fb.input_ids, fb.positions, fb)
        self.log.append({"reqs": len(fb.extend_seq_lens), "tokens": int(fb.input_ids.shape[0]),
                         "free_kv": self.token_to_kv_pool_allocator.available_size(),
                         "ids": fb.input_ids.tolist()})
        return SimpleNamespace(logits_output=out, can_run_graph=False)


class FakeStagedModelRunner(FakeModelRunner):
    """0.5.15+: the pools, attention backends and (eager) graph runner come after the constructor."""

    def _make_pools(self):
        self.stages: list[str] = []

    def alloc_memory_pool(self, memory_pool_config=None):
        self.stages.append("alloc_memory_pool")
        FakeModelRunner._make_pools(self)

    def init_attention_backends(self):
        self.stages.append("init_attention_backends")

    def init_cuda_graphs(self, capture_decode_cuda_graph=True):
        self.stages.append("init_cuda_graphs")


class FakeReq:
    def __init__(self, rid, origin_input_text, origin_input_ids, sampling_params, return_logprob=False):
        self.rid, self.origin_input_ids, self.sampling_params = rid, origin_input_ids, sampling_params
        self.req_pool_idx = None

    def ids(self):
        raise NotImplementedError


class FakeReq15(FakeReq):
    def set_extend_range(self, start, end):
        self.extend_range = (start, end)

    def ids(self):
        return list(self.full_untruncated_fill_ids[: self.extend_range[1]])


class FakeReq09(FakeReq):
    def set_extend_input_len(self, n):
        self.extend_input_len = n

    def ids(self):
        return list(self.fill_ids[: self.extend_input_len])


class FakeScheduleBatch15:
    staged_input = True

    @classmethod
    def init_new(cls, reqs, req_to_token_pool, token_to_kv_pool_allocator, tree_cache, model_config,
                 enable_overlap, spec_algorithm):
        b = cls()
        b.reqs, b.req_to_token_pool, b.tree_cache = reqs, req_to_token_pool, tree_cache
        b.device = "cpu"
        return b

    def prepare_for_extend(self):
        ids = [r.ids() for r in self.reqs]
        if self.req_to_token_pool.alloc(self.reqs) is None:
            raise RuntimeError("alloc_req_slots runs out of memory")
        if self.tree_cache.token_to_kv_pool_allocator.alloc(sum(map(len, ids))) is None:
            raise RuntimeError("Out of memory. Try to lower your batch size.")
        self.extend_lens = [len(x) for x in ids]
        flat = torch.tensor([t for x in ids for t in x], dtype=torch.int64)
        if self.staged_input:
            self.input_ids, self.prefill_input_ids_cpu = None, flat
        else:
            self.input_ids = flat


class FakeScheduleBatch09(FakeScheduleBatch15):
    staged_input = False

    def get_model_worker_batch(self):
        return SimpleNamespace(input_ids=self.input_ids, extend_lens=self.extend_lens)


class FakeForwardBatch:
    @classmethod
    def init_new(cls, batch, model_runner):
        fb = cls()
        fb.input_ids = batch.input_ids
        fb.extend_seq_lens = list(batch.extend_lens)
        fb.positions = torch.cat([torch.arange(n) for n in batch.extend_lens])
        fb.capture_hidden_mode = None
        return fb


class FakeSamplingParams:
    def __init__(self, temperature=1.0, max_new_tokens=128):
        self.temperature, self.max_new_tokens = temperature, max_new_tokens


def fake_sglang(*, staged=True, destroyed=None):
    req = FakeReq15 if staged else FakeReq09
    schedule = FakeScheduleBatch15 if staged else FakeScheduleBatch09
    runner = FakeStagedModelRunner if staged else FakeModelRunner
    api = sr.detect_api(model_runner=runner, req=req, schedule_batch=schedule, forward_batch=FakeForwardBatch)
    return sr._Sglang(
        api=api, ServerArgs=None, PortArgs=None,
        ModelConfig=SimpleNamespace(from_server_args=lambda sa: SimpleNamespace(context_len=sa.context_len)),
        ModelRunner=runner, Req=req, ScheduleBatch=schedule, ForwardBatch=FakeForwardBatch,
        CaptureHiddenMode=SimpleNamespace(FULL="full"), SamplingParams=FakeSamplingParams,
        SpeculativeAlgorithm=SimpleNamespace(NONE="none"), LogitsProcessor=FakeLogitsProcessor,
        destroy_distributed=(lambda: destroyed.append(1)) if destroyed is not None else (lambda: None))


def server_args(**kw):
    base = dict(tp_size=1, mem_fraction_static=0.5, page_size=1, base_gpu_id=0, gpu_id_step=1, ep_size=1,
                max_running_requests=8, max_total_tokens=4096, context_len=64)
    base.update(kw)
    return SimpleNamespace(**base)


def make_runner(*, staged=True, destroyed=None, spec_kw=None, model_kwargs=None, **sa_kw):
    sg = fake_sglang(staged=staged, destroyed=destroyed)
    FakeModelRunner.model_kwargs = model_kwargs or {}
    try:
        spec = sr.RankSpec(server_args=server_args(**sa_kw), nccl_port=1234, **(spec_kw or {}))
        engine = sr.SGLangRankEngine(rank=0, spec=spec, sg=sg)
    finally:
        FakeModelRunner.model_kwargs = {}
    return sr.SGLangTargetRunner.from_group(RankGroup(engine), api=sg.api), engine


def reference(model, rows, ids_order, *, scale=None, softcap=None):
    """Per-row forwards (one request each) of the fake model: what the batched runner must reproduce."""
    out = []
    for row in rows:
        t = torch.tensor(row, dtype=torch.int64)
        _, outputs = model.layers(t, torch.arange(len(row)), [len(row)])
        logits = (outputs[-1] @ model.lm_head.weight.t())[:, :V]
        if scale is not None:
            logits = logits * scale
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        out.append((logits, torch.cat([outputs[k] for k in ids_order], dim=-1)))
    return out


def padded_batch(lengths, seq_len=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    seq_len = seq_len or max(lengths)
    ids = torch.zeros(len(lengths), seq_len, dtype=torch.int64)
    mask = torch.zeros(len(lengths), seq_len, dtype=torch.int64)
    rows = []
    for i, n in enumerate(lengths):
        row = torch.randint(0, V, (n,), generator=gen)
        ids[i, :n], mask[i, :n] = row, 1
        rows.append(row.tolist())
    return ids, mask, rows


def assert_matches(logits, aux, rows, ref, seq_len):
    for i, row in enumerate(rows):
        n = len(row)
        torch.testing.assert_close(logits[i, :n], ref[i][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(aux[i, :n], ref[i][1], rtol=1e-5, atol=1e-5)
        assert not logits[i, n:].any() and not aux[i, n:].any()  # padded positions are zeros
    assert logits.shape == (len(rows), seq_len, V) and aux.shape == (len(rows), seq_len, 3 * H)


# ----------------------------------------------------------------------------------------------------------------
# Import isolation


def test_importing_the_runner_pulls_in_neither_sglang_nor_torch():
    code = ("import sys, eaglectl.runner.sglang_runner, eaglectl.runner.tp; "
            "print(sorted(m for m in ('sglang', 'torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("path", ["eaglectl/runner/sglang_runner.py", "eaglectl/runner/tp.py"])
def test_no_module_level_heavy_import(path):
    tree = ast.parse((ROOT / path).read_text())
    names = []
    for node in tree.body:  # module level only; imports inside functions are the point
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    assert not [n for n in names if n.split(".")[0] in ("sglang", "torch", "transformers", "numpy")]


# ----------------------------------------------------------------------------------------------------------------
# dtype and ServerArgs


@pytest.mark.parametrize(("given", "want"), [
    (None, "auto"), ("auto", "auto"), (torch.bfloat16, "bfloat16"), ("bf16", "bfloat16"),
    ("torch.bfloat16", "bfloat16"), (torch.float16, "float16"), ("half", "float16"), ("FP16", "float16"),
    (torch.float32, "float32"), ("float", "float32"), ("fp32", "float32"),
])
def test_dtype_maps_to_sglang_strings(given, want):
    assert sr.sglang_dtype_str(given) == want


@pytest.mark.parametrize("given", [torch.float64, torch.int8, torch.float8_e4m3fn, "fp8", "int4", "bfloat"])
def test_unsupported_dtype_is_rejected_clearly(given):
    with pytest.raises(EaglectlError, match=r"not supported by the SGLang engine; use one of auto, bfloat16"):
        sr.sglang_dtype_str(given)


def test_runner_rejects_a_bad_dtype_before_touching_sglang():
    with pytest.raises(EaglectlError, match="'int8' is not supported"):
        sr.SGLangTargetRunner("/nowhere", dtype="int8")


def test_server_args_defaults_and_pass_through_overrides():
    kw = sr.build_server_args_kwargs("/m", dtype=torch.bfloat16, tp_size=2, trust_remote_code=True,
                                     overrides={"mem_fraction_static": 0.3, "attention_backend": "fa3",
                                                "page_size": 16, "dtype": "half"})
    assert kw["model_path"] == "/m" and kw["tp_size"] == 2 and kw["trust_remote_code"] is True
    assert kw["mem_fraction_static"] == 0.3 and kw["attention_backend"] == "fa3" and kw["page_size"] == 16
    assert kw["dtype"] == "float16"  # an override wins, in SGLang's spelling
    assert kw["disable_cuda_graph"] is True and kw["skip_tokenizer_init"] is True
    assert kw["sampling_backend"] == "pytorch" and kw["disable_radix_cache"] is True
    assert sr.build_server_args_kwargs("/m")["attention_backend"] == "triton"
    assert sr.build_server_args_kwargs("/m")["max_total_tokens"] == 131072  # a cap, not 60 % of the GPU in KV
    assert sr.build_server_args_kwargs("/m", overrides={"max_total_tokens": None})["max_total_tokens"] is None
    assert sr.build_server_args_kwargs("/m")["dtype"] == "auto"


@pytest.mark.parametrize(("overrides", "match"), [
    ({"tp_size": 2}, "pass tp_size as an argument"), ({"pp_size": 2}, "pipeline parallelism"),
    ({"enable_dp_attention": True}, "DP attention"),
])
def test_server_args_refuses_what_the_runner_cannot_do(overrides, match):
    with pytest.raises(EaglectlError, match=match):
        sr.build_server_args_kwargs("/m", overrides=overrides)


def test_missing_sglang_is_exit_code_2():
    import importlib.util

    if importlib.util.find_spec("sglang") is not None:
        pytest.skip("sglang is installed here")
    with pytest.raises(MissingDependencyError, match="sglang is not installed") as info:
        sr.SGLangTargetRunner("/nowhere", dtype="bf16")
    assert info.value.exit_code == 2 and "eaglectl[sglang]" in info.value.hint


# ----------------------------------------------------------------------------------------------------------------
# API shape, by capability


def test_detects_the_0_5_9_shape():
    api = sr.detect_api(model_runner=FakeModelRunner, req=FakeReq09, schedule_batch=FakeScheduleBatch09,
                        forward_batch=FakeForwardBatch, version="0.5.9")
    assert (api.staged_init, api.extend_range, api.worker_batch, api.shape) == (False, False, True, "0.5.9/0.5.12")


def test_detects_the_0_5_15_shape():
    api = sr.detect_api(model_runner=FakeStagedModelRunner, req=FakeReq15, schedule_batch=FakeScheduleBatch15,
                        forward_batch=FakeForwardBatch)
    assert (api.staged_init, api.extend_range, api.worker_batch, api.shape) == (True, True, False, "0.5.15+")
    assert api.forward_batch_extra == ()


def test_detects_a_forward_batch_keyword_it_knows():
    class FB:
        @classmethod
        def init_new(cls, batch, model_runner, return_hidden_states_before_norm):
            return None

    api = sr.detect_api(model_runner=FakeStagedModelRunner, req=FakeReq15, schedule_batch=FakeScheduleBatch15,
                        forward_batch=FB)
    assert api.forward_batch_extra == (("return_hidden_states_before_norm", False),)


def test_unknown_api_shapes_fail_naming_what_is_missing():
    class HalfStaged(FakeModelRunner):
        def alloc_memory_pool(self):
            pass

    class NoExtend:
        def __init__(self, *a, **k):
            pass

    class FB:
        @classmethod
        def init_new(cls, batch, model_runner, mystery_flag):
            return None

    with pytest.raises(sr.SGLangApiError) as info:
        sr.detect_api(model_runner=HalfStaged, req=NoExtend, schedule_batch=object, forward_batch=FB,
                      version="9.9.9")
    msg = str(info.value)
    assert "sglang 9.9.9" in msg
    assert "ModelRunner has alloc_memory_pool but not init_attention_backends, init_cuda_graphs" in msg
    assert "Req has neither set_extend_range" in msg
    assert "ScheduleBatch has no init_new" in msg and "ScheduleBatch has no prepare_for_extend" in msg
    assert "ForwardBatch.init_new needs an argument this runner does not know: mystery_flag" in msg
    assert "0.5.9/0.5.12 and 0.5.15+" in info.value.hint
    assert isinstance(info.value, EaglectlError)


# ----------------------------------------------------------------------------------------------------------------
# Rows, plans, pieces


def test_row_lengths_require_right_padding():
    assert sr.row_lengths(torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])) == [2, 3, 0]
    with pytest.raises(ValueError, match="right-padded"):
        sr.row_lengths(torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match="right-padded"):
        sr.row_lengths(torch.tensor([[1, 0, 1]]))


def test_row_lengths_take_any_mask_dtype():
    assert sr.row_lengths(torch.tensor([[True, False], [True, True]])) == [1, 2]
    assert sr.row_lengths(torch.tensor([[1.0, 1.0, 0.0]])) == [2]
    assert sr.row_lengths(torch.tensor([[2, 0, 0]])) == [1]  # any non-zero is a real token
    assert sr.row_lengths(torch.ones(2, 3, dtype=torch.long)[:, ::2]) == [2, 2]  # a strided view
    assert sr.row_lengths(torch.zeros(0, 5, dtype=torch.long)) == []


def test_token_ids_outside_the_vocab_are_refused_only_where_real():
    ids = torch.tensor([[1, 2, -100], [3, 4, 5]])
    sr.check_token_ids(ids, [2, 3], vocab=10)  # -100 is padding: ignored
    with pytest.raises(ValueError, match=r"row 1: token id 12 is outside the target's vocab \[0, 10\)"):
        sr.check_token_ids(torch.tensor([[1, 2, -100], [3, 12, 5]]), [2, 3], vocab=10)
    with pytest.raises(ValueError, match="row 0: token id -1"):
        sr.check_token_ids(torch.tensor([[-1, 2]]), [1], vocab=10)


def test_token_rows_copy_each_rows_real_ids_whatever_the_tensor_layout():
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12], [2**40, 1, 2, 3]], dtype=torch.int64)
    assert [r.tolist() for r in sr.token_rows(ids, [4, 2, 1])] == [[5, 6, 7, 8], [9, 10], [2**40]]
    # int32 ids, a non-contiguous view, an empty row: copied through, never aliased
    strided = ids.t().contiguous().t()[:, 1:].to(torch.int32)
    rows = sr.token_rows(strided, [3, 0, 1])
    assert [r.tolist() for r in rows] == [[6, 7, 8], [], [1]]
    assert all(r.typecode == "q" for r in rows)
    assert sr.token_rows(torch.zeros(0, 4, dtype=torch.int64), []) == []
    with pytest.raises(ValueError, match="length 5 outside"):
        sr.token_rows(ids, [5, 0, 0])  # never read into the next row


def test_accepted_keywords_follow_the_signature_and_are_cached():
    def narrow(rid, origin_input_ids):
        return rid

    def wide(rid, **kwargs):
        return rid

    import importlib

    accepted = importlib.import_module("eaglectl.runner.sglang_runner")._accepted
    given = {"rid": "a", "origin_input_ids": [1], "new_in_a_later_release": 1}
    assert accepted(narrow, given) == {"rid": "a", "origin_input_ids": [1]}
    assert accepted(wide, given) == given
    assert accepted(narrow, {"rid": "b"}) == {"rid": "b"}  # second call: the cached signature


def test_plan_fits_everything_in_one_extend_when_it_can():
    limits = sr.ExtendLimits(max_requests=8, max_tokens=100, max_row_tokens=64)
    assert sr.plan_extends([5, 0, 7, 3], limits) == [[0, 2, 3]]  # the empty row is left out


def test_plan_splits_over_the_request_table():
    limits = sr.ExtendLimits(max_requests=2, max_tokens=1000, max_row_tokens=64)
    assert sr.plan_extends([4, 4, 4, 4, 4], limits) == [[0, 1], [2, 3], [4]]


def test_plan_splits_over_the_kv_pool():
    limits = sr.ExtendLimits(max_requests=8, max_tokens=10, max_row_tokens=64)
    assert sr.plan_extends([6, 4, 3, 8, 2], limits) == [[0, 1], [2], [3, 4]]


def test_plan_counts_whole_pages():
    limits = sr.ExtendLimits(max_requests=8, max_tokens=32, max_row_tokens=64, page_size=16)
    assert sr.row_cost(17, 16) == 32
    assert sr.plan_extends([1, 15, 17], limits) == [[0, 1], [2]]


def test_plan_names_the_setting_for_a_row_that_never_fits():
    with pytest.raises(EaglectlError, match="row 1 has 11 tokens but one extend holds at most 10") as info:
        sr.plan_extends([3, 11], sr.ExtendLimits(max_requests=8, max_tokens=10, max_row_tokens=64))
    assert "mem_fraction_static" in info.value.hint
    with pytest.raises(EaglectlError, match="at most 8 per row"):
        sr.plan_extends([9], sr.ExtendLimits(max_requests=8, max_tokens=100, max_row_tokens=8))


def test_token_pieces_merge_full_rows_and_cut_to_chunks():
    # Rows 0..2 full (S=4) are contiguous in the flat [B*S] output: one piece.
    assert sr.token_pieces([0, 1, 2], [4, 4, 4], 4) == [(0, 0, 12)]
    # A short row breaks the run: its successor starts at the next row boundary.
    assert sr.token_pieces([0, 1, 2], [4, 2, 4], 4) == [(0, 0, 6), (6, 8, 4)]
    # A second extend's rows are numbered from 0 in its own flat outputs.
    assert sr.token_pieces([3, 5], [4, 4, 4, 3, 0, 4], 4) == [(0, 12, 3), (3, 20, 4)]
    assert sr.token_pieces([0, 1], [4, 4], 4, chunk=3) == [(0, 0, 3), (3, 3, 3), (6, 6, 2)]


def test_aux_capture_order_keeps_the_callers_order():
    assert sr.aux_capture_order([5, 1, 3]) == ([1, 3, 5], [2, 0, 1])
    assert sr.aux_capture_order([1, 3, 5]) == ([1, 3, 5], [0, 1, 2])


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
    logits = sr.compute_logits(lp, hidden, head)
    assert logits.shape == (6, V)
    torch.testing.assert_close(logits, (hidden @ head.weight.t())[:, :V])


def test_logit_scale_then_softcapping():
    lp, head, hidden = lp_and_head(scale=0.5, softcap=2.0)
    raw = (hidden @ head.weight.t())[:, :V]
    want = torch.tanh(raw * 0.5 / 2.0) * 2.0
    torch.testing.assert_close(sr.compute_logits(lp, hidden, head), want)
    assert float(sr.compute_logits(lp, hidden * 100, head).abs().max()) <= 2.0  # capped


def test_negative_or_missing_softcap_is_off():
    lp, head, hidden = lp_and_head(softcap=-1.0)
    torch.testing.assert_close(sr.compute_logits(lp, hidden, head), (hidden @ head.weight.t())[:, :V])


def test_tensor_parallel_shards_are_gathered_before_the_slice():
    lp, head, hidden = lp_and_head()
    full = head.weight.data.clone()
    shard = nn.Linear(H, VPAD // 2, bias=False)
    shard.weight.data = full[: VPAD // 2].clone()
    lp.do_tensor_parallel_all_gather = True
    other = hidden @ full[VPAD // 2:].t()
    gathered = sr.compute_logits(lp, hidden, shard, gather=lambda t: torch.cat([t, other], dim=-1))
    torch.testing.assert_close(gathered, (hidden @ full.t())[:, :V])
    with pytest.raises(RuntimeError, match="no all-gather"):
        sr.compute_logits(lp, hidden, shard)


def test_cast_happens_before_softcapping():
    lp, head, hidden = lp_and_head(softcap=3.0, dtype=torch.bfloat16)
    out = sr.compute_logits(lp, hidden, head, dtype=torch.float32)
    raw = (hidden @ head.weight.t())[:, :V].float()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tanh(raw / 3.0) * 3.0)


def test_direct_path_multiplies_into_the_output_and_matches():
    lp, head, hidden = lp_and_head(rows=V, scale=0.25, softcap=1.5)
    out = torch.full((6, V), float("nan"))
    ptr = out.data_ptr()
    assert sr.direct_matmul_possible(lp, head, out, hidden)
    sr.write_logits(lp, hidden, head, out)
    assert out.data_ptr() == ptr
    torch.testing.assert_close(out, sr.compute_logits(lp, hidden, head))


def test_direct_path_only_when_it_is_exact():
    lp, head, hidden = lp_and_head()  # padded vocab: must slice
    assert not sr.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    lp, head, hidden = lp_and_head(rows=V)
    assert sr.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    assert not sr.direct_matmul_possible(lp, head, torch.empty(6, V, dtype=torch.bfloat16), hidden)  # cast
    assert not sr.direct_matmul_possible(lp, head, None, hidden)  # nothing to write (ranks > 0)
    lp.do_tensor_parallel_all_gather = True
    assert not sr.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    lp.do_tensor_parallel_all_gather = False
    lp.use_fp32_lm_head = True
    assert not sr.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    lp.use_fp32_lm_head = False
    head.quant_method = type("Fp8LinearMethod", (), {})()
    assert not sr.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)
    head.quant_method = type("UnquantizedEmbeddingMethod", (), {})()
    assert sr.direct_matmul_possible(lp, head, torch.empty(6, V), hidden)


def test_write_logits_generic_path_and_collective_only_rank():
    lp, head, hidden = lp_and_head(softcap=2.0)
    out = torch.zeros(6, V)
    sr.write_logits(lp, hidden, head, out)
    torch.testing.assert_close(out, sr.compute_logits(lp, hidden, head))
    sr.write_logits(lp, hidden, head, None)  # ranks > 0: computed (for the gather) and dropped


def test_wrapper_is_stock_without_a_sink_and_writes_every_position_with_one():
    model = FakeLlama(SimpleNamespace(num_hidden_layers=L, hidden_size=H, vocab_size=V))
    wrappers = sr.wrap_logits_processors(model, FakeLogitsProcessor)
    assert len(wrappers) == 1 and model.logits_processor is wrappers[0]
    assert model.logits_processor.vocab_size == V  # attributes still read through
    assert sr.wrap_logits_processors(model, FakeLogitsProcessor) == []  # not wrapped twice
    ids = torch.tensor([1, 2, 3, 4, 5])
    fb = SimpleNamespace(extend_seq_lens=[3, 2])
    assert model(ids, torch.tensor([0, 1, 2, 0, 1]), fb) == "stock"
    assert wrappers[0].inner.stock_calls == 1

    model.set_eagle3_layers_to_capture([1, 3, 4])
    seq_len, batch = 4, 3
    logits, aux = torch.full((batch * seq_len, V), -7.0), torch.full((batch * seq_len, 3 * H), -7.0)
    sink = sr.ExtendSink(group=[0, 2], lengths=[3, 0, 2], seq_len=seq_len, logits=logits, aux=aux,
                         aux_order=[2, 0, 1])
    wrappers[0].sink = sink
    model(ids, torch.tensor([0, 1, 2, 0, 1]), fb)
    assert sink.calls == 1 and wrappers[0].inner.stock_calls == 1
    inputs, outputs = model.layers(ids, torch.tensor([0, 1, 2, 0, 1]), [3, 2])
    want_logits = sr.compute_logits(wrappers[0].inner, outputs[-1], model.lm_head)
    want_aux = torch.cat([outputs[4], outputs[1], outputs[3]], dim=-1)  # ids [4, 1, 3] -> captures in layer order
    torch.testing.assert_close(logits[0:3], want_logits[0:3])
    torch.testing.assert_close(logits[8:10], want_logits[3:5])
    torch.testing.assert_close(aux[0:3], want_aux[0:3])
    torch.testing.assert_close(aux[8:10], want_aux[3:5])
    assert (logits[3:8] == -7).all() and (logits[10:] == -7).all()  # other rows untouched


def test_sink_refuses_a_mismatched_extend():
    model = FakeLlama(SimpleNamespace(num_hidden_layers=L, hidden_size=H, vocab_size=V))
    sink = sr.ExtendSink(group=[0], lengths=[3], seq_len=3, logits=torch.zeros(3, V), aux=torch.zeros(3, 3 * H),
                         aux_order=[0, 1, 2])
    with pytest.raises(RuntimeError, match="4 hidden states for 3 tokens"):
        sink.consume(model.logits_processor, torch.zeros(4, H), model.lm_head, None)
    with pytest.raises(RuntimeError, match="captured 1 aux hidden state"):
        sink.consume(model.logits_processor, torch.zeros(3, H), model.lm_head, [torch.zeros(3, H)])


# ----------------------------------------------------------------------------------------------------------------
# The runner over fake SGLang classes (both API shapes)


@pytest.mark.parametrize("staged", [True, False], ids=["0.5.15", "0.5.9"])
def test_one_extend_for_the_whole_batch_matches_per_row_forwards(staged):
    runner, engine = make_runner(staged=staged)
    if staged:
        assert engine.mr.stages == ["alloc_memory_pool", "init_attention_backends", "init_cuda_graphs"]
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([9, 4, 1, 7], seq_len=10)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert runner.last_extend_count == 1 and len(engine.mr.log) == 1
    assert engine.mr.log[0]["reqs"] == 4 and engine.mr.log[0]["tokens"] == 21  # rows cut to their mask
    assert engine.mr.log[0]["ids"] == [t for r in rows for t in r]
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 10)
    assert logits.dtype == torch.float32 and aux.dtype == torch.float32


def test_aux_follows_the_requested_order_not_layer_order():
    runner, engine = make_runner()
    runner.set_aux_layers([5, 0, 2])
    assert engine.model.layers_to_capture == [1, 3, 6]  # SGLang stores ids + 1, sorted here
    ids, mask, rows = padded_batch([6, 3])
    logits, aux = runner.forward_eagle3(ids, mask)
    assert_matches(logits, aux, rows, reference(engine.model, rows, [5, 0, 2]), 6)


def test_defaults_and_validation_of_aux_layers():
    runner, engine = make_runner()
    ids, mask, _ = padded_batch([3])
    runner.forward_eagle3(ids, mask)  # no set_aux_layers: SGLang's defaults for this depth
    assert runner.aux_layer_ids == [1, 2, 3] and engine.aux_layers == [1, 2, 3]
    with pytest.raises(EaglectlError, match="last layer"):
        runner.set_aux_layers([0, 1, L - 1])


def test_batch_larger_than_the_request_table_is_split():
    runner, engine = make_runner(max_running_requests=2)
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([5, 2, 5, 5, 1], seed=3)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert runner.last_extend_count == 3 and [e["reqs"] for e in engine.mr.log] == [2, 2, 1]
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 5)


def test_batch_larger_than_the_kv_pool_is_split():
    runner, engine = make_runner(max_total_tokens=12)
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([8, 4, 6, 6, 12], seed=4)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert [e["tokens"] for e in engine.mr.log] == [12, 12, 12]
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 12)


def test_caps_below_the_pools_split_too():
    runner, engine = make_runner(spec_kw={"max_requests_per_extend": 1})
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([3, 3, 2])
    logits, aux = runner.forward_eagle3(ids, mask)
    assert runner.last_extend_count == 3
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 3)


def test_rows_are_held_to_the_models_context_not_the_wider_request_table():
    _, engine = make_runner(context_len=64)
    engine.mr.req_to_token_pool.max_context_len = 64 + 4  # SGLang's table: context + 4 (+ draft tokens)
    assert engine.limits().max_row_tokens == 64
    with pytest.raises(EaglectlError, match="row 0 has 65 tokens; the SGLang runner takes at most 64"):
        sr.plan_extends([65], engine.limits())


def test_a_row_the_pool_cannot_hold_is_a_clear_error():
    runner, _ = make_runner(max_total_tokens=4)
    ids, mask, _ = padded_batch([3, 5])
    with pytest.raises(EaglectlError, match="row 1 has 5 tokens but one extend holds at most 4"):
        runner.forward_eagle3(ids, mask)


@pytest.mark.parametrize("staged", [True, False], ids=["0.5.15", "0.5.9"])
def test_sglang_failing_to_start_is_one_clear_error(staged, monkeypatch):
    cls = FakeStagedModelRunner if staged else FakeModelRunner

    def missing_kernels(self, *a, **k):
        raise ImportError("cannot import name 'flash_ops' from 'sgl_kernel'")

    monkeypatch.setattr(cls, "init_attention_backends" if staged else "__init__", missing_kernels)
    destroyed = []
    with pytest.raises(EaglectlError, match="SGLang could not start the target: ImportError: cannot import name "
                                            "'flash_ops'") as info:
        make_runner(staged=staged, destroyed=destroyed)
    assert "attention backend" in info.value.hint and "EAGLECTL_DEBUG=1" in info.value.hint
    assert isinstance(info.value.__cause__, ImportError) and destroyed == [1]  # process groups torn down


def test_settings_sglang_refuses_are_one_clear_error(monkeypatch):
    def server_args_refusing(**kw):
        raise ValueError(f"attention backend {kw['attention_backend']!r} is not supported on this device")

    sg = fake_sglang()
    monkeypatch.setattr("eaglectl.runner.sglang_runner.load_sglang",
                        lambda: dataclasses.replace(sg, ServerArgs=server_args_refusing))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(EaglectlError, match="SGLang refused these settings: ValueError: attention backend 'wave' "
                                            "is not supported") as info:
        sr.SGLangTargetRunner("/m", dtype="bf16", attention_backend="wave")
    assert "EAGLECTL_DEBUG=1" in info.value.hint


def test_server_flags_are_typed_by_sglangs_parser_and_only_given_ones_return(fake_server_args_cls):
    got = sr.server_args_from_flags(["--page-size", "16", "--disable-radix-cache", "--cuda-graph-bs", "1", "2",
                                     "--kv-cache-dtype=fp8_e5m2", "--no-enable-metrics", "--quiet-logs"],
                                    fake_server_args_cls)
    assert got == {"page_size": 16, "disable_radix_cache": True, "cuda_graph_bs_decode": [1, 2],
                   "kv_cache_dtype": "fp8_e5m2", "enable_metrics": False, "log_level": "error"}
    # Nothing given, nothing returned: required flags and required groups are not required here.
    assert sr.server_args_from_flags([], fake_server_args_cls) == {}


@pytest.mark.parametrize(("flags", "message"), [
    (["--page", "16"], "unrecognized arguments: --page 16"),  # no abbreviations
    (["--page-size", "x"], "argument --page-size: invalid int value: 'x'"),
    (["--log-level", "debug", "--quiet-logs"], "not allowed with argument --log-level"),
    (["--tokenizer-path", "relative"], "SGLang server flags: AssertionError: --tokenizer-path takes an absolute"),
    (["--config", "x.yaml"], "--config is not a ServerArgs setting (config)"),
    (["--dtype", "float16"], "--dtype cannot be passed to SGLang here: set it with dtype"),
    (["--model", "/m"], "--model-path cannot be passed to SGLang here: set it with the model path"),
])
def test_bad_server_flags_are_one_eaglectl_error(fake_server_args_cls, flags, message):
    with pytest.raises(EaglectlError) as info:
        sr.server_args_from_flags(flags, fake_server_args_cls)
    assert message in str(info.value)
    assert "cannot be passed" in message or "spelled out in full" in info.value.hint


def test_own_options_are_named_when_a_flag_sets_them(fake_server_args_cls):
    with pytest.raises(EaglectlError, match="--page-size cannot be passed to SGLang here: set it with --my-page"):
        sr.server_args_from_flags(["--page-size", "4"], fake_server_args_cls, own_options={"page_size": "--my-page"})


def test_a_broken_wrapper_contract_inside_the_forward_keeps_its_traceback():
    runner, engine = make_runner()
    runner.set_aux_layers([1, 3, 5])
    wrapper = engine.wrappers[0]
    real = wrapper.forward

    def short(input_ids, hidden_states, lm_head, logits_metadata, aux_hidden_states=None, *a, **k):
        return real(input_ids, hidden_states[:-1], lm_head, logits_metadata, aux_hidden_states, *a, **k)

    wrapper.forward = short
    ids, mask, _ = padded_batch([4, 4])
    with pytest.raises(sr.ExtendContractError, match="7 hidden states for 8 tokens"):  # a bug, not a user error
        runner.forward_eagle3(ids, mask)


def test_engine_settings_report_the_resolved_server_args_and_every_override():
    runner, engine = make_runner(attention_backend="fa3", page_size=16, chunked_prefill_size=8192)
    assert runner.engine_settings == {"attention_backend": "fa3", "page_size": 16, "mem_fraction_static": 0.5,
                                      "max_total_tokens": 4096, "max_running_requests": 8,
                                      "disable_cuda_graph": None,
                                      "kv_slots": 4096 - 16, "request_slots": 8, "max_row_tokens": 64}
    runner = sr.SGLangTargetRunner.from_group(runner._group, api=runner.api,
                                              override_keys=("chunked_prefill_size", "page_size"))
    settings = runner.engine_settings
    assert list(settings) == [*sr.REPORTED_SERVER_ARGS, "chunked_prefill_size", "kv_slots", "request_slots",
                              "max_row_tokens"]
    assert settings["chunked_prefill_size"] == 8192
    engine.spec.server_args.chunked_prefill_size = Path("/not/json")  # anything else is reported as text
    assert runner.engine_settings["chunked_prefill_size"] == "/not/json"
    engine.spec.server_args.page_size = (1, 2)  # lists stay lists
    assert runner.engine_settings["page_size"] == [1, 2]


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


def test_sglang_failures_are_named_by_type_and_first_line():
    assert sr.sglang_failure(ValueError("bad\nmore")) == "ValueError: bad"
    assert sr.sglang_failure(MemoryError()) == "MemoryError"
    long = sr.sglang_failure(RuntimeError("x" * 1000), limit=50)
    assert long == "RuntimeError: " + "x" * 47 + "..."


def test_rows_are_checked_before_anything_runs():
    runner, engine = make_runner()
    ids, mask, _ = padded_batch([3, 3])
    with pytest.raises(ValueError, match="right-padded"):
        runner.forward_eagle3(ids, torch.tensor([[0, 1, 1], [1, 1, 1]]))
    bad = ids.clone()
    bad[1, 2] = V
    with pytest.raises(ValueError, match=f"row 1: token id {V} is outside the target's vocab"):
        runner.forward_eagle3(bad, mask)
    with pytest.raises(ValueError, match=r"must both be \[batch, seq_len\]"):
        runner.forward_eagle3(ids[0], mask[0])
    assert engine.mr.log == []


def test_empty_rows_and_padding_only_batches():
    runner, engine = make_runner()
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([0, 3, 0], seq_len=4)
    logits, aux = runner.forward_eagle3(ids, mask)
    assert engine.mr.log[0]["reqs"] == 1
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5]), 4)
    logits, aux = runner.forward_eagle3(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64))
    assert runner.last_extend_count == 0 and not logits.any() and not aux.any()


def test_logit_scale_softcap_and_tied_padded_embeddings_end_to_end():
    runner, engine = make_runner(model_kwargs={"tied": True, "logit_scale": 0.5, "softcap": 4.0})
    runner.set_aux_layers([1, 3, 5])
    ids, mask, rows = padded_batch([5, 3])
    logits, aux = runner.forward_eagle3(ids, mask)
    assert_matches(logits, aux, rows, reference(engine.model, rows, [1, 3, 5], scale=0.5, softcap=4.0), 5)
    emb = runner.input_embedding_weight()
    assert emb.shape == (V, H)  # the padded rows are dropped
    torch.testing.assert_close(emb, engine.model.embed_tokens.weight[:V])


def test_logits_dtype_option():
    runner, _ = make_runner(spec_kw={"logits_dtype": "bfloat16"})
    ids, mask, _ = padded_batch([3])
    logits, aux = runner.forward_eagle3(ids, mask)
    assert logits.dtype == torch.bfloat16 and aux.dtype == torch.float32


def test_shift_contract_through_the_engine_agnostic_backend():
    runner, _ = make_runner()
    backend = Eagle3TargetBackend(runner, [1, 3, 5])
    ids, mask, _ = padded_batch([5, 3])
    logits, aux = runner.forward_eagle3(ids, mask)
    batch = backend.build(ids, mask)
    torch.testing.assert_close(batch.target_logits[:, :-1], logits[:, 1:])
    assert not batch.target_logits[:, -1].any()
    torch.testing.assert_close(batch.aux_hidden_states, aux)
    assert batch.input_ids[:, :-1].tolist() == ids[:, 1:].tolist()
    backend.close()
    backend.close()


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
    sg = sr._Sglang(**{**sg.__dict__, "LogitsProcessor": nn.Identity})  # nothing to wrap
    spec = sr.RankSpec(server_args=server_args(), nccl_port=1)
    with pytest.raises(EaglectlError, match="has no LogitsProcessor to wrap"):
        sr.SGLangRankEngine(rank=0, spec=spec, sg=sg)
    assert destroyed == [1]


# ----------------------------------------------------------------------------------------------------------------
# Tensor-parallel orchestration


class ThreadWorker:
    """A remote rank on a thread, over a real pipe and the real worker loop (`worker_main`)."""

    def __init__(self, rank, factory, spec):
        EchoEngine.log.append(("spawn", rank))
        self.rank = rank
        self._conn, child = Pipe()
        self._thread = threading.Thread(target=worker_main, args=(rank, child, factory, spec), daemon=True)
        self._thread.start()
        self.stopped = False

    def send(self, message):
        self._conn.send(message)

    def recv(self, timeout=None):
        if not self._conn.poll(timeout if timeout is not None else 30):
            raise RankFailure(f"rank {self.rank} did not answer")
        return self._conn.recv()

    def stop(self, timeout=30.0):
        self.stopped = True
        self._thread.join(timeout or 0.1)


class EchoEngine:
    """Records every call; `add` returns a rank-dependent value so the test sees whose result came back."""

    log: ClassVar[list] = []

    def __init__(self, *, rank, spec):
        if spec.get("fail_start") == rank:
            raise RuntimeError(f"rank {rank} cannot start")
        self.rank = rank
        self.closed = 0
        EchoEngine.log.append(("start", rank))

    def add(self, x):
        EchoEngine.log.append(("add", self.rank, x))
        return x + 100 * self.rank

    def fail_on(self, rank):
        if self.rank == rank:
            raise ValueError(f"rank {rank} says no")

    def refuse_on(self, rank):
        if self.rank == rank:
            raise EaglectlError(f"rank {rank} refuses these settings", hint="use triton")

    def close(self):
        self.closed += 1
        EchoEngine.log.append(("close", self.rank))


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


def _engine_factory(staged=True):
    def factory(*, rank, spec):
        return sr.SGLangRankEngine(rank=rank, spec=spec, sg=fake_sglang(staged=staged))
    return factory


def test_tensor_parallel_runner_runs_identical_extends_on_every_rank():
    spec = sr.RankSpec(server_args=server_args(tp_size=2, max_running_requests=2), nccl_port=4321)
    group = RankGroup.start(_engine_factory(), spec, 2, worker_factory=ThreadWorker)
    runner = sr.SGLangTargetRunner.from_group(group)
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
        engines[rank] = sr.SGLangRankEngine(rank=rank, spec=spec, sg=fake_sglang())
        return engines[rank]

    spec = sr.RankSpec(server_args=server_args(tp_size=3, max_total_tokens=8), nccl_port=1)
    group = RankGroup.start(factory, spec, 3, worker_factory=ThreadWorker)
    runner = sr.SGLangTargetRunner.from_group(group)
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
