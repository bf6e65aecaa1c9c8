"""NaN / Inf in a drafter's weights: a chunked scan of only the tensors SGLang would load.

Shared by `inspect` (a finding) and `export` (a warning beside the copy); reading weights, so it lives with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eaglectl.checkpoint.names import parse_name
from eaglectl.checkpoint.weights import FLOAT_DTYPES, WeightSet

SCAN_CHUNK_BYTES = 16 * 1024 * 1024


@dataclass
class NonFinite:
    name: str
    nan: int
    inf: int

    def __str__(self) -> str:
        counts = [f"{n} {what}" for n, what in ((self.nan, "NaN"), (self.inf, "Inf")) if n]
        return f"{self.name} ({', '.join(counts)})"


def scanned_tensors(ws: WeightSet, names: Iterable[str] | None = None) -> list[str]:
    """The floating tensors whose values matter to SGLang: all but the draft embeddings, which it replaces with
    the target's (they are also the largest tensor, so leaving them out keeps the scan cheap)."""
    return [n for n in (ws.tensors if names is None else names)
            if ws.tensors[n].dtype in FLOAT_DTYPES and parse_name(n).base != "embed_tokens.weight"]


def scan_non_finite(ws: WeightSet, names: Iterable[str], *, stop: Any = None,
                    before: Callable[[str], None] | None = None) -> list[NonFinite]:
    """Count NaN and ±Inf values, one chunk of rows (about `SCAN_CHUNK_BYTES`) at a time. `before(name)`, if
    given, runs before each tensor is read (an export uses it to follow its writer through the page cache).

    Cost: one sequential read of the scanned tensors (page cache or disk speed; ~0.2 s per GB from cache) and
    memory for a couple of chunks, whatever the checkpoint size. A single row larger than a chunk is read whole.
    """
    import torch

    found: list[NonFinite] = []
    for name in names:
        info = ws.tensors[name]
        if info.numel == 0:
            continue
        if before is not None:
            before(name)
        nan = inf = 0
        for part in ws.iter_row_chunks(name, SCAN_CHUNK_BYTES):
            if stop is not None and stop.is_set():  # the caller gave up (an export that failed)
                return found
            if part.element_size() == 1:  # float8: no isfinite / aminmax kernel everywhere
                part = part.to(torch.float16)
            # Fast path: min and max propagate NaN and are +-Inf when any value is, and one fused reduction
            # runs at memory speed (~40x an isfinite mask); exact counts only for a chunk that fails it.
            low, high = torch.aminmax(part)
            if bool(torch.isfinite(low)) and bool(torch.isfinite(high)):
                continue
            finite = torch.isfinite(part)
            n_nan = int(torch.isnan(part).sum())
            nan += n_nan
            inf += int(finite.numel() - finite.sum()) - n_nan
        if nan or inf:
            found.append(NonFinite(name, nan, inf))
    return found


def non_finite_message(found: list[NonFinite]) -> str:
    listed = ", ".join(map(str, found[:6])) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    return (f"{len(found)} tensor(s) hold NaN / Inf values: {listed}; SGLang loads them as they are and the "
            f"drafter's proposals are garbage (accept length ~1.0)")
