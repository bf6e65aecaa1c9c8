"""Full-size drafter checkpoints that cost almost no disk: real safetensors headers, holes for the data.

`write_sparse_safetensors` writes the header, the bytes of the few tensors given values (d2t, t2d), and then
extends the file to its full size with `truncate`: the unwritten ranges are holes, read back as zeros. A
DeepSeek-V3-sized EAGLE-3 head (4.7 GB) occupies a few MB. tests/data/published_heads.json holds the published
SpecForge configs with the tensor names and shapes SpecForge saves.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4, "I64": 8, "BOOL": 1}


def published_heads() -> dict[str, dict[str, Any]]:
    return json.loads((DATA / "published_heads.json").read_text())["heads"]


def write_sparse_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]],
                             values: dict[str, bytes] | None = None) -> None:
    """`tensors`: name -> (dtype code, shape); `values`: raw bytes for some of them (the rest are holes)."""
    values = values or {}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        dtype, shape = tensors[name]
        n = math.prod(shape) * ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    start = 8 + len(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for name, data in values.items():
            lo, hi = header[name]["data_offsets"]
            assert len(data) == hi - lo, name
            fh.seek(start + lo)
            fh.write(data)
        fh.truncate(start + offset)


def token_map(vocab: int, draft_vocab: int, seed: int = 0) -> tuple[bytes, bytes]:
    """(d2t int64 bytes, t2d bool bytes) for a sorted random draft vocab, as SpecForge computes them."""
    import torch

    g = torch.Generator().manual_seed(seed)
    selected = torch.randperm(vocab, generator=g)[:draft_vocab].sort().values
    d2t = (selected - torch.arange(draft_vocab)).to(torch.int64)
    t2d = torch.zeros(vocab, dtype=torch.bool)
    t2d[selected] = True
    return d2t.numpy().tobytes(), t2d.numpy().tobytes()


def build_published(name: str, dest: Path, *, embeddings: bool = True, config: dict | None = None,
                    zero_d2t: bool = False) -> Path:
    """The published SpecForge head `name` at full size in `dest` (config.json + sparse model.safetensors)."""
    head = published_heads()[name]
    cfg = dict(config or head["config"])
    tensors = {n: (d, s) for n, (d, s) in head["tensors"].items() if embeddings or "embed" not in n}
    vocab, draft_vocab = cfg["vocab_size"], cfg["draft_vocab_size"]
    d2t, t2d = token_map(vocab, draft_vocab)
    if zero_d2t:
        d2t = bytes(8 * draft_vocab)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    write_sparse_safetensors(dest / "model.safetensors", tensors, {"d2t": d2t, "t2d": t2d})
    return dest
