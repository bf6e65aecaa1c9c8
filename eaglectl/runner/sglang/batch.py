"""From padded rows to SGLang batches: each row's real ids, the plan of extends the pools allow, and the
`Req` / `ScheduleBatch` / `ForwardBatch` of one extend in the shape the installed SGLang expects.

All rows go into one `ScheduleBatch` (cut to their attention-mask length; positions restart per request and
attention is causal per request), or into as few as the KV pool and the request table allow. The planning
functions are pure (unit-tested on CPU); torch is imported inside functions only.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eaglectl.errors import EaglectlError
from eaglectl.runner.contract import tensor_bytes
from eaglectl.runner.sglang.api import SGLangClasses, accepted_kwargs


def token_rows(ids: Any, lengths: Sequence[int]) -> list[array]:
    """Each row's first `lengths[i]` ids as an `array('q')`, copied straight from the tensor's memory.

    Why not `tolist()`: 16 k Python ints per 4x4096 batch, then converted back into SGLang's arrays, cost about
    a millisecond of host time before the first kernel; arrays also pickle compactly to tensor-parallel ranks."""
    import torch

    flat = ids.to(device="cpu", dtype=torch.int64).contiguous()
    width = flat.shape[1] if flat.dim() == 2 else 0
    raw = memoryview(tensor_bytes(flat)).cast("B") if flat.numel() else memoryview(b"")
    rows = []
    for i, n in enumerate(lengths):
        if not 0 <= n <= width:
            raise ValueError(f"row {i}: length {n} outside [0, {width}]")
        row = array("q")
        row.frombytes(raw[i * width * 8:(i * width + n) * 8])
        rows.append(row)
    return rows


def check_token_ids(ids: Any, lengths: Sequence[int], vocab: int) -> None:
    """Every real token id inside `[0, vocab)`: an id past the embedding would crash a CUDA kernel. One fused
    min/max over the whole batch decides the usual case; padding ids are looked at only if it fails."""
    import torch

    if ids.numel() == 0:
        return
    low, high = (int(x) for x in torch.aminmax(ids))
    if low >= 0 and high < vocab:
        return
    for i, n in enumerate(lengths):
        row = ids[i, :n]
        bad = ((row < 0) | (row >= vocab)).nonzero()
        if bad.numel():
            j = int(bad[0])
            raise ValueError(f"row {i}: token id {int(row[j])} is outside the target's vocab [0, {vocab})")


@dataclass(frozen=True)
class ExtendLimits:
    """What one extend may hold: requests (request table) and tokens (KV pool), and the longest row."""

    max_requests: int
    max_tokens: int
    max_row_tokens: int
    page_size: int = 1


def row_cost(length: int, page_size: int) -> int:
    """KV slots a row of `length` tokens takes (whole pages)."""
    return -(-length // page_size) * page_size


def plan_extends(lengths: Sequence[int], limits: ExtendLimits) -> list[list[int]]:
    """Group row indices, in order, into as few extends as the limits allow; empty rows are left out.

    Raises EaglectlError for a row that cannot fit even alone, naming the setting to raise.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i, n in enumerate(lengths):
        if n <= 0:
            continue
        if n > limits.max_row_tokens:
            raise EaglectlError(f"row {i} has {n} tokens; the SGLang runner takes at most {limits.max_row_tokens} "
                                f"per row (the model's context length)",
                                hint="cut the rows, or pass a larger context_length")
        cost = row_cost(n, limits.page_size)
        if cost > limits.max_tokens:
            raise EaglectlError(f"row {i} has {n} tokens but one extend holds at most {limits.max_tokens} "
                                f"(KV pool)", hint="raise mem_fraction_static or max_total_tokens")
        if current and (len(current) >= limits.max_requests or tokens + cost > limits.max_tokens):
            groups.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += cost
    if current:
        groups.append(current)
    return groups


def make_req(sg: SGLangClasses, rid: str, ids: Sequence[int], sampling_params: Any) -> Any:
    """One SGLang `Req` whose whole row is to be extended (0.5.15+: an extend range; 0.5.9/0.5.12: fill_ids)."""
    origin = array("q", ids) if sg.api.extend_range else list(ids)
    req = sg.Req(**accepted_kwargs(sg.Req.__init__, dict(rid=rid, origin_input_text="", origin_input_ids=origin,
                                                         sampling_params=sampling_params)))
    if sg.api.extend_range:
        req.full_untruncated_fill_ids = array("q", ids)
        req.logprob_start_len = -1
        req.set_extend_range(0, len(ids))
    else:
        req.fill_ids = list(ids)
        req.logprob_start_len = len(ids) - 1
        req.set_extend_input_len(len(ids))
    return req


def build_forward_batch(sg: SGLangClasses, mr: Any, reqs: Sequence[Any], *, tree_cache: Any,
                        forward_batch_extra: dict[str, Any]) -> Any:
    """The `ForwardBatch` of one extend over `reqs`, capturing every hidden state. `prepare_for_extend` takes
    the request and KV slots; the caller returns them (`memory.clear_pools`) whatever happens next."""
    init = dict(reqs=reqs, req_to_token_pool=mr.req_to_token_pool,
                token_to_kv_pool_allocator=mr.token_to_kv_pool_allocator, tree_cache=tree_cache,
                model_config=mr.model_config, enable_overlap=False,
                spec_algorithm=sg.SpeculativeAlgorithm.NONE, enable_custom_logit_processor=False)
    batch = sg.ScheduleBatch.init_new(**accepted_kwargs(sg.ScheduleBatch.init_new, init))
    batch.prepare_for_extend()
    staged_ids = getattr(batch, "prefill_input_ids_cpu", None)
    if getattr(batch, "input_ids", None) is None and staged_ids is not None:  # 0.5.15: H2D left to us
        batch.input_ids = staged_ids.to(batch.device, non_blocking=True)
        batch.prefill_input_ids_cpu = None
    source = batch.get_model_worker_batch() if sg.api.worker_batch else batch
    fb = sg.ForwardBatch.init_new(source, mr, **forward_batch_extra)
    fb.capture_hidden_mode = sg.CaptureHiddenMode.FULL
    return fb
