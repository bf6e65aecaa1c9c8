"""Tensor reads and pickle checks of `eaglectl.checkpoint.weights` that the command-level corpus cannot isolate."""

from __future__ import annotations

import os
import zipfile

import pytest
import torch

from eaglectl.checkpoint.weights import check_torch_zip, file_identity, load_pickle, open_weights
from eaglectl.demo.samples import save_safetensors
from eaglectl.errors import CheckpointError


def test_a_short_read_is_a_clean_error_even_when_the_identity_still_matches(tmp_path):
    """Truncated between the identity check and the read: pread returns short, never a SIGBUS."""
    f = tmp_path / "model.safetensors"
    save_safetensors(f, {"w": torch.arange(4096, dtype=torch.float32).reshape(64, 64)})
    ws = open_weights([f])
    os.truncate(f, os.path.getsize(f) - 1000)
    ws.identity[f] = file_identity(f)  # as if the truncation happened after the check
    with pytest.raises(CheckpointError, match="changed while eaglectl was reading it"):
        ws.load_rows("w", 0, 64)


@pytest.mark.parametrize("make", [
    lambda: torch.arange(48, dtype=torch.float32).reshape(6, 8),
    lambda: torch.arange(48, dtype=torch.float32).reshape(6, 8).t(),  # a transposed view: strides (1, 8)
    lambda: torch.arange(64, dtype=torch.bfloat16).reshape(8, 8)[2:6, 1:7],  # offset and gaps
    lambda: torch.zeros(3, 0, dtype=torch.float16),  # no elements: nothing to read
    lambda: torch.tensor(7.5),  # 0-d
])
def test_pickled_tensors_read_back_exactly_through_pread(tmp_path, make):
    value = make()
    torch.save({"w": value}, tmp_path / "draft_model.pt")
    ws = open_weights([tmp_path / "draft_model.pt"])
    assert torch.equal(ws.load("w"), value)
    if value.dim():
        assert torch.equal(ws.load_rows("w", 1, 3), value[1:3])
        assert [c.shape[0] for c in ws.iter_row_chunks("w", 1)] == ([1] * value.shape[0] if value.numel() else [3])


def test_a_zip_declaring_more_than_its_bytes_is_refused_before_torch_reads_it(tmp_path):
    f = tmp_path / "meta.pt"
    torch.save({"ids": torch.arange(10)}, f)
    assert check_torch_zip(f) == os.path.getsize(f)
    with zipfile.ZipFile(f) as zf:
        entries = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(f, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name.endswith(".pkl") else 0)
    with pytest.raises(CheckpointError, match="is compressed"):
        load_pickle(f)
