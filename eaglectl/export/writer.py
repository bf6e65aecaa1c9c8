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

from eaglectl.checkpoint.weights import NUMPY_DTYPES, changed_error, file_identity, nbytes, release_pages

CHUNK_BYTES = 64 * 1024 * 1024  # rows converted in user space per step: bounds memory
COPY_BYTES = 256 * 1024 * 1024  # one in-kernel copy step: no user memory, fewer writeback kicks


@dataclass
class RawSource:
    """Bytes already in the output dtype inside a file (a safetensors tensor with its dtype kept, or a pickled
    one stored raw in its zip)."""

    file: Path
    offset: int
    identity: tuple[int, int, int, int] | None = None  # (dev, inode, size, mtime_ns) when the plan was made


@dataclass(frozen=True)
class InMemory:
    """A tensor's bytes already in memory, as the output holds them (d2t / t2d built by the plan)."""

    data: bytes




def array_bytes(array: Any, dtype: str) -> InMemory:
    """A numpy array's bytes as a tensor of safetensors dtype `dtype` (little-endian, C order)."""
    import numpy as np

    want = np.dtype(NUMPY_DTYPES[dtype]).newbyteorder("<")
    return InMemory(np.ascontiguousarray(array, dtype=want).tobytes())


def rows_of(tensor: Any) -> Callable[[int | None, int | None], Any]:
    """A row reader over a tensor in memory (`OutTensor.source`)."""
    return lambda start, stop: tensor if start is None else tensor[start:stop]


@dataclass
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    # a byte range of a file, bytes in memory, or a row reader -> torch.Tensor
    source: RawSource | InMemory | Callable[[int | None, int | None], Any]
    mapped: tuple[tuple[int, int], ...] = ()  # address ranges of the file mapping behind the tensor, if any

    @property
    def nbytes(self) -> int:
        return nbytes(self.dtype, self.shape)


