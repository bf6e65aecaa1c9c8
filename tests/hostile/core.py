"""The hostile corpus's machinery: bases, file mutations, `Case` and its registry (cases live beside it).

`build_bases` writes a few healthy checkpoints once (with a previous export and token map beside them, so
"previous outputs intact" can be checked); each `Case.build` copies one base into a fresh directory and breaks
it in one specific way. `tests/test_hostile_inputs.py` runs every case through every checkpoint-reading
command.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

COMMANDS = ("inspect", "export", "token-map", "serve")
MARKER = "PWNED"  # a file the hostile pickles would create if their code ever ran

Bases = dict[str, Path]


class Evil:
    """Pickles to `io.open(marker, "w")`: unpickling it (without weights_only) creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ------------------------------------------------------------------------------------------------ bases
def build_bases(root: Path) -> Bases:
    """Healthy checkpoints, each already exported once (sglang/) and with a token map, as a user would have."""

    from eaglectl.demo.samples import (
        TARGET_LAYERS,
        d2t_t2d,
        draft_config,
        eagle3_tensors,
        save_json,
        save_legacy_eagle3,
        save_meta,
        save_safetensors,
        save_specforge_run,
        save_two_shards,
    )
    from eaglectl.export.exporter import export_checkpoint
    from eaglectl.export.token_map import write_token_map

    bases: Bases = {}
    stale = dict(architectures=["LlamaEagle3DraftModel"], num_layers=TARGET_LAYERS)

    # hf layout, one safetensors file, NeMo-style names (so export has work to do) and d2t / t2d.
    d = root / "st"
    save_json(d / "config.json", draft_config(**stale))
    save_safetensors(d / "model.safetensors", {**eagle3_tensors("model.layers.0.", "model.", seed=11), **d2t_t2d()})
    bases["st"] = d

    # NeMo legacy: draft_model.pt (zip pickle) + eagle3_meta.pt.
    d = root / "pt"
    save_legacy_eagle3(d, seed=12)
    bases["pt"] = d

    # hf layout, two shards + index.
    d = root / "sharded"
    save_two_shards(d, {**eagle3_tensors("model.layers.0.", "model.", seed=13), **d2t_t2d()})
    save_json(d / "config.json", draft_config(**stale))
    bases["sharded"] = d

    # SpecForge >= 0.2 training output: the run dir (output/); its draft config lies beside it, at the absolute path
    # the payload's provenance record names (a copy of the run still finds this one).
    bases["specforge"] = save_specforge_run(root / "specforge", steps=(100,))

    for key in ("st", "pt", "sharded", "specforge"):
        export_checkpoint(str(bases[key]))
        write_token_map(str(bases[key]))

    # NeMo consolidated (no previous export in epoch_0_step_100/sglang/, a token map in the outer dir).
    d = root / "consolidated" / "epoch_0_step_100"
    save_json(d / "model" / "config.json", draft_config(**stale))
    save_safetensors(d / "model" / "model.safetensors", eagle3_tensors("model.layers.0.", "model.", seed=14))
    save_meta(d / "eagle_meta.pt")
    write_token_map(str(d))
    bases["consolidated"] = d
    return bases


def copy_base(bases: Bases, key: str, dest: Path, name: str = "ckpt") -> Path:
    out = dest / name
    shutil.copytree(bases[key], out, symlinks=True)
    return out


# ------------------------------------------------------------------------------------------ file mutations
def read_st(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_st(path: Path, header: dict, data: bytes) -> None:
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + data)


def edit_header(path: Path, edit: Callable[[dict], None]) -> None:
    header, data = read_st(path)
    edit(header)
    write_st(path, header, data)


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def raw_header(path: Path, length: int, body: bytes) -> None:
    path.write_bytes(struct.pack("<Q", length) + body)


def load_st(path: Path) -> dict:
    """A safetensors file's tensors, copied out of the mapping (the file is about to be rewritten)."""
    from safetensors.torch import load_file

    return {k: v.clone() for k, v in load_file(path).items()}


def edit_pt(path: Path, edit: Callable[[dict], object]) -> None:
    import torch

    state = torch.load(path, weights_only=True)
    result = edit(state)
    torch.save(state if result is None else result, path)


# ------------------------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Bases], Path]  # writes the case under a fresh dir, returns the path to give
    expect: str  # distinguishing substring of the one `error:` line (or of inspect's error finding)
    commands: tuple[str, ...] = COMMANDS
    inspect_finding: bool = False  # inspect reports it as an error finding (exit 1, report on stdout)
    succeeds: tuple[str, ...] = ()  # commands that legitimately succeed on this input
    warning: str | None = None  # a warning inspect (finding) and export (stderr) must give
    unreadable: str | None = None  # relative path made unreadable: the run needs no DAC override
    target: str | None = None  # relative path of a (hostile) target the case writes: given to inspect and serve
    code: int = 1


CASES: list[Case] = []


def case(name: str, expect: str, **kw) -> Callable:
    def register(fn: Callable[[Path, Bases], Path]) -> Callable[[Path, Bases], Path]:
        CASES.append(Case(name, fn, expect, **kw))
        return fn

    return register


WEIGHT_FILE = {"st": "model.safetensors", "pt": "draft_model.pt"}


def _weights(tmp: Path, bases: Bases, key: str) -> tuple[Path, Path]:
    """A private copy of base `key` and its weight file."""
    ck = copy_base(bases, key, tmp)
    return ck, ck / WEIGHT_FILE[key]


def replaced_case(name: str, expect: str, key: str, data: bytes) -> None:
    """A case whose weight file (of base `key`) holds exactly `data`."""
    @case(name, expect)
    def _(tmp, bases):
        ck, f = _weights(tmp, bases, key)
        f.write_bytes(data)
        return ck



# ------------------------------------------------------------------------------ helpers shared by case modules
def _st(tmp: Path, bases: Bases) -> tuple[Path, Path]:
    return _weights(tmp, bases, "st")



def _sharded(tmp: Path, bases: Bases) -> Path:
    return copy_base(bases, "sharded", tmp)


INDEX = "model.safetensors.index.json"
SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


def _pt(tmp: Path, bases: Bases) -> tuple[Path, Path]:
    return _weights(tmp, bases, "pt")


def _cfg(tmp: Path, bases: Bases, text: str | bytes | None = None, **changes) -> Path:
    ck = copy_base(bases, "st", tmp)
    if text is not None:
        (ck / "config.json").write_bytes(text.encode() if isinstance(text, str) else text)
    else:
        def edit(cfg):
            for key, value in changes.items():
                if value is _DELETE:
                    del cfg[key]
                else:
                    cfg[key] = value

        edit_json(ck / "config.json", edit)
    return ck


_DELETE = object()
