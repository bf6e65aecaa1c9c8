"""All-position logits and aux capture: the model's `LogitsProcessor` is wrapped so an extend hands every
position's hidden state (not only each request's last, as stock SGLang keeps) to an `ExtendSink`, which writes
full-vocab logits and the aux hidden states straight into the `[B, S, *]` outputs.

The logits follow SGLang's own `LogitsProcessor` maths (lm_head, `logit_scale`, TP all-gather of the vocab
shards, vocab padding sliced off, final-logit soft-capping), for every row instead of the last one.
`set_eagle3_layers_to_capture` makes the model hand the aux hidden states to the wrapper; SGLang captures in
layer order, and the sink writes them in the order eaglectl asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Token rows per lm_head chunk on the generic path: bounds its temporary [chunk, V] buffers (~2**28 elements).
LOGITS_CHUNK_ELEMENTS = 1 << 28
_UNQUANTIZED_LM_HEAD = {"UnquantizedEmbeddingMethod", "UnquantizedLinearMethod"}


class ExtendContractError(RuntimeError):
    """SGLang's forward handed the all-position wrapper something this runner does not expect (a bug or an
    unsupported model, not a user error: it keeps its traceback)."""


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
    if direct and out is not None and out.is_contiguous():
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


# --------------------------------------------------------------------------------------------------------------
# The wrapper and where it writes


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
