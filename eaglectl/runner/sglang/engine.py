"""One tensor-parallel rank: a standalone SGLang `ModelRunner` (no scheduler, no tokenizer, no HTTP server) with
its logits processors wrapped, and the loop that runs the planned extends into the `[B, S, *]` outputs.

`RankGroup` (tp.py) builds one of these per rank from a picklable `RankSpec` and calls the same methods on all of
them in the same order, so every rank runs identical extends (each one a sequence of NCCL collectives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eaglectl.errors import EaglectlError
from eaglectl.runner.contract import text_config
from eaglectl.runner.sglang.api import SGLangClasses, accepted_kwargs, load_sglang, sglang_errors
from eaglectl.runner.sglang.batch import ExtendLimits, build_forward_batch, make_req
from eaglectl.runner.sglang.forward import (
    ExtendContractError,
    ExtendSink,
    aux_capture_order,
    wrap_logits_processors,
)
from eaglectl.runner.sglang.memory import NoPrefixCache, clear_pools, extend_limits, pool_state, teardown
from eaglectl.runner.sglang.settings import FORWARD_HINT, START_HINT


@dataclass
class RankSpec:
    """Everything a rank needs to build its engine; pickled to the spawned ranks."""

    server_args: Any  # sglang ServerArgs, built once in the parent so every rank makes the same decisions
    nccl_port: int
    logits_dtype: str | None = None
    max_requests_per_extend: int | None = None
    max_tokens_per_extend: int | None = None


def build_rank_engine(*, rank: int, spec: RankSpec) -> SGLangRankEngine:
    """The factory `RankGroup` calls on every rank (module level so spawned ranks can unpickle it)."""
    return SGLangRankEngine(rank=rank, spec=spec)


class SGLangRankEngine:
    """One tensor-parallel rank: a standalone SGLang ModelRunner plus the extend loop.

    `sg` (the SGLang classes) defaults to the installed SGLang; tests pass fakes.
    """

    def __init__(self, *, rank: int, spec: RankSpec, sg: SGLangClasses | None = None) -> None:
        sg = sg if sg is not None else load_sglang()
        self._sg = sg
        self.rank = rank
        self.spec = spec
        self.mr: Any = None
        self.model: Any = None
        self.wrappers: list[Any] = []
        self.aux_layers: list[int] | None = None
        self.aux_order: list[int] = []
        self._calls = 0
        self.extends = 0  # extends run by the last forward (for tests and benchmarks)
        try:
            self._start(sg, rank, spec)
        except BaseException:
            self.close()  # leave no process group behind: a later build in this process must still work
            raise

    def _start(self, sg: SGLangClasses, rank: int, spec: RankSpec) -> None:
        import torch

        sa = spec.server_args
        self.tp_size = int(getattr(sa, "tp_size", 1))
        gpu_id = int(getattr(sa, "base_gpu_id", 0)) + rank * int(getattr(sa, "gpu_id_step", 1))
        ep_size = int(getattr(sa, "ep_size", 1) or 1)
        kwargs = dict(mem_fraction_static=sa.mem_fraction_static, gpu_id=gpu_id,
                      tp_rank=rank, tp_size=self.tp_size, moe_ep_rank=rank // max(1, self.tp_size // ep_size),
                      moe_ep_size=ep_size, pp_rank=0, pp_size=1, nccl_port=spec.nccl_port, server_args=sa)
        # An attention backend this install lacks, out of memory, an unreadable model config.
        with sglang_errors("SGLang could not start the target", START_HINT):
            kwargs["model_config"] = sg.ModelConfig.from_server_args(sa)
            self.mr = sg.ModelRunner(**accepted_kwargs(sg.ModelRunner.__init__, kwargs))
            if sg.api.staged_init:
                self.mr.alloc_memory_pool()
                self.mr.init_attention_backends()
                self.mr.init_cuda_graphs()
        self.model = self.mr.model
        if not callable(getattr(self.model, "set_eagle3_layers_to_capture", None)):
            raise EaglectlError(f"SGLang's {type(self.model).__name__} cannot capture EAGLE-3 aux hidden states "
                                f"(no set_eagle3_layers_to_capture)")
        self.wrappers = wrap_logits_processors(self.model, sg.LogitsProcessor)
        if not self.wrappers:
            raise EaglectlError(f"SGLang's {type(self.model).__name__} has no LogitsProcessor to wrap")
        cfg = text_config(self.model.config)
        self.num_layers, self.hidden_size = int(cfg.num_hidden_layers), int(cfg.hidden_size)
        inner = self.wrappers[0].inner
        self.vocab_size = int(inner.vocab_size)
        self.device, self.model_dtype = _model_device_dtype(self.model)
        lm_dtype = torch.float32 if getattr(inner, "use_fp32_lm_head", False) else self.model_dtype
        self.logits_dtype = getattr(torch, spec.logits_dtype) if spec.logits_dtype else lm_dtype
        self.gather = None
        if getattr(inner, "do_tensor_parallel_all_gather", False):
            if getattr(inner, "use_attn_tp_group", False):
                raise EaglectlError("the SGLang target runner does not support enable_dp_lm_head")
            from sglang.srt.distributed import tensor_model_parallel_all_gather

            self.gather = lambda t: tensor_model_parallel_all_gather(t, dim=-1)
        self._sampling = sg.SamplingParams(**accepted_kwargs(sg.SamplingParams,
                                                             {"temperature": 0, "max_new_tokens": 1}))
        # Fixed once the pools exist: read here, not on every extend.
        self.page_size = int(getattr(sa, "page_size", 1) or 1)
        self._tree_cache: NoPrefixCache | None = NoPrefixCache(
            self.mr.req_to_token_pool, self.mr.token_to_kv_pool_allocator, self.page_size, self.mr.device)
        self._forward_batch_extra = dict(sg.api.forward_batch_extra)

    def limits(self) -> ExtendLimits:
        """The request table, KV pool and row-width limits of one extend (after the pools were cleared)."""
        clear_pools(self.mr)
        return extend_limits(self.mr, self.page_size, max_requests_per_extend=self.spec.max_requests_per_extend,
                             max_tokens_per_extend=self.spec.max_tokens_per_extend)

    # -- calls run on every rank ------------------------------------------------------------------------------

    def set_aux_layers(self, layers: Sequence[int]) -> None:
        """Capture the outputs of decoder layers `layers` (eaglectl's convention; already validated).

        `set_eagle3_layers_to_capture(ids)` stores ids + 1 and captures `hidden + residual` *before* each of
        those layers, i.e. the output of layer id: the same convention, so the ids pass through unchanged.
        """
        capture, order = aux_capture_order(layers)
        self.model.set_eagle3_layers_to_capture(capture)
        self.aux_layers = list(layers)
        self.aux_order = order

    def forward(self, rows: Sequence[Sequence[int]], seq_len: int, plan: list[list[int]]) -> Any:
        """Run the planned extends; on rank 0 the re-padded (logits [B, S, V], aux [B, S, len(ids)*H])."""
        import torch

        if self.aux_layers is None:
            raise RuntimeError("set_aux_layers must run before forward")
        lengths = [len(r) for r in rows]
        batch = len(rows)
        logits = aux = None
        if self.rank == 0:
            logits = torch.empty(batch, seq_len, self.vocab_size, dtype=self.logits_dtype, device=self.device)
            aux = torch.empty(batch, seq_len, len(self.aux_layers) * self.hidden_size, dtype=self.model_dtype,
                              device=self.device)
        flat_logits = logits.view(batch * seq_len, -1) if logits is not None else None
        flat_aux = aux.view(batch * seq_len, -1) if aux is not None else None
        with torch.no_grad():
            for group in plan:
                sink = ExtendSink(group=group, lengths=lengths, seq_len=seq_len, logits=flat_logits, aux=flat_aux,
                                  aux_order=self.aux_order, gather=self.gather)
                self._extend([rows[i] for i in group], sink)
            if self.rank == 0:
                assert logits is not None and aux is not None  # rank 0 made them above
                for i, n in enumerate(lengths):  # padded positions are unspecified; zeros keep masked sums finite
                    if n < seq_len:
                        logits[i, n:].zero_()
                        aux[i, n:].zero_()
        self.extends = len(plan)
        return (logits, aux) if self.rank == 0 else None

    def embedding_weight(self) -> Any:
        """Rank 0: the input embedding [V, H] (vocab shards gathered, padding rows dropped)."""
        get = getattr(self.model, "get_input_embeddings", None)
        embed = get() if callable(get) else self.model.model.embed_tokens
        weight = embed.weight
        if self.tp_size > 1:
            from sglang.srt.distributed import tensor_model_parallel_all_gather

            weight = tensor_model_parallel_all_gather(weight.contiguous(), dim=0)
        return weight[: self.vocab_size] if self.rank == 0 else None

    def pool_state(self) -> tuple[int, int]:
        """(free request slots, free KV slots) right now: both return to full after every forward."""
        return pool_state(self.mr)

    def close(self) -> None:
        """Drop the ModelRunner and SGLang's process groups, then give the cached GPU memory back."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for w in self.wrappers:
            w.sink = None
        self.wrappers = []
        self.mr = None
        self.model = None
        self._tree_cache = None  # it holds the request and KV pools
        teardown(getattr(self._sg, "destroy_distributed", None))

    # -- one extend --------------------------------------------------------------------------------------------

    def _extend(self, rows: Sequence[Sequence[int]], sink: ExtendSink) -> None:
        sg, mr = self._sg, self.mr
        self._calls += 1
        reqs = [make_req(sg, f"eaglectl-{self._calls}-{j}", ids, self._sampling) for j, ids in enumerate(rows)]
        for w in self.wrappers:
            w.sink = sink
        try:
            fb = build_forward_batch(sg, mr, reqs, tree_cache=self._tree_cache,
                                     forward_batch_extra=self._forward_batch_extra)
            # A backend that starts but cannot run here, out of memory, a kernel error; not the runner's own checks.
            with sglang_errors("SGLang's forward failed", FORWARD_HINT, keep=(ExtendContractError,)):
                mr.forward(fb)
            if sink.calls != 1:
                raise EaglectlError(f"SGLang's forward went through the wrapped logits processor {sink.calls} "
                                    f"time(s) instead of once ({type(self.model).__name__})")
        finally:
            for w in self.wrappers:
                w.sink = None
            clear_pools(self.mr)


def _model_device_dtype(model: Any) -> tuple[Any, Any]:
    """Where the (rank's) model lives and its floating dtype: the outputs are allocated to match."""
    import torch

    for p in model.parameters():
        if p.dtype.is_floating_point:
            return p.device, p.dtype
    return torch.device("cuda", torch.cuda.current_device()), torch.bfloat16
