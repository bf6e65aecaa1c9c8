"""The SGLang target runner (extra `sglang`, CUDA only): EAGLE-3 supervision from SGLang's own model code.

Why SGLang: it is the engine the drafter is served with, so supervision computed by its kernels is exactly what
the drafter will see at serving time, and its fused kernels make the target forward cheaper than transformers'.

How, in one batched extend per call:

1. a standalone `ModelRunner` per tensor-parallel rank (no scheduler, no tokenizer, no HTTP server);
2. the model's `LogitsProcessor` is wrapped so an extend returns full-vocab logits for *every* position (stock
   SGLang keeps only each request's last one), with vocab padding sliced off, `logit_scale` and final-logit
   soft-capping applied and the TP shards all-gathered, written straight into the `[B, S, V]` output;
3. `set_eagle3_layers_to_capture` makes the model hand the aux hidden states to that wrapper, which writes them
   into `[B, S, 3H]` in the order eaglectl asked for (SGLang captures in layer order);
4. all rows go into one `ScheduleBatch` (cut to their attention-mask length; positions restart per request and
   attention is causal per request), or into as few as the KV pool and the request table allow; the KV slots
   are returned after every extend.

SGLang's internals moved between releases; the two shapes handled are detected by capability (never by version
string): 0.5.9 / 0.5.12 (the `ModelRunner` constructor does everything, `Req.fill_ids` +
`set_extend_input_len`, `ScheduleBatch.get_model_worker_batch`) and 0.5.15+ (`alloc_memory_pool` /
`init_attention_backends` / `init_cuda_graphs` after the constructor, `Req.set_extend_range`, no
`ModelWorkerBatch`). Anything else fails with a message naming what is missing.

SGLang and torch are imported inside functions only: importing this module never pulls them in.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import os
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eaglectl.errors import EaglectlError, require
from eaglectl.output import to_jsonable
from eaglectl.runner.contract import (
    DTYPES,
    canonical_dtype,
    resolve_aux_layer_ids,
    row_lengths,
    tensor_bytes,
    text_config,
)

if TYPE_CHECKING:
    import torch

SUPPORTED_DTYPES = ("auto", *DTYPES)  # the ServerArgs.dtype spellings eaglectl hands to SGLang

# Defaults for a supervision runner rather than a server; every one can be overridden.
DEFAULT_SERVER_ARGS: dict[str, Any] = {
    # Works on every CUDA GPU and in the offline bundle (no FlashAttention-3 / FlashInfer there).
    "attention_backend": "triton",
    "sampling_backend": "pytorch",  # nothing is sampled; avoids needing FlashInfer
    "disable_cuda_graph": True,  # graphs only help decode; extends here have varying shapes
    "disable_radix_cache": True,  # every call is independent; no prefix reuse
    "skip_tokenizer_init": True,  # token ids in, tensors out
    "page_size": 1,
    # The [B, S, V] logits live outside SGLang's static pool (weights + KV): leave 40 % of the GPU for them.
    "mem_fraction_static": 0.6,
    # KV slots: SGLang sizes the pool to fill mem_fraction_static, which for a small target means tens of GB of
    # KV no batch uses (an extend of 128k tokens already has a 128k x V logits tensor). This caps the pool;
    # larger batches are split into several extends.
    "max_total_tokens": 131072,
    # Rows per extend; more rows than this are split into several extends (a big request table wastes memory).
    "max_running_requests": 256,
}
START_HINT = ("check the attention backend and other ServerArgs against this SGLang install (the triton backend "
              "runs everywhere); on out-of-memory lower mem_fraction_static; EAGLECTL_DEBUG=1 shows SGLang's traceback")
FORWARD_HINT = ("a backend other than triton may start but not run on this install; on out-of-memory pass fewer "
                "rows or max_tokens_per_extend; EAGLECTL_DEBUG=1 shows SGLang's traceback")
_FLAGS_HINT = "they are sglang.launch_server's flags, spelled out in full, e.g. --page-size 16"
# What `engine_settings` always reports: the fields that decide speed and memory.
REPORTED_SERVER_ARGS = ("attention_backend", "page_size", "mem_fraction_static", "max_total_tokens",
                        "max_running_requests", "disable_cuda_graph")
# Token rows per lm_head chunk on the generic path: bounds its temporary [chunk, V] buffers (~2**28 elements).
LOGITS_CHUNK_ELEMENTS = 1 << 28
_UNQUANTIZED_LM_HEAD = {"UnquantizedEmbeddingMethod", "UnquantizedLinearMethod"}


class SGLangApiError(EaglectlError):
    """The installed SGLang does not have an internal API shape this runner knows how to drive."""


# --------------------------------------------------------------------------------------------------------------
# dtype


def sglang_dtype_str(dtype: Any) -> str:
    """The `ServerArgs.dtype` string for a torch dtype or a dtype name; None means "auto".

    SGLang compares `ServerArgs.dtype` with string literals, so a raw `torch.dtype` would silently miss them.
    """
    if dtype is None or str(dtype).lower() == "auto":
        return "auto"
    name = canonical_dtype(dtype)
    if name is None:
        raise EaglectlError(f"dtype {dtype!r} is not supported by the SGLang engine; "
                            f"use one of {', '.join(SUPPORTED_DTYPES)}")
    return name


# --------------------------------------------------------------------------------------------------------------
# API shape


@dataclass(frozen=True)
class SGLangApi:
    """What the installed SGLang can do, found by looking at its classes (never at its version string)."""

    staged_init: bool  # ModelRunner.alloc_memory_pool / init_attention_backends / init_cuda_graphs (0.5.15+)
    extend_range: bool  # Req.set_extend_range + full_untruncated_fill_ids (0.5.15+), else fill_ids (0.5.9/0.5.12)
    worker_batch: bool  # ScheduleBatch.get_model_worker_batch feeds ForwardBatch.init_new (0.5.9/0.5.12)
    forward_batch_extra: tuple[tuple[str, Any], ...] = ()  # extra ForwardBatch.init_new keywords (0.5.18)
    version: str = "?"

    @property
    def shape(self) -> str:
        if not self.staged_init and not self.extend_range and self.worker_batch:
            return "0.5.9/0.5.12"
        if self.staged_init and self.extend_range and not self.worker_batch:
            return "0.5.15+"
        return "mixed"


_STAGED_INIT = ("alloc_memory_pool", "init_attention_backends", "init_cuda_graphs")
# ForwardBatch.init_new keywords this runner knows how to fill when a version asks for them.
_KNOWN_FORWARD_BATCH_KWARGS = {"return_hidden_states_before_norm": False}


def detect_api(*, model_runner: Any, req: Any, schedule_batch: Any, forward_batch: Any,
               version: str = "?") -> SGLangApi:
    """Resolve each step of an extend from the classes' capabilities; SGLangApiError names what is missing."""
    problems = []
    staged = [name for name in _STAGED_INIT if callable(getattr(model_runner, name, None))]
    if staged and len(staged) != len(_STAGED_INIT):
        missing = [n for n in _STAGED_INIT if n not in staged]
        problems.append(f"ModelRunner has {', '.join(staged)} but not {', '.join(missing)}")
    if not callable(getattr(model_runner, "forward", None)):
        problems.append("ModelRunner has no forward")
    extend_range = callable(getattr(req, "set_extend_range", None))
    if not extend_range and not callable(getattr(req, "set_extend_input_len", None)):
        problems.append("Req has neither set_extend_range (0.5.15+) nor set_extend_input_len (0.5.9/0.5.12)")
    for name in ("init_new", "prepare_for_extend"):
        if not callable(getattr(schedule_batch, name, None)):
            problems.append(f"ScheduleBatch has no {name}")
    extra: list[tuple[str, Any]] = []
    init_new = getattr(forward_batch, "init_new", None)
    if not callable(init_new):
        problems.append("ForwardBatch has no init_new")
    else:
        try:
            params = list(inspect.signature(init_new).parameters.values())
        except (TypeError, ValueError):
            params = []
        for p in params[2:]:  # (batch, model_runner, ...) once bound to the class
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name in _KNOWN_FORWARD_BATCH_KWARGS:
                extra.append((p.name, _KNOWN_FORWARD_BATCH_KWARGS[p.name]))
            elif p.default is inspect.Parameter.empty:
                problems.append(f"ForwardBatch.init_new needs an argument this runner does not know: {p.name}")
    if problems:
        raise SGLangApiError(
            f"unsupported SGLang internals (sglang {version}): " + "; ".join(problems),
            hint="eaglectl drives the SGLang 0.5.9/0.5.12 and 0.5.15+ internals; install one of those "
                 '(pip install "eaglectl[sglang]") or use --engine hf')
    return SGLangApi(staged_init=bool(staged), extend_range=extend_range,
                     worker_batch=callable(getattr(schedule_batch, "get_model_worker_batch", None)),
                     forward_batch_extra=tuple(extra), version=version)


