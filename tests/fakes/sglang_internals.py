"""Fakes of SGLang's internals, and helpers that drive the SGLang target runner over them on CPU.

The fakes follow SGLang's contracts where the runner depends on them (a request table and a KV pool that refuse
over-allocation, per-request positions, aux captured *before* layer id+1, a logits processor that is replaced),
so row cutting, batch splitting, re-padding, the logits maths and the rank orchestration are checked for real.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import torch
from torch import nn

from eaglectl.runner.sglang.tp import RankGroup
from tests.helpers import LazyModule

api = LazyModule("eaglectl.runner.sglang.api")
engine_mod = LazyModule("eaglectl.runner.sglang.engine")
runner_mod = LazyModule("eaglectl.runner.sglang.runner")

V, VPAD, H, L = 10, 16, 8, 7


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
    sg_api = api.detect_api(model_runner=runner, req=req, schedule_batch=schedule, forward_batch=FakeForwardBatch)
    return api.SGLangClasses(
        api=sg_api, ServerArgs=None, PortArgs=None,
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
        spec = engine_mod.RankSpec(server_args=server_args(**sa_kw), nccl_port=1234, **(spec_kw or {}))
        engine = engine_mod.SGLangRankEngine(rank=0, spec=spec, sg=sg)
    finally:
        FakeModelRunner.model_kwargs = {}
    return runner_mod.SGLangTargetRunner.from_group(RankGroup(engine), api=sg.api), engine


def engine_factory(staged=True):
    def factory(*, rank, spec):
        return engine_mod.SGLangRankEngine(rank=rank, spec=spec, sg=fake_sglang(staged=staged))
    return factory


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
