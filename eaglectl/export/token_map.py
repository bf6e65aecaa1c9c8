"""SGLang's `speculative_token_map.pt`: int64 [draft_vocab], the target id of each draft row, in row order.

SGLang uses it for EAGLE (1/2: the hot vocab) and ignores it for EAGLE3, which reads `d2t` from the
weights instead (`hot_token_id = d2t + arange`).
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eaglectl import interrupts
from eaglectl.checkpoint.resolve import DIM_LIMITS, resolve
from eaglectl.enums import Algorithm
from eaglectl.errors import CheckpointError, OutputError
from eaglectl.export.atomic import locked_output, output_path, write_bytes_atomic
from eaglectl.export.outputs import refuse_foreign_file, refuse_source_overlap, source_paths
from eaglectl.export.plan import build_plan
from eaglectl.export.servable import refuse
from eaglectl.jsonfile import config_int

TOKEN_MAP = "speculative_token_map.pt"  # the file name SGLang docs and NeMo use
# The largest token map eaglectl writes (one int64 per draft row) plus torch's zip records.
MAX_TOKEN_MAP_BYTES = 8 * DIM_LIMITS["draft_vocab_size"] + 64 * 1024

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
    """A deterministic torch-serialised int64 tensor (no timestamps in torch's zip records) of `ids` (a numpy
    array or a torch tensor)."""
    import numpy as np
    import torch

    if isinstance(ids, np.ndarray):
        ids = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
    buf = io.BytesIO()
    torch.save(ids.to(torch.int64).contiguous().clone(), buf)
    return buf.getvalue()


def is_own_token_map(data: bytes) -> bool:
    """Whether `data` is exactly what `token_map_bytes` writes for some ids: eaglectl's own token map, and so
    a file eaglectl may replace. Nothing is unpickled: the ids are read from the zip's one stored data record
    and serialised again, and the two byte strings must be equal. (A map written by another torch version may
    differ in its records and is then treated as not eaglectl's.)"""
    import zipfile

    if not data.startswith(b"PK\x03\x04") or len(data) < 22 or data[-22:-18] != b"PK\x05\x06":
        return False
    if int.from_bytes(data[-12:-10], "little") > 16:  # the end record's entry count: torch writes 7
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            records = [i for i in zf.infolist() if i.filename.endswith("/data/0")]
            if len(records) != 1 or records[0].compress_type != zipfile.ZIP_STORED or records[0].file_size % 8:
                return False
            size = records[0].file_size
            if not size or size > 8 * DIM_LIMITS["draft_vocab_size"]:
                return False
            with zf.open(records[0]) as fh:
                raw = bytearray(fh.read(size))  # size is capped above
            if len(raw) != size:
                return False
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return False
    import torch

    return token_map_bytes(torch.frombuffer(raw, dtype=torch.int64)) == data


def write_token_map(path: str, *, output: str | Path | None = None,
                    draft_config: str | None = None) -> TokenMapReport:
    t0 = time.monotonic()
    ckpt = resolve(path, draft_config=draft_config)
    plan = build_plan(ckpt)
    refuse(ckpt, plan, only=("d2t-all-zero",))  # an unfilled d2t is no token map
    if plan.selected_ids is None and plan.algorithm is Algorithm.EAGLE:
        raise CheckpointError(
            f"{ckpt.source}: this EAGLE head drafts over the whole vocabulary (no selected_token_ids in a meta file, "
            f"no d2t tensor): nothing to build a token map from, and SGLang serves it without "
            f"--speculative-token-map",
            hint="a token map comes only with a head trained on a reduced draft vocabulary (selected_token_ids in "
                 "eagle_meta.pt); `eaglectl serve` passes none for this one")
    if plan.selected_ids is None:
        raise CheckpointError(f"{ckpt.source}: no selected_token_ids in a meta file and no d2t tensor: "
                              f"nothing to build a token map from",
                              hint="an EAGLE-3 head needs its d2t tensor, or the eagle3_meta.pt it was trained with")
    vocab = config_int(ckpt.config, "vocab_size")
    assert ckpt.root is not None
    beside = Path.cwd() if ckpt.hub is not None else ckpt.root  # never into the Hub cache
    out = output_path(Path(output) if output is not None else beside / TOKEN_MAP)
    if out.is_dir():
        out = output_path(out / TOKEN_MAP)
    refuse_source_overlap(out, source_paths(ckpt), hint="pass --output with a new file outside the checkpoint's files")
    data = token_map_bytes(plan.selected_ids)
    with locked_output(out):  # as export: the temp files a killed run left beside `out` go, under the lock
        refuse_foreign_file(out, is_own_token_map, cap=MAX_TOKEN_MAP_BYTES, what="token map")
        previous = os.path.lexists(out)
        try:
            with interrupts.held():  # a signal here lands before the replace (nothing replaced) or after it (done)
                write_bytes_atomic(out, data)
                interrupts.committed()
        except OSError as exc:
            left = "previous file left intact" if previous else "nothing written"
            raise OutputError(f"{out}: write failed ({exc.strerror or exc}); {left}") from exc
    eagle3 = plan.algorithm is Algorithm.EAGLE3
    return TokenMapReport(
        source=ckpt.source, output=out, ids_from=plan.token_map_source or "", algorithm=plan.algorithm,
        draft_vocab=int(plan.selected_ids.size), vocab=vocab, first_ids=plan.selected_ids[:8].tolist(),
        bytes=len(data), seconds=time.monotonic() - t0, sglang_uses_it=not eagle3,
        note=EAGLE3_NOTE if eagle3 else EAGLE_NOTE)
