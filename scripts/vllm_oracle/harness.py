#!/usr/bin/env python3
"""vLLM's own code on CPU over EAGLE-3 draft dirs: its config parser, SpeculativeConfig, the aux-layer ids each model
runner resolves, and the unmodified Eagle3LlamaForCausalLM.load_weights fed by its DefaultModelLoader.

Runs in the environment scripts/vllm_oracle/setup.sh builds (torch 2.13 CPU and vLLM's light dependencies; vLLM's
python files from its wheel first on sys.path, $EAGLECTL_VLLM_SRC), never in eaglectl's: it imports nothing of
eaglectl. One process for every case (the process group is set up once); one JSON record per case on stdout's last
line, a crash of one case recorded as that case's error.

Input (argv[1]): a JSON file, a list of {"name", "draft", "target", "method", "parallel_drafting"}.

What is stubbed (GPU-only, owning no parameters): Attention / EncoderOnlyAttention.__init__ become a bare nn.Module
(no backend selection, no KV-cache registration). Everything else is vLLM's: ModelConfig, SpeculativeConfig,
VllmConfig.__post_init__, get_eagle3_aux_layers_from_config (V2 runner),
GPUModelRunner._get_eagle3_aux_layers_from_config (V1 runner, called unbound), ModelRegistry, the model class,
DefaultModelLoader.get_all_weights, load_weights.
Every parameter and persistent buffer is filled with NaN (integers with -2**62) before loading: what is still the
sentinel afterwards was never loaded. Each checkpoint tensor is then compared bit for bit with where it landed.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback

VLLM_SRC = os.environ.get("EAGLECTL_VLLM_SRC", "")
if VLLM_SRC and VLLM_SRC not in sys.path:
    sys.path.insert(0, VLLM_SRC)
    # the registry inspects model classes in a subprocess (registry.py _run_in_subprocess): it must find vLLM too
    os.environ["PYTHONPATH"] = os.pathsep.join([VLLM_SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
SENTINEL_INT = -(2**62)


def _stub_attention() -> None:
    import torch.nn as nn
    import vllm.model_executor.layers.attention as attn

    def __init__(self, num_heads, head_size, scale=None, num_kv_heads=None, *args, **kwargs):
        nn.Module.__init__(self)
        self.num_heads, self.head_size, self.num_kv_heads = num_heads, head_size, num_kv_heads

    for name in ("Attention", "EncoderOnlyAttention"):
        cls = getattr(attn, name, None)
        if cls is not None:
            cls.__init__ = __init__


def _init_dist(vcfg) -> None:
    from vllm.config import set_current_vllm_config
    from vllm.distributed import parallel_state as ps

    if ps.model_parallel_is_initialized():
        return
    fd, path = tempfile.mkstemp(prefix="vllm-oracle-", suffix=".dist")
    os.close(fd)
    os.unlink(path)
    with set_current_vllm_config(vcfg):
        ps.init_distributed_environment(world_size=1, rank=0, local_rank=0, distributed_init_method=f"file://{path}",
                                        backend="gloo")
        ps.initialize_model_parallel(1, 1)


def _destinations(model, name: str, t):
    """Where a checkpoint tensor must land: (vLLM parameter name, row range or None)."""
    n = name.replace("d2t", "draft_id_to_target_id") if "d2t" in name else name
    n = n.replace("midlayer.", "layers.0.", 1)
    if not n.startswith(("lm_head", "draft_id_to_target_id")):
        n = "model." + n
    attn = next((m for m in model.modules() if hasattr(m, "qkv_proj") and hasattr(m, "head_dim")), None)
    for src in (".q_proj", ".k_proj", ".v_proj"):
        if src in n and attn is not None:
            nq, nkv, hd = attn.total_num_heads, attn.total_num_kv_heads, attn.head_dim
            start = {".q_proj": 0, ".k_proj": nq * hd, ".v_proj": (nq + nkv) * hd}[src]
            return n.replace(src, ".qkv_proj"), (start, start + t.shape[0])
    for src, half in ((".gate_proj", 0), (".up_proj", 1)):
        if src in n:
            return n.replace(src, ".gate_up_proj"), (half * t.shape[0], (half + 1) * t.shape[0])
    return n, None


def run_case(case: dict) -> dict:
    import torch
    from vllm.config import (
        CacheConfig,
        DeviceConfig,
        LoadConfig,
        ModelConfig,
        ParallelConfig,
        SpeculativeConfig,
        VllmConfig,
        set_current_vllm_config,
    )

    rec: dict = {"name": case["name"], "draft": case["draft"], "errors": []}
    target = ModelConfig(model=case["target"], tokenizer=case["target"], skip_tokenizer_init=True, dtype="float32",
                         seed=0, max_model_len=None)
    parallel = ParallelConfig()
    extra = {"parallel_drafting": True} if case.get("parallel_drafting") else {}
    try:
        spec = SpeculativeConfig(model=case["draft"], method=case.get("method", "eagle3"), num_speculative_tokens=3,
                                 target_model_config=target, target_parallel_config=parallel, **extra)
    except Exception as exc:
        rec["errors"].append(f"SpeculativeConfig: {type(exc).__name__}: {str(exc)[:300]}")
        rec["stage"] = "config"
        return rec
    dmc, hf = spec.draft_model_config, spec.draft_model_config.hf_config
    rec.update(method=spec.method, parallel_drafting=bool(spec.parallel_drafting),
               architectures=list(dmc.architectures or []), hf_config_class=type(hf).__name__,
               norm_before_residual=bool(getattr(hf, "norm_before_residual", False)))
    vcfg = VllmConfig(model_config=target, speculative_config=spec, parallel_config=parallel,
                      device_config=DeviceConfig(device="cpu"), load_config=LoadConfig(), cache_config=CacheConfig())
    from vllm.v1.worker.gpu.spec_decode.eagle.eagle3_utils import get_eagle3_aux_layers_from_config

    v2 = get_eagle3_aux_layers_from_config(spec)
    try:
        from vllm.v1.worker.gpu_model_runner import GPUModelRunner

        class _Runner:
            speculative_config = spec

        v1 = GPUModelRunner._get_eagle3_aux_layers_from_config(_Runner())
    except Exception as exc:  # the V1 runner module pulls GPU-only code on some installs
        v1 = None
        rec["errors"].append(f"V1 runner: {type(exc).__name__}: {exc}")
    layers = target.get_total_num_hidden_layers()
    default = [2, layers // 2, layers - 3]
    rec["capture_v2"] = sorted(set(v2)) if v2 else None
    rec["capture_v1"] = sorted(set(v1)) if v1 else None
    rec["capture_default"] = default
    _init_dist(vcfg)
    from vllm.model_executor.model_loader.default_loader import DefaultModelLoader
    from vllm.model_executor.models.registry import ModelRegistry

    try:
        cls, _arch = ModelRegistry.resolve_model_cls(dmc.architectures, model_config=dmc)
        rec["model_class"] = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
        with set_current_vllm_config(vcfg), torch.device("cpu"):
            model = cls(vllm_config=vcfg, prefix="")
    except Exception as exc:
        rec["errors"].append(f"model: {type(exc).__name__}: {str(exc)[:300]}")
        rec["stage"] = "model"
        return rec
    named = dict(model.named_parameters())
    for mod_name, mod in model.named_modules():
        skip = getattr(mod, "_non_persistent_buffers_set", set())
        for bname, buf in mod.named_buffers(recurse=False):
            if bname not in skip and buf is not None:
                named.setdefault(f"{mod_name}.{bname}" if mod_name else bname, buf)
    with torch.no_grad():
        for t in named.values():
            t.fill_(float("nan")) if t.is_floating_point() else t.fill_(SENTINEL_INT)
    inner = getattr(model, "model", None)
    fc = getattr(inner, "fc", None)
    rec["fc_shape"] = list(fc.weight.shape) if fc is not None else None
    rec["num_aux_hidden_states"] = getattr(inner, "num_aux_hidden_states", None)
    rec["param_shapes"] = {n: list(t.shape) for n, t in named.items()}
    loader = DefaultModelLoader(vcfg.load_config)
    ckpt: dict = {}

    def weights():
        for name, tensor in loader.get_all_weights(dmc, model):
            ckpt[name] = tensor.detach().clone()
            yield name, tensor

    try:
        with set_current_vllm_config(vcfg):
            model.load_weights(weights())
    except Exception as exc:
        rec["errors"].append(f"load_weights: {type(exc).__name__}: {str(exc)[:300]}")
        rec["stage"] = "load"
    rec["checkpoint_tensors"] = sorted(ckpt)
    never = []
    for n, t in named.items():
        untouched = torch.isnan(t).all().item() if t.is_floating_point() else bool((t == SENTINEL_INT).all().item())
        if untouched:
            never.append(n)
    rec["never_loaded"] = sorted(never)
    rec["partially_loaded"] = sorted(n for n, t in named.items() if t.is_floating_point() and n not in never
                                     and torch.isnan(t).any().item())
    rec["has_own_embed_tokens"] = bool(getattr(model, "has_own_embed_tokens", False))
    rec["has_own_lm_head"] = bool(getattr(model, "has_own_lm_head", False))
    mask = getattr(model, "mask_hidden", None)
    if mask is not None:
        src = next((t for n, t in ckpt.items() if "mask_hidden" in n), None)
        rec["mask_hidden_loaded"] = bool(src is not None and torch.equal(mask, src.reshape(1, -1).to(mask.dtype)))
    checked, mismatched = 0, []
    for name, t in ckpt.items():
        if "t2d" in name or "mask_hidden" in name:
            continue
        dest, rows = _destinations(model, name, t)
        p = named.get(dest)
        if p is None:
            continue
        got = p[rows[0]:rows[1]] if rows else p
        checked += 1
        if tuple(got.shape) != tuple(t.shape) or not torch.equal(got.detach(), t.to(got.dtype)):
            mismatched.append(dest)
    rec["values_checked"], rec["values_mismatched"] = checked, mismatched
    return rec


def main() -> int:
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    t0 = time.time()
    import torch
    import vllm

    torch.set_default_dtype(torch.float32)
    _stub_attention()
    records = []
    for case in cases:
        try:
            rec = run_case(case)
        except Exception as exc:
            rec = {"name": case["name"], "errors": [f"crash: {type(exc).__name__}: {exc}"],
                   "traceback": traceback.format_exc()[-2000:]}
        records.append(rec)
    print(json.dumps({"vllm_version": getattr(vllm, "__version__", "?"), "torch_version": torch.__version__,
                      "seconds": round(time.time() - t0, 1), "records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
