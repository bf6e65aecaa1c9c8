"""Lazy access to a checkpoint's tensors: names, dtypes, shapes and byte ranges without reading the data.

safetensors: the header is parsed and validated here, within limits (it also gives the byte offsets that let
export copy tensors without decoding them). Pickles (`.pt` / `.bin`): the zip's declared sizes are checked
first, then always `torch.load(weights_only=True, mmap=True)`, so no pickled code runs and nothing is read yet.
Tensor values are then read with `pread` into private buffers, never through a mapping: a file truncated
meanwhile is a short read (one clear error), where a mapped page past its end would be a SIGBUS.
"""

from __future__ import annotations

import contextlib
import functools
import math
import mmap
import os
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglectl.checkpoint.pickle_scan import MAX_NESTING, tuple_nesting
from eaglectl.checkpoint.small_pickle import StoredTensor, read_tensor_index
from eaglectl.errors import CheckpointError
from eaglectl.jsonfile import JsonLimits, loads_bounded

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit (its Rust reader refuses larger headers)
# Tensors in one drafter checkpoint (what eaglectl reads: a target's weights are read by transformers or SGLang):
# a head has a few layers, tens of tensors; 10,000 holds a 600-layer head. Every tensor is replayed against each
# SGLang release range and reported: 100,000 one-element tensors (a 7 MB header) cost inspect 90 s and 0.9 GB,
# 10,000 cost 9 s. Millions of entries are refused before each costs a Python object.
MAX_TENSORS = 10_000
MAX_SHARDS = 4096  # 2 TB of bf16 weights in 5 GB shards is ~400
# A safetensors header entry is `"name":{"dtype":..,"shape":[..],"data_offsets":[a,b]}`: 3 containers and
# about 12 values (18 with an 8-D shape); the depth is 3 (header, entry, shape).
HEADER_LIMITS = JsonLimits(max_bytes=MAX_HEADER_BYTES, max_containers=3 * MAX_TENSORS + 8,
                           max_values=24 * MAX_TENSORS + 10_000, max_depth=3)
# torch.save writes ~130 bytes of pickle per tensor (plus its name); a pickle much larger than its archive's
# records need is refused unread: the weights-only unpickler builds up to ~70 bytes of Python objects per byte.
PICKLE_BASE_BYTES = 1024 * 1024
PICKLE_BYTES_PER_RECORD = 1024
# Tensors may share storage (tied embeddings: 2x); more than this many times the file's size in declared
# tensor bytes is views repeating the same bytes, which an export would write out again and again.
MAX_VIEW_FACTOR = 4


# safetensors dtype code -> item size in bytes
ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
FLOAT_DTYPES = {"F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64"}
# safetensors dtype code -> numpy dtype name, for the codes numpy reads as stored (not bf16 / fp8, not unsigned
# ids torch cannot read: those go through torch, whose refusal names them)
NUMPY_DTYPES = {"I64": "int64", "I32": "int32", "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16",
                "F32": "float32", "F64": "float64", "F16": "float16"}


def nbytes(dtype: str, shape: tuple[int, ...] | list[int]) -> int:
    """Bytes of a tensor of this safetensors dtype code and shape."""
    return math.prod(shape) * ITEMSIZE[dtype]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as stored: enough to plan an export without touching its data."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    data_offset: int | None = None  # absolute byte offset of the contiguous bytes: enables a raw byte copy

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return nbytes(self.dtype, self.shape)


