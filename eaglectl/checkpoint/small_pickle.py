"""A torch-free reader for the small torch zips a training run writes beside its weights (NeMo's eagle_meta.pt).

Why: reading a meta file with `torch.load` means importing torch, which takes about as long as copying a
2 GB head; for the one-file NeMo layout it was the largest cost of an export after the copy itself. This reader
understands exactly what `torch.save` writes for a dict of plain values and dense CPU tensors of numpy-known
dtypes, and nothing more: its unpickler resolves three globals (the tensor rebuild function, the storage
classes as dtype markers, `OrderedDict`), so no pickled code can run, as with `weights_only=True`. Anything it
does not recognise returns None and the caller falls back to `torch.load(weights_only=True, mmap=True)`, whose
errors and limits then apply unchanged: this is a fast path, never a second set of rules.

The zip's declared sizes are checked first (`weights.check_torch_zip`); tensor values are copied out of their
records (a meta is kilobytes to a few megabytes), bounded by the file's size as `check_loaded_tensors` bounds
torch's views.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from eaglectl.checkpoint.weights import MAX_VIEW_FACTOR, check_torch_zip, regular_file_size

# The storage classes torch.save names (`torch.LongStorage`, ...) -> numpy dtype names. bfloat16 and the float8
# kinds have no numpy dtype: such a file takes torch's path.
STORAGE_DTYPES = {
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?", "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
}
KNOWN_DTYPES = frozenset(STORAGE_DTYPES.values())
# A meta file is small; a larger one is left to torch's path (which maps rather than copies).
MAX_FAST_BYTES = 64 * 1024 * 1024


class _NotPlain(Exception):
    """The file holds something this reader does not handle; the caller uses torch.load instead."""


class _StorageType:
    """A storage class named in the pickle, standing for its dtype (slots: the pickle's BUILD cannot alter it)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


def read_plain_torch_zip(path: Path) -> Any | None:
    """The object a small `torch.save` zip holds, tensors as numpy arrays (copies), or None when the file is not
    one this reader handles (then use `weights.load_pickle`). Raises CheckpointError only for what
    `check_torch_zip` refuses (the same refusals torch's path would give)."""
    import numpy as np

    size = regular_file_size(path)
    if size > MAX_FAST_BYTES:
        return None
    check_torch_zip(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                return None
            prefix = pickles[0].removesuffix("data.pkl")
            order = f"{prefix}byteorder"
            if order in names and zf.read(order).strip() != b"little":
                return None
            records = set(names)
            storages: dict[str, Any] = {}
            budget = [MAX_VIEW_FACTOR * max(size, 1)]

            def storage(pid: Any) -> Any:
                if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                        or not isinstance(pid[1], _StorageType) or pid[1].dtype not in KNOWN_DTYPES
                        or not isinstance(pid[2], str)
                        or pid[3] != "cpu" or not isinstance(pid[4], int) or pid[4] < 0):
                    raise _NotPlain
                key, dtype, numel = pid[2], np.dtype(pid[1].dtype), pid[4]
                if key not in storages:
                    record = f"{prefix}data/{key}"
                    if record not in records:
                        raise _NotPlain
                    data = zf.read(record)
                    if len(data) != numel * dtype.itemsize:
                        raise _NotPlain
                    storages[key] = np.frombuffer(data, dtype=dtype)
                if storages[key].dtype != dtype:
                    raise _NotPlain
                return storages[key]

            def rebuild(stored: Any, offset: Any, shape: Any, strides: Any, requires_grad: Any, hooks: Any,
                        *rest: Any) -> Any:
                if (not isinstance(stored, np.ndarray) or not _ints(offset, shape, strides)
                        or len(shape) != len(strides) or requires_grad is not False or hooks
                        or any(r is not None and r != {} for r in rest)):
                    raise _NotPlain
                numel = 1
                for n in shape:
                    numel *= n
                if numel == 0:
                    return np.empty(shape, dtype=stored.dtype)
                if any(n < 0 for n in shape) or any(s <= 0 for s in strides) or offset < 0:
                    raise _NotPlain
                extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
                if extent < numel or offset + extent > stored.size:  # repeated elements, or past the storage
                    raise _NotPlain
                budget[0] -= numel * stored.itemsize
                if budget[0] < 0:
                    raise _NotPlain
                view = np.lib.stride_tricks.as_strided(stored[offset:], shape,
                                                       tuple(s * stored.itemsize for s in strides), writeable=False)
                return np.array(view)  # a contiguous private copy

            unpickler = _Unpickler(zf.open(pickles[0]), storage, rebuild)
            return unpickler.load()
    except (_NotPlain, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError,
            KeyError, IndexError, AttributeError, OverflowError, MemoryError, RecursionError):
        return None


def _ints(offset: Any, shape: Any, strides: Any) -> bool:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    return (is_int(offset) and isinstance(shape, tuple) and isinstance(strides, tuple)
            and all(map(is_int, shape)) and all(map(is_int, strides)))


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
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise _NotPlain

    def persistent_load(self, pid: Any) -> Any:
        return self._storage(pid)