def header_bytes(tensors: list[OutTensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors header for `tensors` in this order, padded with spaces (as the format allows) so that the
    bytes copied from a source file keep their place within a page-cache folio (`aligned_padding`)."""
    raw = _header_json(tensors, metadata)
    pad = aligned_padding(8 + len(raw), [(t.nbytes, t.source.offset if isinstance(t.source, RawSource) else None)
                                         for t in tensors])
    raw += b" " * pad
    return len(raw).to_bytes(8, "little") + raw


def _header_json(tensors: list[OutTensor], metadata: dict[str, str] | None) -> bytes:
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


# The kernel copies a tensor's bytes fastest when they keep their offset within a page-cache folio: on ext4 with
# large folios (Linux 6.x), a copy whose source and destination offsets differ by a multiple of 64 KiB ran at ~2.4
# GB/s, by 8 bytes at ~0.9 GB/s, by 4 KiB at ~1.1 GB/s (copy_file_range of a 1.9 GB file, 2-core VM). Outputs
# copying at least ALIGN_MIN_BYTES get up to ALIGN_BYTES of header padding to line the most bytes up.
ALIGN_BYTES = 1024 * 1024
ALIGN_MIN_BYTES = 64 * 1024 * 1024


def aligned_padding(data_start: int, tensors: list[tuple[int, int | None]]) -> int:
    """Spaces to add after a header ending at `data_start` (a multiple of 8) so that the most bytes copied from a
    source file (tensors as (nbytes, source offset or None) in output order) sit at the same offset modulo
    ALIGN_BYTES as in their source; a multiple of 8, so every tensor keeps the alignment it had. 0 for outputs
    copying less than ALIGN_MIN_BYTES."""
    if sum(n for n, src in tensors if src is not None) < ALIGN_MIN_BYTES:
        return 0
    gain: dict[int, int] = {}
    offset = data_start
    for n, src in tensors:
        if src is not None:
            pad = (src - offset) % ALIGN_BYTES
            if pad % 8 == 0:
                gain[pad] = gain.get(pad, 0) + n
        offset += n
    return max(gain, key=lambda pad: (gain[pad], -pad)) if gain else 0


class SafetensorsFile:
    """One safetensors file being written: the header and the file's full size first, then each tensor's bytes
    at its own offset, in any order and from any thread (an export copies the stored tensors while it is still
    reading the meta file, and writes the tensors built from it afterwards). `finish` fsyncs and closes."""

    def __init__(self, path: Path, tensors: list[OutTensor], metadata: dict[str, str] | None = None) -> None:
        header = header_bytes(tensors, metadata)
        self.path = path
        self.tensors = tensors
        self.offsets: dict[str, int] = {}
        offset = len(header)
        for t in tensors:
            self.offsets[t.name] = offset
            offset += t.nbytes
        self.size = offset
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            _pwrite_all(self.fd, header, 0)
            os.ftruncate(self.fd, self.size)
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, which: Callable[[OutTensor], bool] = lambda t: True, *, on_bytes: Callable[[int], None] | None
              = None, on_tensor: Callable[[str], None] | None = None, stop: Any = None,
              on_overflow: Callable[[str], None] | None = None) -> None:
        """Write the tensors `which` picks, in file order; `on_tensor(name)` once each one's bytes are written;
        `on_overflow(name)` for a tensor whose conversion to its output dtype turned a finite value into Inf (the
        caller decides; the bytes are written either way). `stop` (an Event): give up between copy steps."""
        for t in self.tensors:
            if not which(t):
                continue
            if stop is not None and stop.is_set():
                return
            if isinstance(t.source, RawSource):
                _copy_range(t.source, t.nbytes, self.fd, self.offsets[t.name], on_bytes, stop)
            elif isinstance(t.source, InMemory):
                if len(t.source.data) != t.nbytes:
                    raise ValueError(f"{t.name}: {len(t.source.data)} bytes in memory, planned {t.nbytes}")
                _pwrite_all(self.fd, t.source.data, self.offsets[t.name])
                if on_bytes:
                    on_bytes(t.nbytes)
            elif _write_tensor(t, self.fd, self.offsets[t.name], on_bytes) and on_overflow:
                on_overflow(t.name)
            if on_tensor:
                on_tensor(t.name)

    def finish(self) -> int:
        """fsync and close; the file's size."""
        try:
            os.fsync(self.fd)
        finally:
            self.close()
        return self.size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def write_safetensors(path: Path, tensors: list[OutTensor], *, metadata: dict[str, str] | None = None,
                      on_bytes: Callable[[int], None] | None = None,
                      on_tensor: Callable[[str], None] | None = None,
                      on_overflow: Callable[[str], None] | None = None) -> int:
    """Write `tensors` (in the given order) to `path`, fsync it, and return the file size. `on_tensor(name)` is
    called once each tensor's bytes are written; `on_overflow` as `SafetensorsFile.write`."""
    out = SafetensorsFile(path, tensors, metadata)
    try:
        out.write(on_bytes=on_bytes, on_tensor=on_tensor, on_overflow=on_overflow)
    except BaseException:
        out.close()
        raise
    return out.finish()


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _copy_range(source: RawSource, nbytes: int, fd: int, dst: int, on_bytes, stop=None) -> None:
    src = source.file
    with open(src, "rb") as fin:
        if source.identity is not None and file_identity(fin.fileno()) != source.identity:
            raise changed_error(src)
        with contextlib.suppress(AttributeError, OSError):  # as cp does: a larger readahead window (cold files)
            os.posix_fadvise(fin.fileno(), source.offset, nbytes, os.POSIX_FADV_SEQUENTIAL)
        remaining, pos = nbytes, source.offset
        while remaining:
            if stop is not None and stop.is_set():
                return
            step = min(remaining, COPY_BYTES)
            try:
                n = os.copy_file_range(fin.fileno(), fd, step, pos, dst)
            except (AttributeError, OSError):
                n = 0
            if n <= 0:  # no kernel copy here (other OS, cross-device quirks): fall back to read/write
                step = min(step, CHUNK_BYTES)  # user memory stays bounded by the chunk size
                data = os.pread(fin.fileno(), step, pos)
                if len(data) != step:  # truncated since the plan was made
                    raise changed_error(src)
                _pwrite_all(fd, data, dst)
                n = step
            _start_writeback(fd)
            pos += n
            dst += n
            remaining -= n
            if on_bytes:
                on_bytes(n)


def _write_tensor(t: OutTensor, fd: int, offset: int, on_bytes) -> bool:
    """Write a tensor given as a row reader `source(start, stop)` (`source(None, None)` = whole tensor),
    converting to the output dtype one chunk of rows at a time. True when the conversion overflowed: a finite
    value beyond the output dtype's range became Inf (float16 ends at 65504)."""
    from eaglectl.checkpoint.weights import torch_dtype

    want = torch_dtype(t.dtype)
    read = t.source
    if not t.shape or t.shape[0] == 0:
        part = read(None, None)  # type: ignore[operator]
        converted = part.to(want).contiguous()
        _write_contiguous(converted, fd, offset, on_bytes)
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
        offset += _write_contiguous(converted, fd, offset, on_bytes)
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


def _write_contiguous(tensor, fd: int, offset: int, on_bytes) -> int:
    """Write a contiguous tensor's bytes at `offset`; the number of bytes."""
    n = tensor.numel() * tensor.element_size()
    if n == 0:
        return 0
    view = memoryview((ctypes.c_ubyte * n).from_address(tensor.data_ptr())).cast("B")
    _pwrite_all(fd, view, offset)
    if n >= CHUNK_BYTES // 4:
        _start_writeback(fd)
    if on_bytes:
        on_bytes(n)
    return n
