"""A streaming safetensors writer: header first, then each tensor's bytes, one bounded chunk at a time.

Why not `safetensors.torch.save_file`: it needs every tensor in memory at once (and numpy). Here a tensor
stored as safetensors with its dtype kept is copied byte for byte in the kernel (`copy_file_range`), and a
mmap-backed tensor is written in chunks whose pages are released behind us, so memory stays bounded by the
chunk size whatever the checkpoint size. Tensors are written in name order and the header has no
timestamps, so the same input always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eaglectl.checkpoint.weights import changed_error, file_identity, nbytes, release_pages

CHUNK_BYTES = 64 * 1024 * 1024  # rows converted in user space per step: bounds memory
COPY_BYTES = 256 * 1024 * 1024  # one in-kernel copy step: no user memory, fewer writeback kicks


@dataclass
class RawSource:
    """Bytes already in the output dtype inside a file (a safetensors tensor with its dtype kept, or a pickled
    one stored raw in its zip)."""

    file: Path
    offset: int
    identity: tuple[int, int, int, int] | None = None  # (dev, inode, size, mtime_ns) when the plan was made


def rows_of(tensor: Any) -> Callable[[int | None, int | None], Any]:
    """A row reader over a tensor in memory (`OutTensor.source`)."""
    return lambda start, stop: tensor if start is None else tensor[start:stop]


@dataclass
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    source: RawSource | Callable[[int | None, int | None], Any]  # raw bytes, or a row reader -> torch.Tensor
    mapped: tuple[tuple[int, int], ...] = ()  # address ranges of the file mapping behind the tensor, if any

    @property
    def nbytes(self) -> int:
        return nbytes(self.dtype, self.shape)


def header_bytes(tensors: list[OutTensor], metadata: dict[str, str] | None = None) -> bytes:
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def write_safetensors(path: Path, tensors: list[OutTensor], *, metadata: dict[str, str] | None = None,
                      on_bytes: Callable[[int], None] | None = None,
                      on_tensor: Callable[[str], None] | None = None,
                      on_overflow: Callable[[str], None] | None = None) -> int:
    """Write `tensors` (in the given order) to `path`, fsync it, and return the file size. `on_tensor(name)` is
    called once each tensor's bytes are written; `on_overflow(name)` for a tensor whose conversion to its output
    dtype turned a finite value into Inf (the caller decides; the file is written either way)."""
    with open(path, "wb") as out:
        out.write(header_bytes(tensors, metadata))
        out.flush()
        for t in tensors:
            if isinstance(t.source, RawSource):
                _copy_range(t.source, t.nbytes, out, on_bytes)
            elif _write_tensor(t, out, on_bytes) and on_overflow:
                on_overflow(t.name)
            if on_tensor:
                on_tensor(t.name)
        out.flush()
        os.fsync(out.fileno())
        return out.tell()


def _copy_range(source: RawSource, nbytes: int, out, on_bytes) -> None:
    src = source.file
    out.flush()  # the kernel copy writes at the fd's position: buffered bytes must land first
    with open(src, "rb") as fin:
        if source.identity is not None and file_identity(fin.fileno()) != source.identity:
            raise changed_error(src)
        with contextlib.suppress(AttributeError, OSError):  # as cp does: a larger readahead window (cold files)
            os.posix_fadvise(fin.fileno(), source.offset, nbytes, os.POSIX_FADV_SEQUENTIAL)
        remaining, pos = nbytes, source.offset
        while remaining:
            step = min(remaining, COPY_BYTES)
            try:
                n = os.copy_file_range(fin.fileno(), out.fileno(), step, pos)
            except (AttributeError, OSError):
                n = 0
            if n <= 0:  # no kernel copy here (other OS, cross-device quirks): fall back to read/write
                step = min(step, CHUNK_BYTES)  # user memory stays bounded by the chunk size
                fin.seek(pos)
                data = fin.read(step)
                if len(data) != step:  # truncated since the plan was made
                    raise changed_error(src)
                out.write(data)
                out.flush()
                n = step
            _start_writeback(out.fileno())
            pos += n
            remaining -= n
            if on_bytes:
                on_bytes(n)
        out.seek(0, os.SEEK_END)


def _write_tensor(t: OutTensor, out, on_bytes) -> bool:
    """Write a tensor given as a row reader `source(start, stop)` (`source(None, None)` = whole tensor),
    converting to the output dtype one chunk of rows at a time. True when the conversion overflowed: a finite
    value beyond the output dtype's range became Inf (float16 ends at 65504)."""
    from eaglectl.checkpoint.weights import torch_dtype

    want = torch_dtype(t.dtype)
    read = t.source
    if not t.shape or t.shape[0] == 0:
        part = read(None, None)  # type: ignore[operator]
        converted = part.to(want).contiguous()
        _write_contiguous(converted, out, on_bytes)
        return _overflowed(part, converted)
    row_bytes = max(1, t.nbytes // t.shape[0])
    rows = max(1, CHUNK_BYTES // row_bytes)
    overflow = False
    for start in range(0, t.shape[0], rows):
        stop = min(start + rows, t.shape[0])
        part = read(start, stop)  # type: ignore[operator]
        if tuple(part.shape) != (stop - start, *t.shape[1:]):
            raise ValueError(f"{t.name}: rows {start}:{stop} have shape {tuple(part.shape)}, planned {t.shape}")
        converted = part.to(want).contiguous()
        _write_contiguous(converted, out, on_bytes)
        overflow = overflow or _overflowed(part, converted)
        del converted
        release_pages(part, t.mapped)
    return overflow


def _overflowed(part, converted) -> bool:
    """Whether converting `part` made a finite value Inf (a NaN or Inf already there is the scan's business)."""
    import torch

    if part.dtype == converted.dtype or not converted.is_floating_point():
        return False
    inf = torch.isinf(converted)
    return bool(inf.any()) and bool((inf & torch.isfinite(part)).any())


_sync_file_range: Callable[[int, int, int, int], int] | None = None  # libc's, once looked up
_sync_file_range_missing = False


def _start_writeback(fd: int) -> None:
    """Start writing dirty pages back now (Linux `sync_file_range`, asynchronous), so the closing fsync
    overlaps with the copy instead of following it. Best effort: a no-op where unavailable."""
    global _sync_file_range, _sync_file_range_missing
    if _sync_file_range_missing:
        return
    try:
        if _sync_file_range is None:
            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
            _sync_file_range = fn
        _sync_file_range(fd, 0, 0, 2)  # whole file, SYNC_FILE_RANGE_WRITE
    except (OSError, AttributeError):
        _sync_file_range_missing = True


def _write_contiguous(tensor, out, on_bytes) -> None:
    n = tensor.numel() * tensor.element_size()
    if n == 0:
        return
    view = memoryview((ctypes.c_ubyte * n).from_address(tensor.data_ptr())).cast("B")
    out.write(view)
    if n >= CHUNK_BYTES // 4:
        out.flush()
        _start_writeback(out.fileno())
    if on_bytes:
        on_bytes(n)
