"""P-EAGLE (parallel drafting) heads: SGLang cannot serve them; say so and name the route that works."""

from __future__ import annotations

from eaglectl.checkpoint.resolve import Checkpoint, is_p_eagle
from eaglectl.errors import UnsupportedDraftError

VLLM_ROUTE = (
    "serve it with vLLM >= 0.16, which runs P-EAGLE heads: `eaglectl export DRAFT --format speculators` writes the "
    "layout vLLM reads and `eaglectl serve --engine vllm --target TARGET --draft DRAFT` runs "
    "vllm serve TARGET --speculative-config "
    "'{\"method\": \"eagle3\", \"model\": \"EXPORT\", \"num_speculative_tokens\": 3, \"parallel_drafting\": true}'"
)
EXPORT_DIR = "speculators"  # where `export --format speculators` writes by default (eaglectl.export.speculators_format)


def p_eagle_message(ckpt: Checkpoint, reason: str) -> str:
    return (f"{ckpt.source} is a P-EAGLE (parallel drafting) head ({reason}); SGLang ignores mask_hidden / "
            f"mask_token_id and would mis-serve it as a plain EAGLE-3 head")


def vllm_route(ckpt: Checkpoint, target: str | None = None) -> str:
    """How a P-EAGLE head is served (with vLLM), for this drafter (and target, when known)."""
    from eaglectl.output import shell_quote  # as serve --print-only quotes: `$'...'` for bytes that are not UTF-8

    root = ckpt.root if ckpt.hub is None and ckpt.root is not None else None
    name = (ckpt.hub_id or "draft").split("/")[-1]
    export = str(root / EXPORT_DIR) if root is not None else f"./{name}-{EXPORT_DIR}"
    return (VLLM_ROUTE.replace("DRAFT", shell_quote(ckpt.source)).replace("EXPORT", export)
            .replace("TARGET", shell_quote(target) if target else "TARGET"))


def reject_p_eagle(ckpt: Checkpoint, target: str | None = None) -> None:
    """Refuse a P-EAGLE head (SGLang cannot serve it), with the commands that serve it with vLLM."""
    reason = is_p_eagle(ckpt)
    if reason:
        raise UnsupportedDraftError(p_eagle_message(ckpt, reason), hint=vllm_route(ckpt, target))
