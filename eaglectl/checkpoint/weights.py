"""Lazy access to a checkpoint's tensors: names, dtypes, shapes and byte ranges without reading the data.

safetensors: the header is parsed and validated here (it also gives the byte offsets that let export copy
tensors without decoding them); values are read through `safe_open`. Pickles (`.pt` / `.bin`): always
`torch.load(weights_only=True, mmap=True)`, so no pickled code runs and tensors stay on disk until touched.
"""

from __future__ import annotations

import functools
import json
import math
import mmap
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglectl.errors import CheckpointError

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype code -> item size in bytes
ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
FLOAT_DTYPES = {"F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64"}


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
    _pickles: dict[Path, dict[str, Any]] = field(default_factory=dict, repr=False, metadata={"internal": True})
    _handles: dict[Path, Any] = field(default_factory=dict, repr=False, metadata={"internal": True})
    _mapped: dict[Path, Any] = field(default_factory=dict, repr=False, metadata={"internal": True})
    # (st_dev, st_ino, st_size, st_mtime_ns) of each file when opened: a raw copy refuses a file replaced since
    identity: dict[Path, tuple[int, int, int, int]] = field(default_factory=dict, repr=False,
                                                          metadata={"internal": True})
    _swapped: set[Path] = field(default_factory=set, repr=False, metadata={"internal": True})

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
        """One tensor's values (a torch.Tensor); mmap-backed for pickles, read via safe_open otherwise."""
        info = self.tensors[name]
        if self.format == "torch":
            return self._pickles[info.file][name]
        return self._handle(info.file).get_tensor(name)

    def load_rows(self, name: str, start: int, stop: int):
        """Rows [start, stop) of a tensor, for bounded-memory streaming of large matrices."""
        info = self.tensors[name]
        if self.format == "torch":
            return self._pickles[info.file][name][start:stop]
        return self._handle(info.file).get_slice(name)[start:stop]

    def iter_row_chunks(self, name: str, chunk_bytes: int):
        """A tensor's values as chunks of whole rows (about `chunk_bytes` each), for scans whose memory must
        stay bounded: safetensors bytes are `pread` into private buffers (no file pages left mapped), pickled
        tensors are mmap slices whose pages are released once the caller moves on."""
        info = self.tensors[name]
        if not info.shape or info.numel == 0:
            yield self.load(name)
            return
        rows = info.shape[0]
        row_bytes = max(1, info.nbytes // rows)
        step = max(1, chunk_bytes // row_bytes)
        if info.data_offset is None:
            mapped = self.releasable_ranges(info.file)
            for start in range(0, rows, step):
                part = self._pickles[info.file][name][start:start + step]
                yield part
                release_pages(part, mapped)
            return
        import torch

        dtype = torch_dtype(info.dtype)
        with open(info.file, "rb", buffering=0) as fh:
            for start in range(0, rows, step):
                stop = min(start + step, rows)
                buf = bytearray((stop - start) * row_bytes)
                fh.seek(info.data_offset + start * row_bytes)
                view, got = memoryview(buf), 0
                while got < len(buf):
                    n = fh.readinto(view[got:])
                    if not n:
                        raise CheckpointError(f"{info.file}: unexpected end of file in tensor {name!r}")
                    got += n
                yield torch.frombuffer(buf, dtype=dtype).reshape(stop - start, *info.shape[1:])

    def _handle(self, path: Path):
        handle = self._handles.get(path)
        if handle is None:
            from safetensors import safe_open

            handle = self._handles[path] = safe_open(str(path), framework="pt")
        return handle


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
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    base = 8 + n
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (TypeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}") from exc
        if dtype not in ITEMSIZE:
            raise CheckpointError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
            raise CheckpointError(f"{path}: tensor {name!r} has invalid data offsets {[begin, end]!r}")
        expected = nbytes(dtype, shape)
        if end - begin != expected:
            raise CheckpointError(
                f"{path}: tensor {name!r} spans {end - begin} bytes but {dtype}{shape} needs {expected}")
        if base + end > size:
            raise CheckpointError(
                f"{path}: tensor {name!r} lies past the end of the file (truncated? {size} bytes)")
        tensors[name] = TensorInfo(name, dtype, tuple(shape), path, base + begin)
    return tensors


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


def torch_dtype(code: str):
    """The torch dtype of a safetensors code eaglectl converts (the unsigned 16-64 bit codes are not)."""
    if code in ("U16", "U32", "U64"):
        raise KeyError(code)
    return _torch_dtypes()[code]


@functools.cache
def _torch_dtypes() -> dict[str, Any]:
    return {code: dtype for dtype, code in _torch_dtype_codes().items()}


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
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
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
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        for key in STATE_DICT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict):
                tensors = {k: v for k, v in inner.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
                if tensors:
                    break
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(obj)[:8])) or 'none'})")
    return tensors


