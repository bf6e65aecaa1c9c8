"""The request table and KV pool of a standalone ModelRunner: how much one extend may hold, giving every slot
back after each extend, and tearing down what a ModelRunner set up process-wide so another can start.

Nothing is cached between calls (every call is independent), so after each extend both pools are full again;
`pool_state` lets callers and tests check exactly that.
"""

from __future__ import annotations

import contextlib
from typing import Any

from eaglectl.runner.sglang.batch import ExtendLimits


class NoPrefixCache:
    """A tree cache that caches nothing: allocation only (what SGLang's own one-batch benchmark uses)."""

    disable = True

    def __init__(self, req_to_token_pool: Any, allocator: Any, page_size: int, device: Any) -> None:
        self.req_to_token_pool = req_to_token_pool
        self.token_to_kv_pool_allocator = allocator
        self.page_size = page_size
        self.device = device

    def supports_swa(self) -> bool:
        return False

    def supports_mamba(self) -> bool:
        return False

    def is_chunk_cache(self) -> bool:
        return False

    def is_tree_cache(self) -> bool:
        return True

    def evict(self, *args: Any, **kwargs: Any) -> None:
        return None

    def evictable_size(self) -> int:
        return 0

    def protected_size(self) -> int:
        return 0

    def pretty_print(self) -> None:
        return None

    def available_and_evictable_str(self) -> str:
        return f"available tokens: {self.token_to_kv_pool_allocator.available_size()}, evictable: 0"


def clear_pools(mr: Any) -> None:
    """Give every request slot and KV slot back (after each extend, failed or not)."""
    mr.req_to_token_pool.clear()
    mr.token_to_kv_pool_allocator.clear()


def pool_state(mr: Any) -> tuple[int, int]:
    """(free request slots, free KV slots) right now: both return to full after every forward."""
    return (int(mr.req_to_token_pool.available_size()),
            int(mr.token_to_kv_pool_allocator.available_size()))


def extend_limits(mr: Any, page_size: int, *, max_requests_per_extend: int | None = None,
                  max_tokens_per_extend: int | None = None) -> ExtendLimits:
    """The request table, KV pool and row-width limits of one extend, read from pools that were just cleared,
    then held to the caller's caps."""
    req_pool = mr.req_to_token_pool
    allocator = mr.token_to_kv_pool_allocator
    page = page_size
    max_requests = int(req_pool.available_size() if callable(getattr(req_pool, "available_size", None))
                       else req_pool.size)
    running = getattr(mr, "max_running_requests", None)
    if isinstance(running, int) and running > 0:
        max_requests = min(max_requests, running)
    max_tokens = int(allocator.available_size())
    if page > 1:
        max_tokens -= page  # the paged allocator's slack for the last partial page
    # SGLang's request table is a few slots wider than the model's context (room for draft tokens); rows are
    # held to the context itself, as SGLang's own request checks do: rotary caches end there.
    widths = [w for w in (getattr(req_pool, "max_context_len", None),
                          getattr(mr.model_config, "context_len", None)) if isinstance(w, int) and w > 0]
    width = min(widths) if widths else max_tokens
    if max_requests_per_extend:
        max_requests = min(max_requests, max_requests_per_extend)
    if max_tokens_per_extend:
        max_tokens = min(max_tokens, max_tokens_per_extend)
    return ExtendLimits(max_requests=max(1, max_requests), max_tokens=max_tokens,
                        max_row_tokens=int(width), page_size=page)


def teardown(destroy_distributed: Any = None) -> None:
    """Drop SGLang's process groups (`destroy_distributed`: a replacement for tests' fakes), then give the
    cached GPU memory back. The caller drops its references to the ModelRunner first."""
    import gc

    if callable(destroy_distributed):
        destroy_distributed()
    else:
        destroy_sglang_distributed()
    gc.collect()
    empty_cuda_cache()


def destroy_sglang_distributed() -> None:
    """Tear down the process-wide state a ModelRunner set up (process groups, the MoE expert-location
    singleton that refuses to be set twice), so another runner can start in this process."""
    try:
        from sglang.srt.distributed import parallel_state as ps
    except ImportError:
        return
    for name in ("destroy_model_parallel", "destroy_distributed_environment"):
        fn = getattr(ps, name, None)
        if callable(fn):
            with contextlib.suppress(Exception):  # best effort: the memory is what matters
                fn()
    with contextlib.suppress(Exception):
        from sglang.srt.eplb import expert_location

        if hasattr(expert_location, "_global_expert_location_metadata"):
            expert_location._global_expert_location_metadata = None


def empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
