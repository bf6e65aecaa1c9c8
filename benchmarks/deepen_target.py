#!/usr/bin/env python3
"""A deeper copy of a Llama target that computes exactly the same function: layers appended after the last one
with zero `o_proj` and `down_proj`, so each adds nothing to the residual stream. A drafter trained for the
original serves it with the same acceptance, while every target forward costs as much as the deeper model's:
a stand-in for "the target costs far more than the drafter" when no larger target with a trained head exists.

usage: python benchmarks/deepen_target.py TARGET_DIR OUT_DIR LAYERS
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main() -> None:
    import torch
    from safetensors.torch import load_file, save_file

    src, out, layers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    config = json.loads((src / "config.json").read_text())
    have = config["num_hidden_layers"]
    state = load_file(str(src / "model.safetensors"))
    last = f"model.layers.{have - 1}."
    for i in range(have, layers):
        for name, tensor in list(state.items()):
            if name.startswith(last):
                new = name.replace(last, f"model.layers.{i}.")
                zero = name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight"))
                state[new] = torch.zeros_like(tensor) if zero else tensor.clone()
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in ("config.json", "model.safetensors") and f.is_file():
            shutil.copy(f, out / f.name)
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=layers), indent=2))
    print(f"{out}: {have} -> {layers} layers ({layers - have} adding zero to the residual)")


if __name__ == "__main__":
    main()
