"""Header padding and order that line copied bytes up with their source (the kernel copies a folio-aligned range
about twice as fast): outputs stay valid safetensors, the dry run predicts their sizes, the early copy writes the
same bytes, and small outputs are written exactly as before (no padding, names sorted)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from eaglectl.checkpoint.weights import open_weights, read_safetensors_header
from eaglectl.export import exporter, writer
from eaglectl.export.exporter import export_checkpoint
from eaglectl.export.writer import ALIGN_BYTES, aligned_padding


def test_padding_lines_up_the_most_bytes_in_multiples_of_8():
    big = writer.ALIGN_MIN_BYTES
    # two tensors copied back to back from offsets 1000 and 1000 + big: one pad aligns both
    pad = aligned_padding(96, [(big, 1000), (8, None), (big, 1000 + big + 8)])
    assert pad == (1000 - 96) % ALIGN_BYTES and pad % 8 == 0
    # tensors whose source gaps differ: the larger one wins
    pad = aligned_padding(96, [(big, 5000), (2 * big, 5000 + big + 64)])
    assert (96 + pad + big - (5000 + big + 64)) % ALIGN_BYTES == 0
    # a pad that would break the 8-byte alignment of the tensors is never chosen
    assert aligned_padding(96, [(big, 1001)]) == 0
    assert aligned_padding(96, [(big - 8, 1000)]) == 0  # below the threshold: nothing to gain worth the bytes


def _header(path: Path) -> tuple[int, dict]:
    raw = path.read_bytes()[:8 + 4 * ALIGN_BYTES]
    n = struct.unpack("<Q", raw[:8])[0]
    return n, json.loads(raw[8:8 + n])


@pytest.mark.parametrize("layout", ["nemo-consolidated", "nemo-legacy-eagle3", "specforge"])
def test_padded_exports_are_valid_aligned_and_predicted(samples, tmp_path, monkeypatch, layout):
    import torch
    from safetensors.torch import load_file

    src = samples[layout]
    small = export_checkpoint(str(src), output=tmp_path / "plain")
    monkeypatch.setattr(writer, "ALIGN_MIN_BYTES", 0)
    monkeypatch.setattr(exporter, "ALIGN_MIN_BYTES", 0)
    dry = export_checkpoint(str(src), output=tmp_path / "padded", dry_run=True)
    padded = export_checkpoint(str(src), output=tmp_path / "padded")
    assert all(v.ok for v in padded.verification)
    out = tmp_path / "padded" / "model.safetensors"
    assert {Path(f.path).name: f.bytes for f in dry.files if f.path.endswith(".safetensors")} == \
        {"model.safetensors": out.stat().st_size}
    # the same tensors and values as the unpadded export, a header padded with spaces, data 8-byte aligned
    a, b = load_file(str(out)), load_file(str(tmp_path / "plain" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    n, _ = _header(out)
    assert (8 + n) % 8 == 0
    plain = read_safetensors_header(tmp_path / "plain" / "model.safetensors")
    assert read_safetensors_header(out).keys() == plain.keys()
    # the largest copied tensor sits where it sat in its source, modulo ALIGN_BYTES
    ws = open_weights([p for p in (src.rglob("*.safetensors") if layout != "nemo-legacy-eagle3"
                                   else [src / "draft_model.pt"]) if "sglang" not in p.parts])
    renamed = {**{k: k for k in ws.tensors}, **small.renamed}
    written = read_safetensors_header(out)
    largest = max((k for k in ws.tensors if ws.tensors[k].data_offset is not None and renamed.get(k) in written),
                  key=lambda k: ws.tensors[k].nbytes)
    assert (written[renamed[largest]].data_offset - ws.tensors[largest].data_offset) % ALIGN_BYTES == 0


def test_small_outputs_are_unpadded_and_sorted(samples, tmp_path):
    report = export_checkpoint(str(samples["nemo-consolidated"]), output=tmp_path / "o")
    out = tmp_path / "o" / "model.safetensors"
    n, header = _header(out)
    names = [k for k in header if k != "__metadata__"]
    assert names == sorted(names) and n < 8 + ALIGN_BYTES // 64 and report.action == "written"
