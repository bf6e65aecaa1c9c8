#!/usr/bin/env python3
"""speculators' own code on CPU over speculators-format draft dirs: SpeculatorModelConfig.from_pretrained (pydantic
validation), the registered model class's key set against the stored tensors, then the real
SpeculatorModel.from_pretrained with the verifier pointed at a local target, NaN left afterwards (speculators fills
what it never loads with NaN), and every loaded tensor against the reference tensors eaglectl's source held.

Runs in the environment scripts/vllm_oracle/setup.sh builds for speculators (torch 2.13 CPU, transformers 5.19);
imports nothing of eaglectl. Input (argv[1]): a JSON list of {"name", "dir", "verifier", "reference"} (reference: a
safetensors file, name -> the source's tensor). One JSON document on stdout's last line.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_case(case: dict) -> dict:
    import torch
    from safetensors.torch import load_file
    from speculators import SpeculatorModel, SpeculatorModelConfig

    rec: dict = {"name": case["name"], "errors": []}
    try:
        cfg = SpeculatorModelConfig.from_pretrained(case["dir"])
    except Exception as exc:
        rec["errors"].append(f"config: {type(exc).__name__}: {str(exc)[:400]}")
        return rec
    rec["config_class"] = type(cfg).__name__
    rec["norm_before_residual"] = getattr(cfg, "norm_before_residual", None)
    cfg.speculators_config.verifier.name_or_path = case["verifier"]
    cls = SpeculatorModel.registered_model_class_from_config(cfg)
    rec["model_class"] = cls.__name__
    stored = {}
    for f in sorted(os.listdir(case["dir"])):
        if f.endswith(".safetensors"):
            stored.update(load_file(os.path.join(case["dir"], f)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty = cls(config=cfg)
    expected = empty.state_dict()
    ignore = set(getattr(cls, "_keys_to_ignore_on_load_missing", []) or [])
    saved_only = set(getattr(cls, "_keys_to_ignore_on_save", []) or [])
    rec["missing"] = sorted(k for k in expected if k not in stored and k not in ignore and k not in saved_only)
    rec["missing_ignored"] = sorted(k for k in expected if k not in stored and (k in ignore or k in saved_only))
    rec["unexpected"] = sorted(k for k in stored if k not in expected)
    rec["shape_mismatch"] = sorted(k for k in stored if k in expected and stored[k].shape != expected[k].shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = SpeculatorModel.from_pretrained(case["dir"], config=cfg)
    except Exception as exc:
        rec["errors"].append(f"from_pretrained: {type(exc).__name__}: {str(exc)[:400]}")
        rec["traceback"] = traceback.format_exc()[-1500:]
        return rec
    state = model.state_dict()
    rec["nan_left"] = sorted(n for n, t in state.items() if t.is_floating_point() and torch.isnan(t).any().item())
    reference = load_file(case["reference"])
    rec["compared"] = len(reference)
    rec["not_equal"] = sorted(n for n, t in reference.items() if n not in state or state[n].shape != t.shape
                              or not torch.equal(state[n], t.to(state[n].dtype)))
    rec["aux_ids"] = getattr(model.config, "eagle_aux_hidden_state_layer_ids", None)
    return rec


def main() -> int:
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    t0 = time.time()
    import importlib.metadata as md

    import torch
    import transformers

    records = []
    for case in cases:
        try:
            records.append(run_case(case))
        except Exception as exc:
            records.append({"name": case["name"], "errors": [f"crash: {type(exc).__name__}: {exc}"],
                            "traceback": traceback.format_exc()[-1500:]})
    print(json.dumps({"speculators_version": md.version("speculators"),
                      "transformers_version": transformers.__version__, "torch_version": torch.__version__,
                      "seconds": round(time.time() - t0, 1), "records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
