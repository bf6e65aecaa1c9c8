"""SGLang's `speculative_token_map.pt`: int64 [draft_vocab], the target id of each draft row, in row order.

SGLang uses it for EAGLE (1/2: the hot vocab) and ignores it for EAGLE3, which reads `d2t` from the
weights instead (`hot_token_id = d2t + arange`).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eaglectl.checkpoint.resolve import resolve
from eaglectl.checks.failure_modes import refuse
from eaglectl.enums import Algorithm
from eaglectl.errors import CheckpointError, OutputError
from eaglectl.export.atomic import locked_output, output_path, write_bytes_atomic
from eaglectl.export.plan import build_plan
from eaglectl.jsonfile import config_int

TOKEN_MAP = "speculative_token_map.pt"  # the file name SGLang docs and NeMo use

EAGLE3_NOTE = ("SGLang ignores --speculative-token-map for EAGLE3 (it reads the d2t tensor from the draft weights); "
               "this file only matters for EAGLE.")
EAGLE_NOTE = "SGLang uses this file for EAGLE: pass it as --speculative-token-map (eaglectl serve does)."


@dataclass
class TokenMapReport:
    source: str
    output: Path
    ids_from: str
    algorithm: Algorithm
    draft_vocab: int
    vocab: int | None
    first_ids: list[int]
    bytes: int
    seconds: float
    sglang_uses_it: bool
    note: str


def token_map_bytes(ids: Any) -> bytes:
    """A deterministic torch-serialised int64 tensor (no timestamps in torch's zip records)."""
    import torch

    buf = io.BytesIO()
    torch.save(ids.to(torch.int64).contiguous().clone(), buf)
    return buf.getvalue()


def write_token_map(path: str, *, output: str | Path | None = None) -> TokenMapReport:
    t0 = time.monotonic()
    ckpt = resolve(path)
    if ckpt.is_remote:
        raise CheckpointError(f"{path}: a Hugging Face Hub id; token-map works on local checkpoints")
    plan = build_plan(ckpt)
    refuse(ckpt, plan, only=("d2t-all-zero",))  # an unfilled d2t is no token map
    if plan.selected_ids is None:
        raise CheckpointError(f"{ckpt.source}: no selected_token_ids in a meta file and no d2t tensor: "
                              f"nothing to build a token map from")
    vocab = config_int(ckpt.config, "vocab_size")
    assert ckpt.root is not None
    out = output_path(Path(output) if output else ckpt.root / TOKEN_MAP)
    if out.is_dir():
        out = out / TOKEN_MAP
    data = token_map_bytes(plan.selected_ids)
    with locked_output(out):  # as export: the temp files a killed run left beside `out` go, under the lock
        try:
            write_bytes_atomic(out, data)
        except OSError as exc:
            raise OutputError(f"{out}: write failed ({exc.strerror or exc}); previous file left intact") from exc
    eagle3 = plan.algorithm is Algorithm.EAGLE3
    return TokenMapReport(
        source=ckpt.source, output=out, ids_from=plan.token_map_source or "", algorithm=plan.algorithm,
        draft_vocab=int(plan.selected_ids.numel()), vocab=vocab, first_ids=plan.selected_ids[:8].tolist(),
        bytes=len(data), seconds=time.monotonic() - t0, sglang_uses_it=not eagle3,
        note=EAGLE3_NOTE if eagle3 else EAGLE_NOTE)