@dataclass(frozen=True)
class _Sglang:
    """The SGLang classes one extend needs, imported once."""

    api: SGLangApi
    ServerArgs: Any
    PortArgs: Any
    ModelConfig: Any
    ModelRunner: Any
    Req: Any
    ScheduleBatch: Any
    ForwardBatch: Any
    CaptureHiddenMode: Any
    SamplingParams: Any
    SpeculativeAlgorithm: Any
    LogitsProcessor: Any
    destroy_distributed: Any = None  # tests' fakes replace SGLang's process-group teardown


def load_sglang() -> _Sglang:
    """Import the SGLang internals and check their shape (MissingDependencyError without the extra)."""
    require("sglang", extra="sglang", purpose="for --engine sglang")
    import sglang
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.layers.logits_processor import LogitsProcessor
    from sglang.srt.managers.schedule_batch import Req, ScheduleBatch
    from sglang.srt.model_executor.forward_batch_info import CaptureHiddenMode, ForwardBatch
    from sglang.srt.model_executor.model_runner import ModelRunner
    from sglang.srt.sampling.sampling_params import SamplingParams
    from sglang.srt.server_args import PortArgs, ServerArgs
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    version = str(getattr(sglang, "__version__", "?"))
    api = detect_api(model_runner=ModelRunner, req=Req, schedule_batch=ScheduleBatch, forward_batch=ForwardBatch,
                     version=version)
    return _Sglang(api=api, ServerArgs=ServerArgs, PortArgs=PortArgs, ModelConfig=ModelConfig,
                   ModelRunner=ModelRunner, Req=Req, ScheduleBatch=ScheduleBatch, ForwardBatch=ForwardBatch,
                   CaptureHiddenMode=CaptureHiddenMode, SamplingParams=SamplingParams,
                   SpeculativeAlgorithm=SpeculativeAlgorithm, LogitsProcessor=LogitsProcessor)


