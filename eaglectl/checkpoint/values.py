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
RAW_SCAN_CHUNK_BYTES = 4 * 1024 * 1024  # two passes over a chunk that stays in the CPU's cache
# float dtype -> (unsigned view, mask clearing the sign, first non-finite bits, bits of Inf): with the sign
# cleared, a value is non-finite from the first bits on (IEEE: Inf's, then the NaNs), Inf when equal to Inf's.
# float8_e4m3fn has no Inf: its one non-finite value is NaN (0x7F; 0x7E is 448).
_BITS: dict[str, tuple[str, int, int, int | None]] = {
    "BF16": ("<u2", 0x7FFF, 0x7F80, 0x7F80), "F16": ("<u2", 0x7FFF, 0x7C00, 0x7C00),
    "F32": ("<u4", 0x7FFF_FFFF, 0x7F80_0000, 0x7F80_0000),
    "F64": ("<u8", 0x7FFF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000, 0x7FF0_0000_0000_0000),
    "F8_E5M2": ("u1", 0x7F, 0x7C, 0x7C), "F8_E4M3": ("u1", 0x7F, 0x7F, None)}


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
    memory for a couple of chunks, whatever the checkpoint size. Tensors stored as plain bytes (safetensors) are
    checked bit by bit with numpy, without torch; others a chunk of rows at a time with torch (a single row
    larger than a chunk is read whole).
    """
    found: list[NonFinite] = []
    for name in names:
        info = ws.tensors[name]
        if info.numel == 0:
            continue
        if before is not None:
            before(name)
        counts = _scan_raw(ws, name, stop)
        if counts is None:
            counts = _scan_rows(ws, name, stop)
        if stop is not None and stop.is_set():
            return found
        if counts[0] or counts[1]:
            found.append(NonFinite(name, *counts))
    return found


def prepare_scan(ws: WeightSet, names: Iterable[str]) -> None:
    """Import what `scan_non_finite` will need for `names` (numpy; torch where a tensor's bytes are not stored
    plainly), so that a scan run in a thread imports nothing: a signal landing in the main thread during an
    import can leave the import lock held, and the thread would wait for it forever."""
    import numpy  # noqa: F401

    if any(not ws.stored_plainly(n) or ws.tensors[n].dtype not in _BITS for n in names):
        import torch  # noqa: F401


def _scan_raw(ws: WeightSet, name: str, stop: Any) -> tuple[int, int] | None:
    """(NaN, Inf) counts from the stored bits, or None when the tensor's bytes are not stored plainly. Fast
    path: the largest value with the sign cleared; counts only for a chunk whose largest is non-finite."""
    import numpy as np

    dtype = ws.tensors[name].dtype
    chunks = ws.raw_chunks(name, RAW_SCAN_CHUNK_BYTES) if dtype in _BITS else None
    if chunks is None:
        return None
    view, mask, first_bad, inf_bits = _BITS[dtype]
    scratch = np.empty(RAW_SCAN_CHUNK_BYTES // np.dtype(view).itemsize, dtype=np.dtype(view).newbyteorder("="))
    nan = inf = 0
    for raw in chunks:
        if stop is not None and stop.is_set():
            break
        values = np.frombuffer(raw, dtype=view)
        bits = scratch[:values.size]
        np.bitwise_and(values, mask, out=bits)
        if bits.max() < first_bad:
            continue
        n_inf = int(np.count_nonzero(bits == inf_bits)) if inf_bits is not None else 0
        nan += int(np.count_nonzero(bits >= first_bad)) - n_inf
        inf += n_inf
    return nan, inf


def _scan_rows(ws: WeightSet, name: str, stop: Any) -> tuple[int, int]:
    """(NaN, Inf) counts with torch, a chunk of rows at a time (any stored layout)."""
    import torch

    nan = inf = 0
    for part in ws.iter_row_chunks(name, SCAN_CHUNK_BYTES):
        if stop is not None and stop.is_set():  # the caller gave up (an export that failed)
            break
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
    return nan, inf


def non_finite_message(found: list[NonFinite]) -> str:
    listed = ", ".join(map(str, found[:6])) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
    return (f"{len(found)} tensor(s) hold NaN / Inf values: {listed}; SGLang loads them as they are and the "
            f"drafter's proposals are garbage (accept length ~1.0)")