@dataclass
class WeightSet:
    """All tensors of a checkpoint, possibly over several shards."""

    format: str  # "safetensors" | "torch"
    files: list[Path]
    tensors: dict[str, TensorInfo]
    index_file: Path | None = None
    remote: bool = False  # headers read from the Hub: names, dtypes and shapes, no data here
    _pickles: dict[Path, dict[str, Any]] = field(default_factory=dict, repr=False, metadata={"internal": True})
    _mapped: dict[Path, Any] = field(default_factory=dict, repr=False, metadata={"internal": True})
    # (st_dev, st_ino, st_size, st_mtime_ns) of each file when opened: a raw copy refuses a file replaced since
    identity: dict[Path, tuple[int, int, int, int]] = field(default_factory=dict, repr=False,
                                                          metadata={"internal": True})
    _swapped: set[Path] = field(default_factory=set, repr=False, metadata={"internal": True})
    doing: str = field(default="reading", repr=False, metadata={"internal": True})  # named if a file changes
    # stored name -> (file offset of element 0, strides in elements, byte-swap needed): how to `pread` a tensor
    _spans: dict[str, tuple[int, tuple[int, ...], bool]] = field(default_factory=dict, repr=False,
                                                                 metadata={"internal": True})

    def releasable_ranges(self, path: Path) -> tuple[tuple[int, int], ...]:
        """Where `path` is mapped, if its pages may be dropped after use and re-read from the file: not for a
        pickle whose tensors torch byte-swapped in memory (the file holds the other byte order)."""
        if path in self._swapped:
            return ()
        if path not in self._mapped:
            self._mapped[path] = tuple((lo, hi) for lo, hi, _ in file_mappings(path))
        return self._mapped[path]

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def load(self, name: str):
        """One tensor's values (a torch.Tensor in private memory), read with `pread` like `load_rows`."""
        info = self.tensors[name]
        return self.load_rows(name, 0, info.shape[0]) if info.shape else self._read(name, None, None)

    def load_array(self, name: str) -> Any:
        """One tensor's values as a numpy array. Read from its stored bytes when they lie plainly in a dtype numpy
        has (d2t, t2d: no torch needed), else through `load` and converted (`arrays.as_numpy`)."""
        info = self.tensors[name]
        np_name = NUMPY_DTYPES.get(info.dtype)
        if np_name is None or not self.stored_plainly(name):
            from eaglectl.checkpoint.arrays import as_numpy

            return as_numpy(self.load(name))
        import numpy as np

        dtype = np.dtype(np_name).newbyteorder("<")
        if info.numel == 0:
            return np.empty(info.shape, dtype=dtype)
        assert info.data_offset is not None
        return np.frombuffer(self._pread(info.file, info.data_offset, info.nbytes), dtype=dtype).reshape(info.shape)

    def load_rows(self, name: str, start: int, stop: int):
        """Rows [start, stop) of a tensor, for bounded-memory streaming of large matrices.

        The bytes are `pread` from the file into a private buffer, never read through a mapping: a source
        truncated meanwhile gives a short read (one clear error) where a mapped page past the new end of the
        file would kill the process with SIGBUS. The file's identity is checked on each read too."""
        return self._read(name, start, stop)

    def iter_row_chunks(self, name: str, chunk_bytes: int):
        """A tensor's values as chunks of whole rows (about `chunk_bytes` each), for scans whose memory must
        stay bounded (each chunk is a private buffer, freed once the caller moves on)."""
        info = self.tensors[name]
        if not info.shape or info.numel == 0:
            yield self.load(name)
            return
        rows = info.shape[0]
        row_bytes = max(1, info.nbytes // rows)
        step = max(1, chunk_bytes // row_bytes)
        for start in range(0, rows, step):
            yield self._read(name, start, min(start + step, rows))

    def stored_plainly(self, name: str) -> bool:
        """Whether a tensor's bytes lie in its file as they are (little-endian, C order, one range)."""
        info = self.tensors[name]
        return not self.remote and info.data_offset is not None and info.file not in self._swapped

    def raw_chunks(self, name: str, chunk_bytes: int) -> Iterator[memoryview] | None:
        """A tensor's bytes as stored (little-endian, C order) in chunks of about `chunk_bytes`, `pread` like
        `load_rows`, for scans that need no torch; None when the bytes are not stored that way (a pickle's view
        with other strides, a file of the other byte order, a header from the Hub). Each chunk is a view of one
        buffer the next chunk overwrites: use it before asking for the next."""
        if not self.stored_plainly(name):
            return None
        info = self.tensors[name]
        assert info.data_offset is not None
        offset, total = info.data_offset, info.nbytes
        item = ITEMSIZE[info.dtype]
        step = max(item, chunk_bytes - chunk_bytes % item)

        def chunks() -> Iterator[memoryview]:
            buf = memoryview(bytearray(min(step, total)))
            with self._open_checked(info.file) as fd:
                for start in range(0, total, step):
                    view = buf[:min(step, total - start)]
                    self._pread_into(fd, info.file, offset + start, view)
                    yield view

        return chunks()

    @contextlib.contextmanager
    def _open_checked(self, path: Path) -> Iterator[int]:
        """`path` opened for reading, refused if it was rewritten or replaced since it was opened first."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise changed_error(path, self.doing) from exc
        try:
            if path in self.identity and file_identity(fd) != self.identity[path]:
                raise changed_error(path, self.doing)
            yield fd
        finally:
            os.close(fd)

    def _pread_into(self, fd: int, path: Path, offset: int, view: memoryview) -> None:
        """Fill `view` from `offset`; a short read is a file truncated since it was opened."""
        got = 0
        while got < len(view):
            if hasattr(os, "preadv"):
                n = os.preadv(fd, [view[got:]], offset + got)
            else:  # pragma: no cover - platforms without preadv
                chunk = os.pread(fd, len(view) - got, offset + got)
                n = len(chunk)
                view[got:got + n] = chunk
            if n <= 0:
                raise changed_error(path, self.doing)
            got += n

    def _read(self, name: str, start: int | None, stop: int | None):
        import torch

        info = self.tensors[name]
        if self.remote:
            raise CheckpointError(f"{info.file}: tensor {name!r} was read as a header from the Hub; its data is not "
                                  f"downloaded")
        shape = info.shape if start is None or stop is None else (stop - start, *info.shape[1:])
        if not readable_dtype(info.dtype):
            raise CheckpointError(f"{info.file}: tensor {name!r} has dtype {info.dtype}, which torch cannot read")
        dtype = torch_dtype(info.dtype)
        if math.prod(shape) == 0:
            return torch.empty(shape, dtype=dtype)
        offset, strides, swap = self._spans.get(name) or (info.data_offset, _contiguous_strides(info.shape), False)
        if offset is None:
            raise CheckpointError(f"{info.file}: tensor {name!r} has no readable bytes in the file")
        itemsize = ITEMSIZE[info.dtype]
        first = (start or 0) * strides[0] if shape else 0
        extent = 1 + sum((n - 1) * st for n, st in zip(shape, strides, strict=True))
        raw = torch.frombuffer(self._pread(info.file, offset + first * itemsize, extent * itemsize),
                               dtype=torch.uint8)
        if swap and itemsize > 1:  # the file holds the other byte order: torch swapped its own copy in memory
            raw = raw.view(-1, itemsize).flip(1).reshape(-1)
        return torch.as_strided(raw.view(dtype), shape, strides)

    def _pread(self, path: Path, offset: int, size: int) -> bytearray:
        """`size` bytes at `offset` of `path`, refusing a file rewritten, replaced or truncated since it was
        opened (the same error as the raw copy's)."""
        buf = bytearray(size)
        with self._open_checked(path) as fd:
            self._pread_into(fd, path, offset, memoryview(buf))
        return buf


# --------------------------------------------------------------------------------------------- safetensors
def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and validate a safetensors header; raise `CheckpointError` naming what is wrong."""
    try:
        size = regular_file_size(path)
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise CheckpointError(
                    f"{path}: corrupt safetensors header length {n} (file is {size} bytes)")
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({exc})") from exc
    header = loads_bounded(raw, HEADER_LIMITS, where=str(path), what="safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    if len(header) - ("__metadata__" in header) > MAX_TENSORS:
        raise CheckpointError(f"{path}: safetensors header lists {len(header)} tensors (at most {MAX_TENSORS})")
    return header_tensors(header, path, base=8 + n, size=size)


def header_tensors(header: dict[str, Any], path: Path, *, base: int | None, size: int | None) -> dict[str, TensorInfo]:
    """Validate the entries of a parsed safetensors header. `base` (where the data starts) and `size` (of the
    file) are None for a header read remotely: then the offsets are checked against the shapes only, and the
    tensors have no readable bytes here."""
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}") from exc
        if not isinstance(dtype, str) or dtype not in ITEMSIZE:
            raise CheckpointError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
            raise CheckpointError(f"{path}: tensor {name!r} has invalid data offsets {[begin, end]!r}")
        expected = nbytes(dtype, shape)
        if end - begin != expected:
            raise CheckpointError(
                f"{path}: tensor {name!r} spans {end - begin} bytes but {dtype}{list(shape)} needs {expected}")
        if base is not None and size is not None and base + end > size:
            raise CheckpointError(
                f"{path}: tensor {name!r} lies past the end of the file (truncated? {size} bytes)")
        tensors[name] = TensorInfo(name, dtype, tuple(shape), path, None if base is None else base + begin)
    return tensors


def changed_error(path: Path, doing: str = "exporting") -> CheckpointError:
    """A source file that changed under eaglectl: refused, never read half old and half new."""
    again = "the export" if doing == "exporting" else "eaglectl"
    return CheckpointError(f"{path}: changed while eaglectl was {doing} it (rewritten, replaced or truncated); "
                           f"run {again} again once it is stable")


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def regular_file_size(path: Path) -> int:
    """The size of `path`, refusing FIFOs, devices and directories (reading a FIFO would block forever)."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file")
    return st.st_size


# ------------------------------------------------------------------------------------------------- pickles
@functools.cache
def _torch_dtype_codes() -> dict[Any, str]:
    """torch dtype -> safetensors dtype code, built once (needs torch)."""
    import torch

    codes = {
        torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32",
        torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
        torch.float64: "F64",
    }
    for attr, code in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("uint16", "U16"),
                       ("uint32", "U32"), ("uint64", "U64")):
        if hasattr(torch, attr):
            codes[getattr(torch, attr)] = code
    return codes


def torch_dtype_code(dtype: Any) -> str:
    codes = _torch_dtype_codes()
    if dtype not in codes:
        raise CheckpointError(f"unsupported tensor dtype {dtype}")
    return codes[dtype]


def readable_dtype(code: str) -> bool:
    """Whether eaglectl can read a tensor of this safetensors dtype code (torch has no U16 / U32 / U64 ops)."""
    return code in ITEMSIZE and code not in ("U16", "U32", "U64")


def torch_dtype(code: str):
    """The torch dtype of a safetensors code eaglectl converts (the unsigned 16-64 bit codes are not)."""
    if code in ("U16", "U32", "U64"):
        raise KeyError(code)
    return _torch_dtypes()[code]


@functools.cache
def _torch_dtypes() -> dict[str, Any]:
    return {code: dtype for dtype, code in _torch_dtype_codes().items()}


@contextlib.contextmanager
def library_path(path: Path) -> Iterator[str]:
    """`path` as a str that libraries taking only text paths (safetensors' `safe_open`, `torch.load`) can open.
    Those encode it as UTF-8 and fail on a name that is not (a directory named in Latin-1 bytes arrives as
    lone surrogates, `surrogateescape`); such a file is opened here by its bytes and handed over as
    `/proc/self/fd/N`, the same file whatever its name."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        if not os.path.isdir("/proc/self/fd"):
            raise CheckpointError(f"{path}: its name is not valid UTF-8, which the tensor libraries cannot open "
                                  f"on this system", hint="rename the directory or file") from None
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    yield name


def load_pickle(path: Path) -> Any:
    """`torch.load` with weights_only=True and mmap=True; errors become one clear `CheckpointError`."""
    import pickle
    import zipfile

    import torch

    try:
        if regular_file_size(path) == 0:
            raise CheckpointError(f"{path}: empty file")
        with path.open("rb") as fh:  # access problems are named as such, not as a corrupt file
            fh.read(1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    size = check_torch_zip(path)
    try:
        with library_path(path) as name:  # the mapping torch makes outlives the descriptor
            obj = torch.load(name, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: refused to unpickle: it needs objects beyond tensors "
                f"({_unsupported_global(str(exc)) or first}); eaglectl never runs pickled code"
            ) from exc
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({first})") from exc
    except (OSError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, AttributeError, KeyError) as exc:
        # OSError here: mmap of a truncated zip (EINVAL), not an access problem (checked above)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({msg[:200]})") from exc
    check_loaded_tensors(obj, path, size)
    return obj


def _zip_entry_count(fh: Any, size: int) -> int | None:
    """The entry count a zip's end-of-central-directory record declares (zip64 too), read from the file's
    tail without parsing the directory itself; None when there is no such record (torch names that case)."""
    tail_len = min(size, 65_557)  # the record (22 bytes) plus the longest comment
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    count = struct.unpack_from("<H", tail, at + 10)[0]
    if count != 0xFFFF or at < 20 or tail[at - 20:at - 16] != b"PK\x06\x07":
        return count
    (zip64_at,) = struct.unpack_from("<Q", tail, at - 12)
    if zip64_at + 56 > size:
        return None
    fh.seek(zip64_at)
    record = fh.read(56)
    if record[:4] != b"PK\x06\x06":
        return None
    return struct.unpack_from("<Q", record, 32)[0]


def check_torch_zip(path: Path) -> int:
    """Refuse, before torch reads it, a zip whose declared sizes could cost far more than its bytes: too many
    entries, a compressed entry (torch writes every record stored; a deflated pickle inflates ~1000x), an
    entry declared past the end of the file, or a pickle larger than its tensor records need. Returns the
    file's size. A file that is no zip at all is left to torch.load to name."""
    import zipfile

    size = regular_file_size(path)
    try:
        with path.open("rb") as fh:
            count = _zip_entry_count(fh, size)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if count is None:
        return size
    if count > MAX_TENSORS + 16:
        raise CheckpointError(f"{path}: its zip declares {count} records (at most {MAX_TENSORS + 16}: one per "
                              f"tensor storage)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return size
    pickles = []
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path}: zip record {info.filename!r} is compressed; torch never compresses "
                                  f"its records, and a compressed pickle can inflate without bound")
        if info.file_size != info.compress_size or info.header_offset + info.file_size > size:
            raise CheckpointError(f"{path}: zip record {info.filename!r} declares {info.file_size} bytes past "
                                  f"the end of the file ({size} bytes)")
        if info.filename.endswith(".pkl"):
            pickles.append(info)
    allowed = PICKLE_BASE_BYTES + PICKLE_BYTES_PER_RECORD * len(infos)
    for info in pickles:
        if info.file_size > allowed:
            raise CheckpointError(f"{path}: its pickle {info.filename!r} is {info.file_size} bytes, more than "
                                  f"{len(infos)} records need (at most {allowed}); refused unread")
    for info in pickles:  # stored, at most `allowed` bytes: read as it is
        try:
            with zipfile.ZipFile(path) as zf:
                data = zf.read(info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            continue  # torch names what is wrong with the record
        if (depth := tuple_nesting(data)) > MAX_NESTING:
            raise CheckpointError(f"{path}: its pickle nests tuples over {MAX_NESTING} levels deep ({depth}+); "
                                  f"refused unread (hashing such a tuple or frozenset crashes the interpreter)")
    return size


def dense_problem(tensor: Any) -> str | None:
    """Why a loaded tensor is not plain dense CPU data covering its own elements, or None. Sparse and meta-device
    tensors have no bytes eaglectl can read or copy; a view whose strides repeat its storage's elements (stride
    0 over a huge shape) declares far more data than the file holds."""
    import torch

    if tensor.layout != torch.strided:
        return f"is a {str(tensor.layout).removeprefix('torch.')} tensor, not a dense tensor"
    if tensor.device.type != "cpu":
        return f"is on the {tensor.device.type} device (no data), not a dense tensor"
    numel = tensor.numel()
    if numel and tensor.dim():
        extent = 1 + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride(), strict=True))
        if extent < numel:
            return (f"is not a dense tensor: its strides {tuple(tensor.stride())} repeat elements "
                    f"({numel} elements over {extent} stored)")
    return None


