"""Tensor values as numpy arrays, whichever reader produced them.

Why: export builds and checks d2t / t2d and the meta's ids with numpy so that a safetensors or plain-pickle source
needs no torch; tensors a torch reader loaded (a pickle `small_pickle` does not handle, a stored d2t) are
converted here, once, in one way.
"""

from __future__ import annotations

import sys
from typing import Any


def is_numpy(value: Any) -> bool:
    """A numpy array or scalar (checked without importing numpy)."""
    return type(value).__module__ == "numpy"


def array_kind(value: Any) -> str | None:
    """"int", "bool", "float" or "complex" for a tensor (numpy or torch), None for anything else."""
    if is_numpy(value) and hasattr(value, "dtype"):
        return {"i": "int", "u": "int", "b": "bool", "f": "float", "c": "complex"}.get(value.dtype.kind, "other")
    torch = sys.modules.get("torch")  # a torch tensor can only come from torch's own load, which imported it
    if torch is not None and isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            return "bool"
        if value.is_complex():
            return "complex"
        return "float" if value.is_floating_point() else "int"
    return None


def as_numpy(values: Any) -> Any:
    """A tensor's values as a numpy array: numpy ones as they are, torch ones converted (dtypes numpy lacks,
    bfloat16 / float8, as float32)."""
    if is_numpy(values):
        return values
    values = values.detach().cpu()
    if values.is_floating_point() and values.element_size() < 4 and str(values.dtype) != "torch.float16":
        import torch

        values = values.to(torch.float32)
    return values.numpy()
