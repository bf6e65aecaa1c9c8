"""A torch-free reader for the small torch zips a training run writes beside its weights (NeMo's eagle_meta.pt).

Why: reading a meta file with `torch.load` means importing torch, which takes about as long as copying a
2 GB head; for the one-file NeMo layout it was the largest cost of an export after the copy itself. This reader
understands exactly what `torch.save` writes for a dict of plain values and dense CPU tensors of numpy-known
dtypes, and nothing more: its unpickler resolves three globals (the tensor rebuild function, the storage
classes as dtype markers, `OrderedDict`), so no pickled code can run, as with `weights_only=True`. Anything it
does not recognise returns None and the caller falls back to `torch.load(weights_only=True, mmap=True)`, whose
errors and limits then apply unchanged: this is a fast path, never a second set of rules.

Callers check the zip's declared sizes first (`weights.check_torch_zip`) and pass the most tensor bytes the
file may declare (as `weights.check_loaded_tensors` bounds torch's views); values are copied out of their records
(a meta is kilobytes to a few megabytes). This module imports nothing of eaglectl's: `weights` builds on it.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The storage classes torch.save names (`torch.LongStorage`, ...) -> (safetensors dtype code, numpy dtype name or
# None where numpy has no such dtype: such values are indexed, never read here). Others (float8, the unsigned
# 16-64 bit kinds) take torch's path.
STORAGES = {
    "LongStorage": ("I64", "<i8"), "IntStorage": ("I32", "<i4"), "ShortStorage": ("I16", "<i2"),
    "CharStorage": ("I8", "i1"), "ByteStorage": ("U8", "u1"), "BoolStorage": ("BOOL", "?"),
    "DoubleStorage": ("F64", "<f8"), "FloatStorage": ("F32", "<f4"), "HalfStorage": ("F16", "<f2"),
    "BFloat16Storage": ("BF16", None),
}
ITEMSIZES = {"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F64": 8, "F32": 4, "F16": 2, "BF16": 2}
# A meta file is small; a larger one is left to torch's path (which maps rather than copies).
MAX_FAST_BYTES = 64 * 1024 * 1024


class _NotPlain(Exception):
    """The file holds something this reader does not handle; the caller uses torch.load instead."""


class _StorageType:
    """A storage class named in the pickle, standing for its dtype (slots: the pickle's BUILD cannot alter it)."""

    __slots__ = ("code",)

    def __init__(self, code: str) -> None:
        self.code = code


@dataclass(frozen=True)
class StoredTensor:
    """Where a pickled tensor's elements lie in its file, read from the pickle alone (no data read): element 0 at
    byte `offset` of the file, `strides` in elements, stored little-endian."""

    dtype: str  # safetensors dtype code
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int

    @property
    def contiguous(self) -> bool:
        step = 1
        for n, s in zip(reversed(self.shape), reversed(self.strides), strict=True):
            if n != 1 and s != step:
                return False
            step *= n
        return True


@dataclass
class _Storage:
    code: str
    numel: int
    offset: int  # of its record's data in the file
    values: Any = None  # numpy array, read on first use (values mode)


def read_plain_torch_zip(path: Path, max_tensor_bytes: int) -> Any | None:
    """The object a small `torch.save` zip holds, tensors as numpy arrays (copies), or None when the file is not
    one this reader handles (then use `weights.load_pickle`). `max_tensor_bytes`: the most its tensors may
    declare together."""
    if os.stat(path).st_size > MAX_FAST_BYTES:
        return None
    return _read(path, max_tensor_bytes, values=True)


def read_tensor_index(path: Path, max_tensor_bytes: int) -> Any | None:
    """The object a `torch.save` zip holds with each tensor as a `StoredTensor` (where its bytes lie; nothing
    read but the pickle), or None when this reader does not handle the file (then use `weights.load_pickle`).
    Lets a weights pickle of any size be planned and copied without importing torch."""
    return _read(path, max_tensor_bytes, values=False)


def _read(path: Path, max_tensor_bytes: int, *, values: bool) -> Any | None:
    import numpy as np

    try:
        with zipfile.ZipFile(path) as zf, path.open("rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            names = zf.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                return None
            prefix = pickles[0].removesuffix("data.pkl")
            order = f"{prefix}byteorder"
            if order in names and zf.read(order).strip() != b"little":
                return None
            infos = {i.filename: i for i in zf.infolist()}
            storages: dict[str, _Storage] = {}
            budget = [max_tensor_bytes]

            def storage(pid: Any) -> _Storage:
                if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                        or not isinstance(pid[1], _StorageType) or pid[1].code not in ITEMSIZES
                        or not isinstance(pid[2], str) or pid[3] != "cpu" or not _is_int(pid[4]) or pid[4] < 0):
                    raise _NotPlain
                code, key, numel = pid[1].code, pid[2], pid[4]
                if key not in storages:
                    info = infos.get(f"{prefix}data/{key}")
                    if info is None or info.file_size != numel * ITEMSIZES[code]:
                        raise _NotPlain
                    storages[key] = _Storage(code, numel, _data_offset(raw, info, size))
                if storages[key].code != code:
                    raise _NotPlain
                return storages[key]

            def rebuild(stored: Any, offset: Any, shape: Any, strides: Any, requires_grad: Any, hooks: Any,
                        *rest: Any) -> Any:
                if (not isinstance(stored, _Storage) or not _ints(offset, shape, strides)
                        or len(shape) != len(strides) or requires_grad is not False or hooks
                        or any(r is not None and r != {} for r in rest)):
                    raise _NotPlain
                numel = 1
                for n in shape:
                    numel *= n
                if any(n < 0 for n in shape) or offset < 0:
                    raise _NotPlain
                if numel:
                    if any(s <= 0 for s in strides):
                        raise _NotPlain
                    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
                    if extent < numel or offset + extent > stored.numel:  # repeated elements, or past the storage
                        raise _NotPlain
                item = ITEMSIZES[stored.code]
                budget[0] -= numel * item
                if budget[0] < 0:
                    raise _NotPlain
                if not values:
                    return StoredTensor(stored.code, shape, strides, stored.offset + offset * item)
                dtype = dict(STORAGES.values()).get(stored.code)
                if dtype is None:
                    raise _NotPlain
                if numel == 0:
                    return np.empty(shape, dtype=dtype)
                if stored.values is None:
                    stored.values = np.frombuffer(_pread(raw, stored.offset, stored.numel * item), dtype=dtype)
                view = np.lib.stride_tricks.as_strided(stored.values[offset:], shape,
                                                       tuple(s * item for s in strides), writeable=False)
                return np.array(view)  # a contiguous private copy

            with zf.open(pickles[0]) as fh:
                return _Unpickler(fh, storage, rebuild).load()
    except (_NotPlain, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError,
            KeyError, IndexError, AttributeError, OverflowError, MemoryError, RecursionError):
        return None


def _data_offset(raw: Any, info: zipfile.ZipInfo, size: int) -> int:
    """Where a stored zip record's data starts in the file: after its local header, whose name must be the
    central directory's (the offset is never taken on trust)."""
    header = _pread(raw, info.header_offset, 30)
    if header[:4] != b"PK\x03\x04" or struct.unpack_from("<H", header, 8)[0] != zipfile.ZIP_STORED:
        raise _NotPlain
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    if _pread(raw, info.header_offset + 30, name_len) != info.filename.encode("utf-8"):
        raise _NotPlain
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > size:
        raise _NotPlain
    return start


def _pread(raw: Any, offset: int, n: int) -> bytes:
    data = os.pread(raw.fileno(), n, offset)
    if len(data) != n:
        raise _NotPlain
    return data


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(offset: Any, shape: Any, strides: Any) -> bool:
    return (_is_int(offset) and isinstance(shape, tuple) and isinstance(strides, tuple)
            and all(map(_is_int, shape)) and all(map(_is_int, strides)))


class _Unpickler(pickle.Unpickler):
    """Resolves the tensor rebuild function, storage classes (as dtype markers) and OrderedDict; any other
    global ends the fast path."""

    def __init__(self, file: Any, storage: Any, rebuild: Any) -> None:
        super().__init__(file)
        self._storage, self._rebuild = storage, rebuild

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in STORAGES:
            return _StorageType(STORAGES[name][0])
        raise _NotPlain

    def persistent_load(self, pid: Any) -> Any:
        return self._storage(pid)
