"""P-EAGLE (parallel drafting) heads: SGLang cannot serve them; say so and name the route that works."""

from __future__ import annotations

from eaglectl.checkpoint.resolve import Checkpoint, is_p_eagle
from eaglectl.errors import UnsupportedDraftError

VLLM_ROUTE = (
    "serve it with vLLM >= 0.16, whose parallel-drafting runtime loads P-EAGLE heads: "
    "vllm serve TARGET --speculative-config "
    "'{\"method\": \"eagle3\", \"model\": \"DRAFT\", \"num_speculative_tokens\": 3, \"parallel_drafting\": true}'"
)


def p_eagle_message(ckpt: Checkpoint, reason: str) -> str:
    return (f"{ckpt.source} is a P-EAGLE (parallel drafting) head ({reason}); SGLang ignores mask_hidden / "
            f"mask_token_id and would mis-serve it as a plain EAGLE-3 head")


def reject_p_eagle(ckpt: Checkpoint, target: str | None = None) -> None:
    """Refuse a P-EAGLE head, with the vLLM command that serves it (the target filled in when known)."""
    reason = is_p_eagle(ckpt)
    if reason:
        hint = VLLM_ROUTE.replace("DRAFT", str(ckpt.model_dir or ckpt.source))
        if target:
            import shlex

            hint = hint.replace("vllm serve TARGET", f"vllm serve {shlex.quote(target)}")
        raise UnsupportedDraftError(p_eagle_message(ckpt, reason), hint=hint)
