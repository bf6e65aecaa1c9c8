"""The NaN / Inf scan: the bit-level numpy path (plainly stored bytes) counts exactly what torch's isnan / isinf
count, for every float dtype a drafter is stored in, and the torch path still takes what the numpy one cannot."""

from __future__ import annotations

import pytest

from eaglectl.checkpoint import values
from eaglectl.checkpoint.values import scan_non_finite
from eaglectl.checkpoint.weights import open_weights

DTYPES = ["bfloat16", "float16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"]


def _special(dtype):
    """A tensor of `dtype` with finite values (the largest ones included), and NaN / +-Inf where it has them."""
    import torch

    dt = getattr(torch, dtype)
    finfo = torch.finfo(dt)
    finite = torch.tensor([0.0, -0.0, 1.0, -2.5, finfo.max, -finfo.max, finfo.tiny, -finfo.tiny]).to(dt)
    bad = [float("nan"), float("nan")]
    if dtype != "float8_e4m3fn":  # no Inf: +-Inf converts to NaN
        bad += [float("inf"), float("-inf")]
    return torch.cat([finite.repeat(40), torch.tensor(bad).to(dt), finite]).reshape(-1, 2)


def _truth(t):
    import torch

    wide = t.to(torch.float32) if t.element_size() == 1 else t
    return int(torch.isnan(wide).sum()), int(torch.isinf(wide).sum())


@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_scan_counts_what_torch_counts(tmp_path, dtype, monkeypatch):
    import torch
    from safetensors.torch import save_file

    t = _special(dtype)
    clean = torch.zeros(6, 3, dtype=getattr(torch, dtype))
    save_file({"w": t, "clean": clean}, str(tmp_path / "model.safetensors"))
    ws = open_weights([tmp_path / "model.safetensors"])
    calls = []
    real = values._scan_rows
    monkeypatch.setattr(values, "_scan_rows", lambda *a: calls.append(a) or real(*a))
    found = scan_non_finite(ws, ["w", "clean"])
    assert calls == []  # numpy read it all
    nan, inf = _truth(t)
    assert nan > 0
    assert [(f.name, f.nan, f.inf) for f in found] == [("w", nan, inf)]


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_bit_scan_spans_chunks(tmp_path, dtype, monkeypatch):
    """Values past the first chunk, and a tensor whose size is not a multiple of the chunk."""
    import torch
    from safetensors.torch import save_file

    monkeypatch.setattr(values, "RAW_SCAN_CHUNK_BYTES", 1000)
    t = torch.ones(1001, 3, dtype=getattr(torch, dtype))
    t[700, 1] = float("nan")
    t[1000, 2] = float("-inf")
    save_file({"w": t}, str(tmp_path / "model.safetensors"))
    found = scan_non_finite(open_weights([tmp_path / "model.safetensors"]), ["w"])
    assert [(f.nan, f.inf) for f in found] == [(1, 1)]


def test_pickled_views_take_the_torch_path(tmp_path, monkeypatch):
    """A pickle's tensor stored with other strides has no plain byte range: torch reads it by rows."""
    import torch

    base = torch.ones(8, 6)
    base[5, 1] = float("nan")
    torch.save({"w": base.t()}, tmp_path / "model.pt")
    ws = open_weights([tmp_path / "model.pt"])
    calls = []
    real = values._scan_rows
    monkeypatch.setattr(values, "_scan_rows", lambda *a: calls.append(a[1]) or real(*a))
    found = scan_non_finite(ws, ["w"])
    assert calls == ["w"] and [(f.nan, f.inf) for f in found] == [(1, 0)]


def test_prepare_scan_imports_torch_only_where_the_scan_needs_it(tmp_path):
    """The export runs the scan in a thread that must import nothing: `prepare_scan` imports, in the caller's
    thread, torch for a tensor only torch can read (a pickled view) and nothing more for plain bytes."""
    import subprocess
    import sys

    import torch

    torch.save({"plain": torch.ones(4, 4), "view": torch.ones(4, 6).t()}, tmp_path / "model.pt")
    code = ("import sys; from pathlib import Path\n"
            "from eaglectl.checkpoint.weights import open_weights\n"
            "from eaglectl.checkpoint.values import prepare_scan\n"
            "ws = open_weights([Path(sys.argv[1])]); prepare_scan(ws, [sys.argv[2]])\n"
            "print('torch' in sys.modules)\n")
    found = {name: subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.pt"), name],
                                  capture_output=True, text=True, timeout=120).stdout.strip()
             for name in ("plain", "view")}
    assert found == {"plain": "False", "view": "True"}