def check_loaded_tensors(obj: Any, path: Path, size: int) -> None:
    """Every tensor in an unpickled object (dicts, lists and tuples walked) is dense CPU data, and all of them
    together declare at most `MAX_VIEW_FACTOR` times the file's bytes."""
    import torch

    total = 0
    seen: set[int] = set()
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    while stack:
        where, value, depth = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if depth > MAX_NESTING:  # what prints or walks it later (a message naming a value) would recurse that deep
            raise CheckpointError(f"{path}: it nests containers over {MAX_NESTING} levels deep; a checkpoint's "
                                  f"pickle nests a few")
        if isinstance(value, torch.Tensor):
            problem = dense_problem(value)
            if problem:
                raise CheckpointError(f"{path}: tensor {where or '(top level)'!r} {problem}")
            total += value.numel() * value.element_size()
        elif isinstance(value, dict):
            stack.extend((_child(where, k, "."), v, depth + 1) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((_child(where, i, "[]"), v, depth + 1) for i, v in enumerate(value))
    if total > MAX_VIEW_FACTOR * size + PICKLE_BASE_BYTES:
        raise CheckpointError(f"{path}: its tensors declare {total} bytes but the file holds {size}; views "
                              f"repeating the same stored bytes are refused")


def check_nesting(obj: Any, path: Path) -> None:
    """Containers (dicts, lists, tuples) of an unpickled object nest at most `MAX_NESTING` deep: what names a value
    later (a message's repr) would recurse that deep. For objects read without torch (`small_pickle`);
    `check_loaded_tensors` checks the same on the way."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if id(value) in seen or not isinstance(value, (dict, list, tuple)):
            continue
        seen.add(id(value))
        if depth > MAX_NESTING:
            raise CheckpointError(f"{path}: it nests containers over {MAX_NESTING} levels deep; a checkpoint's "
                                  f"pickle nests a few")
        stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def _child(where: str, key: Any, how: str) -> str:
    """The path of a container's item in messages, `a.b[0]`, built only up to a bounded length: the walk builds one
    per item, and a path grown a few characters a level over 100,000 nested lists costs quadratic time."""
    if len(where) > 200:
        return where
    if how == "[]":
        return f"{where}[{key}]"
    name = key if isinstance(key, str) else repr(key) if isinstance(key, (int, float, bool)) or key is None else "?"
    text = f"{where}.{name}" if where else name
    return text if len(text) <= 200 else text[:200] + "..."


def _unsupported_global(message: str) -> str | None:
    import re

    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return f"global {m.group(1)}" if m else None


STATE_DICT_KEYS = ("state_dict", "model", "module", "model_state_dict", "draft_model")


def tensor_dict(obj: Any, path: Path) -> dict[str, Any]:
    """The tensors of a loaded pickle, descending one level into a common wrapper key when needed."""
    import torch

    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise CheckpointError(f"{path}: holds {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a dict of tensors")
    tensors = _tensors_in(obj, torch.Tensor)
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(obj)[:8])) or 'none'})")
    return tensors


def _tensors_in(obj: dict[Any, Any], kind: type) -> dict[str, Any]:
    """The named tensors (`kind`: torch's, or `StoredTensor`) of a pickled dict: at its top level, else under the
    first common wrapper key (STATE_DICT_KEYS) that holds some."""
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, kind)}
    for key in STATE_DICT_KEYS if not tensors else ():
        inner = obj.get(key)
        if isinstance(inner, dict):
            tensors = {k: v for k, v in inner.items() if isinstance(k, str) and isinstance(v, kind)}
            if tensors:
                break
    return tensors


def file_mappings(path: Path) -> tuple[tuple[int, int, int], ...]:
    """(start, end, file offset) of each region where this process maps `path` (Linux; empty elsewhere)."""
    target = os.fsencode(Path(path).resolve())  # the kernel's bytes: a name need not be UTF-8
    found = []
    try:
        with open("/proc/self/maps", "rb") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].rstrip(b"\n") == target:
                    lo, hi = parts[0].split(b"-")
                    found.append((int(lo, 16), int(hi, 16), int(parts[2], 16)))
    except OSError:
        return ()
    return tuple(found)


def file_identity(path_or_fd: Path | int) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime_ns): changes when the file is rewritten or replaced."""
    st = os.stat(path_or_fd)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _stored_byte_order(path: Path) -> str | None:
    """The byte order a torch zip's storages are stored in: its `byteorder` record, or little-endian when it
    has none (what torch.load assumes). torch byte-swaps the other order in memory after mapping the file, so
    such files' bytes are never copied as they are, and are swapped again when `pread`. None when the record
    cannot be read (then the file's tensors are never raw-copied)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            record = next((n for n in zf.namelist() if n.endswith("/byteorder") and n.count("/") == 1), None)
            if record is None:
                return "little"
            value = zf.read(record).decode("ascii", "replace").strip()
            return value if value in ("little", "big") else None
    except (OSError, zipfile.BadZipFile, ValueError):
        return None


_libc: Any = None


def release_pages(tensor: Any, mapped: tuple[tuple[int, int], ...]) -> None:
    """Drop the pages of a file-mapped tensor slice just written, so RSS stays bounded. Anonymous memory is
    never touched (MADV_DONTNEED would zero it)."""
    import ctypes

    global _libc
    if not mapped:
        return
    page = mmap.PAGESIZE
    start = tensor.data_ptr()
    end_raw = start + tensor.numel() * tensor.element_size()
    if not any(lo <= start and end_raw <= hi for lo, hi in mapped):
        return
    aligned, end = (start + page - 1) // page * page, end_raw // page * page
    if end <= aligned:
        return
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(end - aligned), 4)  # MADV_DONTNEED
    except (OSError, AttributeError):  # best effort: only memory use depends on it
        pass


def _offset_in_file(tensor: Any, mappings: tuple[tuple[int, int, int], ...], fd: int) -> int | None:
    """Where a contiguous, file-mapped tensor's bytes lie in the file (`torch.load(mmap=True)` maps the zip,
    whose storages are stored uncompressed), so an export copies them in the kernel instead of through user
    space. None when the tensor is not contiguous or not backed by the mapping, or when the file's bytes there
    differ from the tensor's (checked on a few bytes at both ends: the offset is never taken on trust)."""
    import ctypes

    nbytes = tensor.numel() * tensor.element_size()
    if not mappings or nbytes == 0 or not tensor.is_contiguous():
        return None
    start = tensor.data_ptr()
    for lo, hi, file_offset in mappings:
        if lo <= start and start + nbytes <= hi:
            offset = start - lo + file_offset
            probe = min(16, nbytes)
            try:
                on_disk = os.pread(fd, probe, offset) + os.pread(fd, probe, offset + nbytes - probe)
            except OSError:
                return None
            in_memory = ctypes.string_at(start, probe) + ctypes.string_at(start + nbytes - probe, probe)
            return offset if on_disk == in_memory else None
    return None


# ------------------------------------------------------------------------------------------------ weight sets
def open_weights(files: list[Path], index_file: Path | None = None, *,
                 loaded: dict[Path, dict[str, Any]] | None = None) -> WeightSet:
    """Open every shard lazily and check the index (if any) against what the shards hold. `loaded`: the tensors
    of a pickle already read, by `index_pickle` (`StoredTensor`s) or `load_pickle` (torch tensors): a training
    state whose weights sit under a key of their own."""
    if not files:
        raise CheckpointError("no weight files")
    if len(files) > MAX_SHARDS:
        raise CheckpointError(f"{files[0].parent}: {len(files)} weight shards (at most {MAX_SHARDS})")
    fmt = "safetensors" if files[0].suffix == ".safetensors" else "torch"
    ws = WeightSet(format=fmt, files=list(files), tensors={}, index_file=index_file)
    for f in files:
        ws.identity[f] = file_identity(f)
        if fmt == "safetensors":
            part = read_safetensors_header(f)
            _check_safe_open(f)
        elif loaded is not None and f in loaded and all(isinstance(v, StoredTensor) for v in loaded[f].values()):
            part, spans = _stored_infos(loaded[f], f)
            ws._spans.update(spans)
        elif (loaded is None or f not in loaded) and (indexed := _index_pickle(f)) is not None:
            part, spans = indexed
            ws._spans.update(spans)
        else:
            tensors = loaded[f] if loaded is not None and f in loaded else tensor_dict(load_pickle(f), f)
            ws._pickles[f] = tensors
            part = {}
            order = _stored_byte_order(f)
            native = order == sys.byteorder
            if not native:
                ws._swapped.add(f)
            all_mappings = file_mappings(f)
            mappings = all_mappings if native else ()
            with open(f, "rb", buffering=0) as fh:
                for k, v in tensors.items():
                    try:
                        part[k] = TensorInfo(k, torch_dtype_code(v.dtype), tuple(v.shape), f,
                                             data_offset=_offset_in_file(v, mappings, fh.fileno()))
                    except CheckpointError:
                        raise CheckpointError(f"{f}: tensor {k!r} has unsupported dtype {v.dtype}") from None
                    span = _span_in_file(v, all_mappings)
                    if span is not None:
                        ws._spans[k] = (span, tuple(v.stride()), not native)
        _add_shard(ws, part, f, where=f"{f.parent}: ")
    return ws


def index_pickle(f: Path) -> Any | None:
    """The object a `torch.save` zip holds, each tensor a `StoredTensor` (where its bytes lie), read from its pickle
    alone without torch (`small_pickle.read_tensor_index`), after the zip limits; None when that reader does not
    handle the file: then `load_pickle` (torch) reads it, and its checks and errors apply."""
    if sys.byteorder != "little":
        return None
    return read_tensor_index(f, MAX_VIEW_FACTOR * max(check_torch_zip(f), 1))


def _index_pickle(f: Path) -> tuple[dict[str, TensorInfo], dict[str, tuple[int, tuple[int, ...], bool]]] | None:
    """A weights pickle's tensors and where their bytes lie (`index_pickle`); None when it cannot be indexed or
    holds no state dict (top level or under one of STATE_DICT_KEYS)."""
    obj = index_pickle(f)
    if not isinstance(obj, dict):
        return None
    tensors = _tensors_in(obj, StoredTensor)
    return _stored_infos(tensors, f) if tensors else None


def _stored_infos(tensors: dict[str, StoredTensor], f: Path
                  ) -> tuple[dict[str, TensorInfo], dict[str, tuple[int, tuple[int, ...], bool]]]:
    infos, spans = {}, {}
    for k, st in tensors.items():
        numel = math.prod(st.shape)
        infos[k] = TensorInfo(k, st.dtype, st.shape, f, data_offset=st.offset if numel and st.contiguous else None)
        if numel:
            spans[k] = (st.offset, st.strides, False)
    return infos, spans


def _add_shard(ws: WeightSet, part: dict[str, TensorInfo], f: Path, *, where: str = "") -> None:
    """Adds shard `f`'s tensors to `ws`, refusing a name two shards hold and a total over MAX_TENSORS (`where`
    prefixes that message: the local directory; remote weights have none)."""
    for name in part:
        if name in ws.tensors:
            raise CheckpointError(
                f"tensor {name!r} appears in two shards ({ws.tensors[name].file.name} and {f.name})")
    ws.tensors.update(part)
    if len(ws.tensors) > MAX_TENSORS:
        raise CheckpointError(f"{where}the weights hold over {MAX_TENSORS} tensors (at most {MAX_TENSORS})")


def remote_weights(headers: dict[str, dict[str, Any]], index_file: str | None = None,
                   weight_map: dict[str, str] | None = None) -> WeightSet:
    """A WeightSet from safetensors headers read remotely (shard name -> parsed header), checked as a local
    one is: the same entry rules and caps, no tensor in two shards, the index agreeing with the shards."""
    if not headers:
        raise CheckpointError("no weight files")
    if len(headers) > MAX_SHARDS:
        raise CheckpointError(f"{len(headers)} weight shards (at most {MAX_SHARDS})")
    ws = WeightSet(format="safetensors", files=[Path(n) for n in sorted(headers)], tensors={},
                   index_file=Path(index_file) if index_file else None, remote=True)
    for f in ws.files:
        header = headers[f.name]
        if len(header) > MAX_TENSORS:
            raise CheckpointError(f"{f}: safetensors header lists {len(header)} tensors (at most {MAX_TENSORS})")
        part = header_tensors(header, f, base=None, size=None)
        _add_shard(ws, part, f)
    for name, shard in (weight_map or {}).items():
        info = ws.tensors.get(name)
        if info is None or info.file.name != shard:
            raise CheckpointError(f"{index_file}: says {name!r} is in {shard}, but "
                                  + ("no shard holds it" if info is None else f"it is in {info.file.name}"))
    return ws


def _span_in_file(tensor: Any, mappings: tuple[tuple[int, int, int], ...]) -> int | None:
    """The file offset of a file-mapped tensor's element 0 (its storage is a slice of the mapped zip), so its
    bytes can be `pread` instead of read through the mapping. None for a tensor with no elements or not
    backed by the mapping."""
    if not mappings or tensor.numel() == 0:
        return None
    start = tensor.data_ptr()
    for lo, hi, file_offset in mappings:
        if lo <= start < hi:
            return start - lo + file_offset
    return None


def _check_safe_open(path: Path) -> None:
    """Let safetensors itself validate what the header parse cannot (overlaps, alignment). Opened for numpy:
    the header is validated the same way, and no torch import is needed to read a header."""
    from safetensors import safe_open

    try:
        with library_path(path) as name, safe_open(name, framework="numpy") as fh:
            fh.keys()
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError type
        raise CheckpointError(f"{path}: corrupt safetensors file ({str(exc).splitlines()[0][:200]})") from exc


def read_index(index_path: Path) -> tuple[list[Path], dict[str, str]]:
    """Shard files named by a `*.index.json`, validated to exist."""
    from eaglectl.jsonfile import INDEX_LIMITS, read_json_object

    index = read_json_object(index_path, what="weight index", limits=INDEX_LIMITS)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: has no weight_map")
    if len(weight_map) > MAX_TENSORS:
        raise CheckpointError(f"{index_path}: lists {len(weight_map)} tensors (at most {MAX_TENSORS})")
    names = sorted(set(map(str, weight_map.values())))
    if len(names) > MAX_SHARDS:
        raise CheckpointError(f"{index_path}: names {len(names)} shards (at most {MAX_SHARDS})")
    files = []
    for name in names:
        if os.sep in name or name.startswith(".."):
            raise CheckpointError(f"{index_path}: shard name {name!r} points outside the directory")
        if not name or name == "." or "\x00" in name:
            raise CheckpointError(f"{index_path}: invalid shard name {name!r}")
        shard = index_path.parent / name
        if not shard.is_file():
            raise CheckpointError(f"{index_path}: points at missing shard {name}")
        files.append(shard)
    return files, {str(k): str(v) for k, v in weight_map.items()}
