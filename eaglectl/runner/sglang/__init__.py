"""The SGLang target runner (extra `sglang`, CUDA only): EAGLE-3 supervision from SGLang's own model code.

Why SGLang: it is the engine the drafter is served with, so supervision computed by its kernels is exactly what
the drafter will see at serving time, and its fused kernels make the target forward cheaper than transformers'.

How, in one batched extend per call (`from eaglectl.runner.sglang import SGLangTargetRunner`):

1. a standalone `ModelRunner` per tensor-parallel rank, no scheduler, no tokenizer, no HTTP server
   (`engine.py`; one process per rank, the same calls on every rank: `tp.py`);
2. the model's `LogitsProcessor` is wrapped so an extend returns full-vocab logits for *every* position (stock
   SGLang keeps only each request's last one), with vocab padding sliced off, `logit_scale` and final-logit
   soft-capping applied and the TP shards all-gathered, written straight into the `[B, S, V]` output;
3. `set_eagle3_layers_to_capture` makes the model hand the aux hidden states to that wrapper, which writes them
   into `[B, S, 3H]` in the order eaglectl asked for (SGLang captures in layer order) (2 and 3: `forward.py`);
4. all rows go into one `ScheduleBatch` (cut to their attention-mask length; positions restart per request and
   attention is causal per request), or into as few as the KV pool and the request table allow (`batch.py`);
   the KV slots are returned after every extend (`memory.py`).

The parts: `api.py` (what the installed SGLang can do, by capability, never by version string), `settings.py`
(ServerArgs defaults, overrides and `launch_server` flags), `runner.py` (`SGLangTargetRunner`, tying them
together). SGLang and torch are imported inside functions only: importing any of these modules never pulls them
in, and importing this package imports none of its modules until `SGLangTargetRunner` is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eaglectl.runner.sglang.runner import SGLangTargetRunner

__all__ = ["SGLangTargetRunner"]


def __getattr__(name: str) -> Any:
    if name == "SGLangTargetRunner":
        from eaglectl.runner.sglang.runner import SGLangTargetRunner

        return SGLangTargetRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