_PARAMS: dict[Any, frozenset[str] | None] = {}


def _accepted(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords `fn` takes (all of them if it takes **kwargs): signatures drift between releases.

    Signatures are read once per function: `inspect.signature` on SGLang's constructors costs ~0.1 ms a call,
    paid per request on the path the GPU waits on."""
    if fn not in _PARAMS:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = None
        _PARAMS[fn] = (None if params is None or any(p.kind is p.VAR_KEYWORD for p in params.values())
                       else frozenset(params))
    names = _PARAMS[fn]
    return kwargs if names is None else {k: v for k, v in kwargs.items() if k in names}


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


# --------------------------------------------------------------------------------------------------------------
# Rows, extends and pieces (pure: unit-tested on CPU)


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


def token_pieces(group: Sequence[int], lengths: Sequence[int], seq_len: int,
                 chunk: int | None = None) -> list[tuple[int, int, int]]:
    """(src, dst, n) copies from one extend's flat outputs (rows of `group` back to back) into the flat
    `[B * S]` output: adjacent runs merged, then cut to at most `chunk` tokens."""
    pieces: list[list[int]] = []
    src = 0
    for i in group:
        n = lengths[i]
        dst = i * seq_len
        if pieces and pieces[-1][0] + pieces[-1][2] == src and pieces[-1][1] + pieces[-1][2] == dst:
            pieces[-1][2] += n
        else:
            pieces.append([src, dst, n])
        src += n
    if chunk is None:
        return [(s, d, n) for s, d, n in pieces]
    out = []
    for s, d, n in pieces:
        for off in range(0, n, chunk):
            out.append((s + off, d + off, min(chunk, n - off)))
    return out


def aux_capture_order(ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """(layers to hand to SGLang, index into its captures for each requested id).

    SGLang captures in layer order, whatever order it was given; eaglectl's aux keeps the caller's order.
    """
    layers = sorted(set(ids))
    return layers, [layers.index(k) for k in ids]


# --------------------------------------------------------------------------------------------------------------
# All-position logits (the maths of SGLang's LogitsProcessor, for every row instead of the last one)


def _plain_lm_head_weight(lp: Any, lm_head: Any) -> Any:
    """The lm_head weight when it is a plain (unquantized, non-LoRA) matrix, else None."""
    import torch

    if hasattr(lm_head, "set_lora") and hasattr(lm_head, "apply_lora"):
        return None
    quant = getattr(lm_head, "quant_method", None)
    if quant is not None and type(quant).__name__ not in _UNQUANTIZED_LM_HEAD:
        return None
    if getattr(lp, "use_fp32_lm_head", False):
        return None
    weight = getattr(lm_head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.dtype.is_floating_point:
        return None
    return weight


def _apply_scale_and_cap(lp: Any, logits: torch.Tensor) -> torch.Tensor:
    """logit_scale then final-logit soft-capping, in place on `logits` (a tensor this code owns)."""
    scale = getattr(lp, "logit_scale", None)
    if scale is not None and scale != 1.0:
        logits.mul_(scale)
    cap = getattr(lp, "final_logit_softcapping", None)
    if cap is not None and cap > 0:
        logits.div_(cap).tanh_().mul_(cap)
    return logits


def compute_logits(lp: Any, hidden: torch.Tensor, lm_head: Any, *, gather: Callable[[Any], Any] | None = None,
                   dtype: Any = None) -> torch.Tensor:
    """Full-vocab logits [n, V] for every row of `hidden`: lm_head (SGLang's own matmul, so quantized and
    fp32-lm-head paths behave as they do when serving), logit scale, TP all-gather of the vocab shards,
    vocab padding sliced off, cast to `dtype`, soft-capping."""
    import torch

    compute = getattr(lp, "_compute_lm_head", None)
    if callable(compute):
        logits = compute(hidden, lm_head, None)
    else:
        weight = lm_head.weight
        logits = torch.matmul(hidden.to(weight.dtype), weight.t())
    scale = getattr(lp, "logit_scale", None)
    if scale is not None and scale != 1.0:
        logits = logits * scale
    if getattr(lp, "do_tensor_parallel_all_gather", False):
        if gather is None:
            raise ExtendContractError("the logits processor is tensor-parallel but no all-gather was given")
        logits = gather(logits)
    logits = logits[:, : lp.vocab_size]
    if dtype is not None and logits.dtype != dtype:
        logits = logits.to(dtype)
    cap = getattr(lp, "final_logit_softcapping", None)
    if cap is not None and cap > 0:
        logits = torch.tanh(logits / cap) * cap
    return logits


def write_logits(lp: Any, hidden: torch.Tensor, lm_head: Any, out: torch.Tensor | None, *,
                 gather: Callable[[Any], Any] | None = None, direct: bool | None = None) -> None:
    """Logits of `hidden` into `out` [n, V] (None: computed for the collectives only, on ranks > 0).

    Fast path: an unsharded, unpadded, unquantized lm_head in `out`'s dtype is multiplied straight into `out`
    (no [n, V] temporary, no copy); everything else goes through `compute_logits`. `direct`: the caller's
    `direct_matmul_possible` answer for these tensors, when it has one.
    """
    import torch

    if direct is None:
        direct = direct_matmul_possible(lp, lm_head, out, hidden)
    if direct and out.is_contiguous():
        torch.matmul(hidden, lm_head.weight.t(), out=out)
        _apply_scale_and_cap(lp, out)
        return
    logits = compute_logits(lp, hidden, lm_head, gather=gather, dtype=None if out is None else out.dtype)
    if out is not None:
        out.copy_(logits)


def direct_matmul_possible(lp: Any, lm_head: Any, out: torch.Tensor | None, hidden: torch.Tensor) -> bool:
    """Whether `write_logits` can multiply straight into `out`: an unsharded, unpadded, unquantized lm_head in
    `out`'s and `hidden`'s dtype (no vocab all-gather, no slice, no cast)."""
    if out is None or getattr(lp, "do_tensor_parallel_all_gather", False):
        return False
    weight = _plain_lm_head_weight(lp, lm_head)
    return (weight is not None and weight.shape[0] == lp.vocab_size == out.shape[-1]
            and weight.shape[1] == hidden.shape[-1] and weight.dtype == out.dtype == hidden.dtype)


class ExtendContractError(RuntimeError):
    """SGLang's forward handed the all-position wrapper something this runner does not expect (a bug or an
    unsupported model, not a user error: it keeps its traceback)."""


@dataclass
class ExtendSink:
    """Where the wrapped logits processor writes one extend's outputs (flat [B*S, *] views; None on ranks > 0)."""

    group: list[int]
    lengths: list[int]
    seq_len: int
    logits: Any = None  # [B*S, V] or None
    aux: Any = None  # [B*S, len(ids)*H] or None
    aux_order: list[int] = field(default_factory=list)
    gather: Callable[[Any], Any] | None = None
    calls: int = 0

    @property
    def tokens(self) -> int:
        return sum(self.lengths[i] for i in self.group)

    def consume(self, lp: Any, hidden: torch.Tensor, lm_head: Any, aux_hidden: Sequence[Any] | None) -> None:
        n_tokens = self.tokens
        if hidden.shape[0] != n_tokens:
            raise ExtendContractError(f"the extend returned {hidden.shape[0]} hidden states for {n_tokens} tokens")
        direct = direct_matmul_possible(lp, lm_head, self.logits, hidden)
        chunk = None if direct else max(256, LOGITS_CHUNK_ELEMENTS // max(1, int(lp.vocab_size)))
        for src, dst, n in token_pieces(self.group, self.lengths, self.seq_len, chunk):
            out = self.logits[dst:dst + n] if self.logits is not None else None
            write_logits(lp, hidden[src:src + n], lm_head, out, gather=self.gather, direct=direct)
        if self.aux is not None:
            captured = list(aux_hidden or [])
            if len(captured) != len(set(self.aux_order)) or not self.aux_order:
                raise ExtendContractError(f"the model captured {len(captured)} aux hidden state(s), expected "
                                   f"{len(set(self.aux_order))}")
            width = captured[0].shape[-1]
            for src, dst, n in token_pieces(self.group, self.lengths, self.seq_len):
                for j, k in enumerate(self.aux_order):
                    self.aux[dst:dst + n, j * width:(j + 1) * width].copy_(captured[k][src:src + n])
        self.calls += 1


class _ExtendOutput:
    """What the wrapped processor returns to SGLang: the real outputs went into the sink already."""

    next_token_logits = None
    hidden_states = None
    full_logits = None
    customized_info = None
    mm_input_embeds = None


_WRAPPER_CLASS: Any = None


def all_position_processor_class() -> type:
    """The nn.Module that replaces the model's LogitsProcessor (built lazily: torch is imported only here)."""
    global _WRAPPER_CLASS
    if _WRAPPER_CLASS is None:
        import torch

        class AllPositionLogitsProcessor(torch.nn.Module):
            """Stock behaviour unless an eaglectl extend is in flight (`sink` set): then every position's logits
            and the aux hidden states go to the sink."""

            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner
                self.sink: ExtendSink | None = None

            def __getattr__(self, name: str) -> Any:
                # SGLang code that reads the processor's attributes (vocab_size, logit_scale ...) still sees them.
                try:
                    return super().__getattr__(name)
                except AttributeError:
                    inner = self.__dict__.get("_modules", {}).get("inner")
                    if inner is None:
                        raise
                    return getattr(inner, name)

            def forward(self, input_ids: Any, hidden_states: Any, lm_head: Any, logits_metadata: Any,
                        aux_hidden_states: Any = None, *args: Any, **kwargs: Any) -> Any:
                sink = self.sink
                if sink is None:
                    return self.inner(input_ids, hidden_states, lm_head, logits_metadata, aux_hidden_states,
                                      *args, **kwargs)
                sink.consume(self.inner, hidden_states, lm_head, aux_hidden_states)
                return _ExtendOutput()

        _WRAPPER_CLASS = AllPositionLogitsProcessor
    return _WRAPPER_CLASS


def wrap_logits_processors(model: Any, processor_cls: Any) -> list[Any]:
    """Replace every `processor_cls` submodule of `model` by the all-position wrapper; the wrappers."""
    wrapper_cls = all_position_processor_class()
    wrapped = []
    for _name, parent in list(model.named_modules()):
        if isinstance(parent, wrapper_cls):  # its `inner` is the processor already wrapped
            continue
        for child_name, child in list(parent.named_children()):
            if isinstance(child, processor_cls) and not isinstance(child, wrapper_cls):
                wrapper = wrapper_cls(child)
                setattr(parent, child_name, wrapper)
                wrapped.append(wrapper)
    return wrapped


# --------------------------------------------------------------------------------------------------------------
# One rank


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

    def __init__(self, *, rank: int, spec: RankSpec, sg: _Sglang | None = None) -> None:
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

    def _start(self, sg: _Sglang, rank: int, spec: RankSpec) -> None:
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
            self.mr = sg.ModelRunner(**_accepted(sg.ModelRunner.__init__, kwargs))
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
        self._sampling = sg.SamplingParams(**_accepted(sg.SamplingParams, {"temperature": 0, "max_new_tokens": 1}))
        # Fixed once the pools exist: read here, not on every extend.
        self.page_size = int(getattr(sa, "page_size", 1) or 1)
        self._tree_cache = _NoPrefixCache(self.mr.req_to_token_pool, self.mr.token_to_kv_pool_allocator,
                                          self.page_size, self.mr.device)
        self._forward_batch_extra = dict(sg.api.forward_batch_extra)

    # -- limits ------------------------------------------------------------------------------------------------

    def limits(self) -> ExtendLimits:
        """The request table, KV pool and row-width limits of one extend (after the pools were cleared)."""
        self._clear_pools()
        req_pool = self.mr.req_to_token_pool
        allocator = self.mr.token_to_kv_pool_allocator
        page = self.page_size
        max_requests = int(req_pool.available_size() if callable(getattr(req_pool, "available_size", None))
                           else req_pool.size)
        running = getattr(self.mr, "max_running_requests", None)
        if isinstance(running, int) and running > 0:
            max_requests = min(max_requests, running)
        max_tokens = int(allocator.available_size())
        if page > 1:
            max_tokens -= page  # the paged allocator's slack for the last partial page
        # SGLang's request table is a few slots wider than the model's context (room for draft tokens); rows are
        # held to the context itself, as SGLang's own request checks do: rotary caches end there.
        widths = [w for w in (getattr(req_pool, "max_context_len", None),
                              getattr(self.mr.model_config, "context_len", None)) if isinstance(w, int) and w > 0]
        width = min(widths) if widths else max_tokens
        if self.spec.max_requests_per_extend:
            max_requests = min(max_requests, self.spec.max_requests_per_extend)
        if self.spec.max_tokens_per_extend:
            max_tokens = min(max_tokens, self.spec.max_tokens_per_extend)
        return ExtendLimits(max_requests=max(1, max_requests), max_tokens=max_tokens,
                            max_row_tokens=int(width), page_size=page)

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
        return (int(self.mr.req_to_token_pool.available_size()),
                int(self.mr.token_to_kv_pool_allocator.available_size()))

    def close(self) -> None:
        """Drop the ModelRunner and SGLang's process groups, then give the cached GPU memory back."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        import gc

        for w in self.wrappers:
            w.sink = None
        self.wrappers = []
        self.mr = None
        self.model = None
        self._tree_cache = None  # it holds the request and KV pools
        close_hook = getattr(self._sg, "destroy_distributed", None)
        if callable(close_hook):
            close_hook()
        else:
            _destroy_sglang_distributed()
        gc.collect()
        _empty_cuda_cache()

    # -- one extend --------------------------------------------------------------------------------------------

    def _make_req(self, rid: str, ids: Sequence[int]) -> Any:
        sg = self._sg
        origin = array("q", ids) if sg.api.extend_range else list(ids)
        req = sg.Req(**_accepted(sg.Req.__init__, dict(rid=rid, origin_input_text="", origin_input_ids=origin,
                                                       sampling_params=self._sampling)))
        if sg.api.extend_range:
            req.full_untruncated_fill_ids = array("q", ids)
            req.logprob_start_len = -1
            req.set_extend_range(0, len(ids))
        else:
            req.fill_ids = list(ids)
            req.logprob_start_len = len(ids) - 1
            req.set_extend_input_len(len(ids))
        return req

    def _extend(self, rows: Sequence[Sequence[int]], sink: ExtendSink) -> None:
        sg, mr = self._sg, self.mr
        self._calls += 1
        reqs = [self._make_req(f"eaglectl-{self._calls}-{j}", ids) for j, ids in enumerate(rows)]
        init = dict(reqs=reqs, req_to_token_pool=mr.req_to_token_pool,
                    token_to_kv_pool_allocator=mr.token_to_kv_pool_allocator, tree_cache=self._tree_cache,
                    model_config=mr.model_config, enable_overlap=False,
                    spec_algorithm=sg.SpeculativeAlgorithm.NONE, enable_custom_logit_processor=False)
        for w in self.wrappers:
            w.sink = sink
        try:
            batch = sg.ScheduleBatch.init_new(**_accepted(sg.ScheduleBatch.init_new, init))
            batch.prepare_for_extend()
            staged_ids = getattr(batch, "prefill_input_ids_cpu", None)
            if getattr(batch, "input_ids", None) is None and staged_ids is not None:  # 0.5.15: H2D left to us
                batch.input_ids = staged_ids.to(batch.device, non_blocking=True)
                batch.prefill_input_ids_cpu = None
            source = batch.get_model_worker_batch() if sg.api.worker_batch else batch
            fb = sg.ForwardBatch.init_new(source, mr, **self._forward_batch_extra)
            fb.capture_hidden_mode = sg.CaptureHiddenMode.FULL
            # A backend that starts but cannot run here, out of memory, a kernel error; not the runner's own checks.
            with sglang_errors("SGLang's forward failed", FORWARD_HINT, keep=(ExtendContractError,)):
                mr.forward(fb)
            if sink.calls != 1:
                raise EaglectlError(f"SGLang's forward went through the wrapped logits processor {sink.calls} "
                                    f"time(s) instead of once ({type(self.model).__name__})")
        finally:
            for w in self.wrappers:
                w.sink = None
            self._clear_pools()

    def _clear_pools(self) -> None:
        self.mr.req_to_token_pool.clear()
        self.mr.token_to_kv_pool_allocator.clear()


class _NoPrefixCache:
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


def _destroy_sglang_distributed() -> None:
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


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _model_device_dtype(model: Any) -> tuple[Any, Any]:
    """Where the (rank's) model lives and its floating dtype: the outputs are allocated to match."""
    import torch

    for p in model.parameters():
        if p.dtype.is_floating_point:
            return p.device, p.dtype
    return torch.device("cuda", torch.cuda.current_device()), torch.bfloat16


# --------------------------------------------------------------------------------------------------------------
# The runner


def build_server_args_kwargs(model_path: str, *, dtype: Any = None, tp_size: int = 1, trust_remote_code: bool = False,
                             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """ServerArgs keywords: eaglectl's defaults for a supervision runner, then the caller's overrides."""
    if tp_size < 1:
        raise EaglectlError(f"tp_size must be >= 1, got {tp_size}")
    kwargs = dict(DEFAULT_SERVER_ARGS)
    kwargs.update(model_path=str(model_path), dtype=sglang_dtype_str(dtype), tp_size=int(tp_size),
                  trust_remote_code=bool(trust_remote_code))
    for key, value in (overrides or {}).items():
        if key in ("model_path", "tp_size", "trust_remote_code"):
            raise EaglectlError(f"pass {key} as an argument of the runner, not as a ServerArgs override")
        if key == "dtype":
            value = sglang_dtype_str(value)
        kwargs[key] = value
    if kwargs.get("pp_size", 1) != 1:
        raise EaglectlError("the SGLang target runner does not support pipeline parallelism (pp_size must be 1)")
    if kwargs.get("enable_dp_attention"):
        raise EaglectlError("the SGLang target runner does not support DP attention")
    return kwargs


def sglang_failure(exc: BaseException, limit: int = 300) -> str:
    """`Type: first line` of an exception from SGLang's own code (torch compile errors run to pages)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


@contextlib.contextmanager
def sglang_errors(what: str, hint: str, keep: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """An exception from SGLang's code inside the block becomes one `EaglectlError` ("what: Type: first line");
    eaglectl's own errors and `keep` pass through with their tracebacks."""
    try:
        yield
    except (EaglectlError, *keep):
        raise
    except Exception as exc:
        raise EaglectlError(f"{what}: {sglang_failure(exc)}", hint=hint) from exc


def flag_name(field_name: str) -> str:
    """The `launch_server` flag that sets a ServerArgs field."""
    return "--" + field_name.replace("_", "-")


# ServerArgs fields a runner takes as its own arguments: flags must not set them behind the runner's back.
RUNNER_ARGUMENTS = {"model_path": "the model path", "tp_size": "tp_size", "dtype": "dtype",
                    "trust_remote_code": "trust_remote_code"}


def server_args_from_flags(flags: Sequence[str], server_args_cls: Any = None,
                           own_options: dict[str, str] | None = None) -> dict[str, Any]:
    """`sglang.launch_server` flags (`--page-size 16 --kv-cache-dtype fp8_e5m2`) as ServerArgs overrides: typed,
    checked and named by SGLang's own parser, as `launch_server` reads them (abbreviations aside). Only the flags
    given are returned. `own_options` names the caller's option for a field it sets itself (refused), and flags
    that are not ServerArgs fields (`--config`, which `launch_server` expands itself) are refused too."""
    cls = server_args_cls if server_args_cls is not None else load_sglang().ServerArgs
    parser = _FlagParser(prog="SGLang server flags", add_help=False, allow_abbrev=False)
    cls.add_cli_args(parser)
    for action in parser._actions:  # report only what was given; nothing is required here
        action.default = argparse.SUPPRESS
        action.required = False
    for group in parser._mutually_exclusive_groups:
        group.required = False
    try:
        given = vars(parser.parse_args(list(flags)))
    except (ValueError, TypeError, AssertionError) as exc:  # raised by SGLang's own option actions
        raise EaglectlError(f"SGLang server flags: {sglang_failure(exc)}", hint=_FLAGS_HINT) from exc
    owned = {**RUNNER_ARGUMENTS, **(own_options or {})}
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None
    for key in given:
        flag = flag_name(key)
        if key in owned:
            raise EaglectlError(f"{flag} cannot be passed to SGLang here: set it with {owned[key]}")
        if fields is not None and key not in fields:
            raise EaglectlError(f"{flag} is not a ServerArgs setting ({key}); pass the settings themselves",
                                hint=_FLAGS_HINT)
    return given


class _FlagParser(argparse.ArgumentParser):
    """argparse, with errors raised as EaglectlError instead of printing usage and exiting."""

    def error(self, message: str) -> Any:
        raise EaglectlError(f"SGLang server flags: {message}", hint=_FLAGS_HINT)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SGLangTargetRunner:
    """`TargetRunner` over SGLang's own model code: one batched extend per `forward_eagle3`.

    `server_args` are passed through to SGLang's `ServerArgs` (`mem_fraction_static`, `attention_backend`,
    `page_size`, `max_total_tokens`, `max_running_requests`, `context_length`, ...), over eaglectl's defaults
    (`DEFAULT_SERVER_ARGS`). `logits_dtype` (default: the lm_head's dtype, as the HF reference returns them)
    may be "float32"; `max_requests_per_extend` / `max_tokens_per_extend` cap an extend below SGLang's pools.
    """

    def __init__(self, model_path: str, *, dtype: Any = None, tp_size: int = 1, trust_remote_code: bool = False,
                 logits_dtype: Any = None, max_requests_per_extend: int | None = None,
                 max_tokens_per_extend: int | None = None, **server_args: Any) -> None:
        from eaglectl.runner.tp import RankGroup

        kwargs = build_server_args_kwargs(model_path, dtype=dtype, tp_size=tp_size,
                                          trust_remote_code=trust_remote_code, overrides=server_args)
        self.model_path = str(model_path)
        self.tp_size = int(tp_size)
        self._group = None
        sg = load_sglang()
        import torch

        if not torch.cuda.is_available():
            raise EaglectlError("the SGLang engine needs a CUDA GPU and none is visible", hint="use --engine hf")
        logits_name = None if logits_dtype is None else sglang_dtype_str(logits_dtype)
        if logits_name == "auto":
            logits_name = None
        # NVLink multicast (NVLS) and cuMem NCCL buffers stay off unless asked for, as SGLang's launcher does.
        os.environ.setdefault("NCCL_CUMEM_ENABLE", "0")
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        try:
            sa = sg.ServerArgs(**kwargs)
        except TypeError as exc:  # an unknown field
            raise EaglectlError(f"SGLang rejected the ServerArgs overrides: {sglang_failure(exc)}",
                                hint=START_HINT) from exc
        except Exception as exc:  # __post_init__ checks the settings against the GPU and the model config
            raise EaglectlError(f"SGLang refused these settings: {sglang_failure(exc)}",
                                hint=START_HINT) from exc
        nccl_port = getattr(sa, "nccl_port", None)
        if not nccl_port:
            try:
                nccl_port = sg.PortArgs.init_new(sa).nccl_port
            except Exception:  # PortArgs also makes IPC names this runner never uses
                nccl_port = _free_port()
        spec = RankSpec(server_args=sa, nccl_port=int(nccl_port), logits_dtype=logits_name,
                        max_requests_per_extend=max_requests_per_extend, max_tokens_per_extend=max_tokens_per_extend)
        self._attach(RankGroup.start(build_rank_engine, spec, self.tp_size), sg.api, tuple(server_args))

    def _attach(self, group: Any, api: SGLangApi | None, override_keys: Sequence[str] = ()) -> None:
        self._override_keys = tuple(override_keys)
        self._group = group
        self.api = api
        self._engine: SGLangRankEngine = group.local
        self.tp_size = group.size
        self.model = self._engine.model
        self.aux_layer_ids: list[int] | None = None
        self._limits = self._engine.limits()

    @classmethod
    def from_group(cls, group: Any, *, api: SGLangApi | None = None, model_path: str = "",
                   override_keys: Sequence[str] = ()) -> SGLangTargetRunner:
        """A runner over ranks that are already running (a `RankGroup` whose rank 0 is an SGLangRankEngine);
        `override_keys`: the ServerArgs fields the caller set (reported by `engine_settings`)."""
        runner = cls.__new__(cls)
        runner.model_path = model_path
        runner._attach(group, api, override_keys)
        return runner

    @classmethod
    def build(cls, model_path: str, dtype: Any = None, tp_size: int = 1, trust_remote_code: bool = False,
              sglang_kwargs: dict[str, Any] | None = None) -> SGLangTargetRunner:
        """Construct from a model path with pass-through ServerArgs overrides (NeMo AutoModel's spelling)."""
        return cls(model_path, dtype=dtype, tp_size=tp_size, trust_remote_code=trust_remote_code,
                   **(sglang_kwargs or {}))

    @property
    def limits(self) -> ExtendLimits:
        return self._limits

    @property
    def engine_settings(self) -> dict[str, Any]:
        """What this runner runs with (for reports): the `ServerArgs` fields that decide speed and memory and every
        field the caller set, as `ServerArgs` holds them, then the pools SGLang actually allocated (one extend's
        KV slots, request slots and longest row)."""
        sa = self._engine.spec.server_args
        keys = dict.fromkeys((*REPORTED_SERVER_ARGS, *self._override_keys))
        settings = {k: to_jsonable(getattr(sa, k, None)) for k in keys}
        settings.update(kv_slots=self._limits.max_tokens, request_slots=self._limits.max_requests,
                        max_row_tokens=self._limits.max_row_tokens)
        return settings

    @property
    def last_extend_count(self) -> int:
        """Extends the last `forward_eagle3` ran (1 unless the batch exceeded the KV pool or request table)."""
        return self._engine.extends

    def _check_open(self) -> None:
        if self._group is None or self._group.closed:
            raise RuntimeError("SGLangTargetRunner is closed")

    def set_aux_layers(self, ids: Sequence[int] | None) -> None:
        """Capture the outputs of these decoder layers (None: SGLang's defaults for this depth)."""
        self._check_open()
        layers = resolve_aux_layer_ids(ids, self._engine.num_layers)
        self._group.call("set_aux_layers", layers)
        self.aux_layer_ids = layers

    def forward_eagle3(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unshifted (logits [B, S, V], aux [B, S, 3H]) on the GPU, from one extend over all rows."""
        self._check_open()
        if input_ids.dim() != 2 or tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"input_ids {list(input_ids.shape)} and attention_mask {list(attention_mask.shape)} "
                             f"must both be [batch, seq_len]")
        if self.aux_layer_ids is None:
            self.set_aux_layers(None)
        lengths = row_lengths(attention_mask)
        ids = input_ids.to("cpu")
        check_token_ids(ids, lengths, self._engine.vocab_size)
        rows = token_rows(ids, lengths)
        plan = plan_extends(lengths, self._limits)
        return self._group.call("forward", rows, int(input_ids.shape[1]), plan)

    def input_embedding_weight(self) -> torch.Tensor:
        """The target's input embedding [V, H] (gathered over the TP ranks)."""
        self._check_open()
        return self._group.call("embedding_weight")

    def pool_state(self) -> tuple[int, int]:
        """(free request slots, free KV slots) of rank 0: unchanged from one call to the next."""
        self._check_open()
        return self._engine.pool_state()

    def close(self) -> None:
        """Release every rank's GPU memory and process groups; safe to call more than once."""
        group, self._group = self._group, None
        self.model = None
        if group is not None:
            group.close()

    def __enter__(self) -> SGLangTargetRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
