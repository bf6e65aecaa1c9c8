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


NESTED_200K = {
    "key": b"\x80\x02}" + b")" + b"\x85" * 200_000 + b"K\x01s.",
    "value": b"\x80\x02}X\x01\x00\x00\x00x)" + b"\x85" * 200_000 + b"s.",
    # protocol 4, as the C unpickler of the torch-free reader takes it: a FRAME, MEMOIZE between levels, frozensets
    "framed-key": b"\x80\x04\x95" + (200_010).to_bytes(8, "little") + b"}" + b")" + b"\x85" * 200_000 + b"K\x01s.",
    "memoized-key": b"\x80\x04}" + b")" + b"\x94\x85" * 100_000 + b"K\x01s.",
    "frozenset-key": b"\x80\x04}" + b"(" * 50_000 + b"(\x91" + b"\x91" * 50_000 + b"K\x01s.",
}


@pytest.mark.parametrize("reader", ["load_pickle", "read_meta"])
@pytest.mark.parametrize("where", list(NESTED_200K))
def test_a_tuple_nested_200k_deep_is_refused_before_it_is_unpickled(tmp_path, where, reader):
    """Hashing a tuple (or frozenset) recurses in C without a depth check: as a dict key, 200,000 nested tuples (one
    byte a level) crashed the interpreter (SIGSEGV) inside torch's weights-only unpickler, and inside the C unpickler
    of the torch-free meta reader in any pickle protocol. Run in a child process, so that a regression fails this
    test instead of ending the suite."""
    import subprocess
    import sys

    torch.save({}, tmp_path / "eagle_meta.pt")
    _replace_pickle(tmp_path / "eagle_meta.pt", NESTED_200K[where])
    module = "weights" if reader == "load_pickle" else "resolve"
    code = (f"import sys; from pathlib import Path; from eaglectl.checkpoint.{module} import {reader}; "
            "from eaglectl.errors import CheckpointError\n"
            f"try:\n {reader}(Path(sys.argv[1]))\n"
            "except CheckpointError as exc:\n print(exc)")
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path / "eagle_meta.pt")], capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    assert "its pickle nests tuples over 100 levels deep" in child.stdout


def test_the_nesting_scan_follows_tuples_through_the_memo():
    """A tuple memoized and fetched again (`BINPUT` / `BINGET`) keeps its depth: 150 levels built two at a time."""
    from eaglectl.checkpoint.pickle_scan import tuple_nesting

    body = b")"
    for _ in range(75):
        body += b"\x85q\x00h\x00\x85"  # (x,) memoized, fetched, wrapped again: two levels
    assert tuple_nesting(b"\x80\x02" + body + b".") == 101  # counted up to the limit
    assert tuple_nesting(b"\x80\x02" + b")" + b"\x85" * 3 + b".") == 4
    assert tuple_nesting(b"\x80\x02]" + b"\x85" * 0 + b".") == 0  # lists are never hashed


def _replace_pickle(path, payload: bytes) -> None:
    with zipfile.ZipFile(path) as zf:
        entries = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name), payload if name.endswith("/data.pkl") else data)