def file_mappings(path: Path) -> tuple[tuple[int, int, int], ...]:
    """(start, end, file offset) of each region where this process maps `path` (Linux; empty elsewhere)."""
    target = str(Path(path).resolve())
    found = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].rstrip("\n") == target:
                    lo, hi = parts[0].split("-")
                    found.append((int(lo, 16), int(hi, 16), int(parts[2], 16)))
    except OSError:
        return ()
    return tuple(found)


def file_identity(path_or_fd: Path | int) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime_ns): changes when the file is rewritten or replaced."""
    st = os.stat(path_or_fd)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _stored_in_native_byte_order(path: Path) -> bool:
    """Whether a torch zip says its storages are in this machine's byte order. torch byte-swaps the others in
    memory after mapping them, so their file bytes must never be copied or re-read as they are. A zip without
    the record is treated as foreign (safe: its tensors take the chunked path)."""
    import sys
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            record = next((n for n in zf.namelist() if n.endswith("/byteorder") and n.count("/") == 1), None)
            return record is not None and zf.read(record).decode("ascii", "replace").strip() == sys.byteorder
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


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
def open_weights(files: list[Path], index_file: Path | None = None) -> WeightSet:
    """Open every shard lazily and check the index (if any) against what the shards hold."""
    if not files:
        raise CheckpointError("no weight files")
    fmt = "safetensors" if files[0].suffix == ".safetensors" else "torch"
    ws = WeightSet(format=fmt, files=list(files), tensors={}, index_file=index_file)
    for f in files:
        ws.identity[f] = file_identity(f)
        if fmt == "safetensors":
            part = read_safetensors_header(f)
            _check_safe_open(f)
        else:
            loaded = tensor_dict(load_pickle(f), f)
            ws._pickles[f] = loaded
            part = {}
            native = _stored_in_native_byte_order(f)
            if not native:
                ws._swapped.add(f)
            mappings = file_mappings(f) if native else ()
            with open(f, "rb", buffering=0) as fh:
                for k, v in loaded.items():
                    try:
                        part[k] = TensorInfo(k, torch_dtype_code(v.dtype), tuple(v.shape), f,
                                             data_offset=_offset_in_file(v, mappings, fh.fileno()))
                    except CheckpointError:
                        raise CheckpointError(f"{f}: tensor {k!r} has unsupported dtype {v.dtype}") from None
        for name in part:
            if name in ws.tensors:
                raise CheckpointError(
                    f"tensor {name!r} appears in two shards ({ws.tensors[name].file.name} and {f.name})")
        ws.tensors.update(part)
    return ws


def _check_safe_open(path: Path) -> None:
    """Let safetensors itself validate what the header parse cannot (overlaps, alignment)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except Exception as exc:  # safetensors raises its own SafetensorError type
        raise CheckpointError(f"{path}: corrupt safetensors file ({str(exc).splitlines()[0][:200]})") from exc


def read_index(index_path: Path) -> tuple[list[Path], dict[str, str]]:
    """Shard files named by a `*.index.json`, validated to exist."""
    from eaglectl.jsonfile import read_json_object

    index = read_json_object(index_path, what="weight index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: has no weight_map")
    names = sorted(set(map(str, weight_map.values())))
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
