"""SpecForge training outputs written the way SpecForge writes them (a test fixture), in the demo's sizes.

Layouts:
- "v0.2" (SpecForge 0.2.0 `CheckpointManager`, specforge/training/checkpoint.py):
      OUT/output/{run}-step{N}/training_state.pt         rank 0's payload (training/controller.py l.839-879)
      OUT/output/{run}-step{N}/training_state_rank0.pt   {"optimizer", "rng"} (checkpoint.py l.93-97)
      OUT/output/{run}-latest -> {run}-step{last}         relative link (checkpoint.py l.104, l.428-442)
      OUT/output/{run}-best   -> {run}-step{best}         only when evaluation ran (checkpoint.py l.165-182)
      OUT/output/{run}.best_meta.json
      OUT/draft_config.json   the run's model.draft_model_config (never copied into output/)
- "v0.1" (SpecForge 0.1 scripts/train_eagle3_online.py): OUT/output/epoch_{E}/{config.json, model.safetensors,
  training_state.pt (optimizer + an argparse.Namespace)}
- "step" (pre-0.2 scripts/train_eagle3.py): OUT/output/epoch_{E}_step_{S}/{the same three files}

Weights are random, shaped like SpecForge's LlamaForCausalLMEagle3 (modeling/draft/llama3_eagle.py l.1654-1700) in
its state-dict order (t2d, d2t, [embed_tokens], midlayer.*, fc, norm, lm_head), bf16, the embedding dropped when
frozen (strategies/base.py l.306-319). `expected_specforge_export` says what `specforge export --to sglang` writes
for a 0.2 step (export/to_sglang.py l.85-86: every key without "embed", values as stored, bf16).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from eaglectl.demo.samples import DRAFT_VOCAB, HEADS, INTER, KV, TARGET_LAYERS, VOCAB, H

RUN_ID = "specforge-run"


def draft_config(*, aux_ids: list[int] | None, rope_parameters_only: bool = False,
                 strategy: str = "eagle3") -> dict[str, Any]:
    """A SpecForge configs/*-eagle3.json, scaled down (rope_parameters_only: as transformers 5 saves it)."""
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLMEagle3"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": H, "initializer_range": 0.02, "intermediate_size": INTER, "max_position_embeddings": 2048,
        "model_type": "llama", "num_attention_heads": HEADS, "num_key_value_heads": KV, "head_dim": H // HEADS,
        "num_hidden_layers": 1, "pad_token_id": 0, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": VOCAB,
        "draft_vocab_size": DRAFT_VOCAB,
    }
    if rope_parameters_only:
        del cfg["rope_theta"]
        cfg["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
    if strategy == "peagle":
        cfg["architectures"] = ["PEagleDraftModel"]
        cfg["mask_token_id"] = VOCAB - 1
    if aux_ids:
        cfg["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": list(aux_ids)}
    return cfg


def _vocab_mapping(g) -> dict[str, Any]:
    import torch

    used = torch.sort(torch.randperm(VOCAB, generator=g)[:DRAFT_VOCAB]).values  # data/preprocessing.py l.763-766
    t2d = torch.zeros(VOCAB, dtype=torch.bool)
    t2d[used] = True
    return {"d2t": (used - torch.arange(DRAFT_VOCAB)).to(torch.int64), "t2d": t2d}


def _state_dict(g, vm: dict[str, Any], *, with_embed: bool, peagle: bool = False) -> OrderedDict[str, Any]:
    import torch

    bf = torch.bfloat16
    hd = H // HEADS

    def w(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(bf)

    def ones(n):
        return (1.0 + 0.01 * torch.randn(n, generator=g)).to(bf)

    layer = "layers.0." if peagle else "midlayer."
    sd: OrderedDict[str, Any] = OrderedDict()
    sd["t2d"] = vm["t2d"].clone()
    sd["d2t"] = vm["d2t"].clone()
    if with_embed:
        sd["embed_tokens.weight"] = w(VOCAB, H)
    sd[f"{layer}self_attn.q_proj.weight"] = w(HEADS * hd, 2 * H)
    sd[f"{layer}self_attn.k_proj.weight"] = w(KV * hd, 2 * H)
    sd[f"{layer}self_attn.v_proj.weight"] = w(KV * hd, 2 * H)
    sd[f"{layer}self_attn.o_proj.weight"] = w(H, HEADS * hd)
    sd[f"{layer}mlp.gate_proj.weight"] = w(INTER, H)
    sd[f"{layer}mlp.up_proj.weight"] = w(INTER, H)
    sd[f"{layer}mlp.down_proj.weight"] = w(H, INTER)
    sd[f"{layer}hidden_norm.weight"] = ones(H)
    sd[f"{layer}input_layernorm.weight"] = ones(H)
    sd[f"{layer}post_attention_layernorm.weight"] = ones(H)
    sd["fc.weight"] = w(H, 3 * H)  # always 3 aux states (llama3_eagle.py l.1674-1678)
    sd["norm.weight"] = ones(H)
    sd["lm_head.weight"] = w(DRAFT_VOCAB, H)
    if peagle:  # modeling/draft/peagle.py l.175-238: mask_hidden [1, 1, fc_in], everything kept
        sd["mask_hidden"] = w(1, 1, 3 * H)
    return sd


def _optimizer(sd: dict[str, Any], step: int, total: int) -> dict[str, Any]:
    """BF16Optimizer.state_dict() (specforge/optimizer.py l.221-229): AdamW over fp32 masters."""
    import torch

    fp32 = [v.float().clone() for k, v in sd.items() if v.is_floating_point() and "embed" not in k]
    state = {i: {"step": torch.tensor(float(step)), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
             for i, p in enumerate(fp32)}
    opt = {"state": state, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0.0,
                                             "amsgrad": False, "initial_lr": 1e-4,
                                             "params": list(range(len(fp32)))}]}
    sched = {"warmup_steps": int(total * 0.015), "total_steps": total, "base_lrs": [1e-4], "last_epoch": step}
    return {"optimizer_state_dict": opt, "scheduler_state_dict": sched, "lr_scheduler_type": "cosine",
            "max_grad_norm": 0.5, "fp32_params": fp32}


def _identity(path: Path) -> tuple[Any, ...]:
    """training/provenance.py model_source_identity of a JSON file: ("file-stat-v2", abs, ("sha256", "", size, hex))."""
    data = path.read_bytes()
    return ("file-stat-v2", str(path.resolve()), ("sha256", "", len(data), hashlib.sha256(data).hexdigest()))


def _atomic_save(obj: Any, path: Path) -> None:  # checkpoint.py l.415-419
    import torch

    torch.save(obj, str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)


def _point(output: Path, name: str, ckpt: Path) -> None:  # checkpoint.py l.428-442: a relative link
    link = output / name
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(ckpt.name, link)


def write_run(out: Path, *, layout: str = "v0.2", steps: tuple[int, ...] = (100, 200), best: int | None = None,
              aux_ids: list[int] | None = [1, 3, 4], aux_in_run_config: bool = False,  # noqa: B006
              embed_trainable: bool = False, ddp: bool = False, links: bool = True, run_id: str = RUN_ID,
              rope_parameters_only: bool = False, strategy: str = "eagle3", seed: int = 0) -> dict[str, Any]:
    """Write a SpecForge training output under `out`; returns its paths (`output`, `checkpoints`, `draft_config`)
    and the state dicts saved per step (`states`, name -> tensor, in saved order)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = Path(out)
    output = out / "output"
    output.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "draft_config.json"
    cfg = draft_config(aux_ids=None if aux_in_run_config else aux_ids, rope_parameters_only=rope_parameters_only,
                       strategy=strategy)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    vm = _vocab_mapping(g)
    if layout != "v0.2":
        return _write_legacy(out, output, cfg, vm, g, layout=layout, steps=steps)
    peagle = strategy == "peagle"
    capture = list(aux_ids) if aux_ids else [1, TARGET_LAYERS // 2 - 1, TARGET_LAYERS - 4]  # model_providers.py
    provenance = {"source_identity_format": "stat-v2",
                  "target_model": ("reference", "meta-llama/Llama-3.1-8B-Instruct"), "target_revision": None,
                  "draft_config": _identity(cfg_path), "draft_revision": None, "vocab_mapping": None,
                  "embedding_key": "model.embed_tokens.weight", "lm_head_key": "lm_head.weight",
                  "load_target_embedding": True, "capture_layers": tuple(capture), "input_modality": "text",
                  "torch_dtype": "bfloat16"}
    options = {"compact_teacher": False, "compact_teacher_chunk_size": None}
    contract = {"eagle3_draft_num_hidden_layers": 1, "eagle3_ttt_length": 7,
                "eagle3_attention_backend": "flex_attention", "eagle3_lk_loss_type": None, "eagle3_kl_scale": 1.0,
                "eagle3_kl_decay": 1.0, "eagle3_compact_teacher": False, "eagle3_compact_teacher_chunk_size": None,
                "specforge_step_options": tuple((k, options[k]) for k in sorted(options)),
                "specforge_model_provenance": tuple((k, provenance[k]) for k in sorted(provenance))}
    with_embed = embed_trainable or peagle
    frozen_embed = _state_dict(g, vm, with_embed=True)["embed_tokens.weight"]
    written, states = [], {}
    for step in steps:
        sd = _state_dict(g, vm, with_embed=with_embed, peagle=peagle)
        if with_embed and not embed_trainable:
            sd["embed_tokens.weight"] = frozen_embed
        opt = _optimizer(sd, step, max(steps))
        shared = {"draft_state_dict": sd, "global_step": step, "epoch": 0, "epoch_batch": step, "epoch_samples": step,
                  "strategy": strategy, "run_id": run_id, "world_size": 1, "dataset_size": 64, "batch_size": 1,
                  "accumulation_steps": 1, "num_epochs": 1, "effective_total_steps": max(steps), "tp_size": 1,
                  "sp_ulysses_size": 1, "sp_ring_size": 1, **contract}
        if ddp:
            shared["replicated_optimizer_state"] = opt
        ckpt = output / f"{run_id}-step{step}"
        ckpt.mkdir()
        _atomic_save({"optimizer": None if ddp else opt, "rng": {"torch": torch.get_rng_state(), "cuda": None}},
                     ckpt / "training_state_rank0.pt")
        _atomic_save(shared, ckpt / "training_state.pt")
        if links:
            _point(output, f"{run_id}-latest", ckpt)
            if best == step:
                _point(output, f"{run_id}-best", ckpt)
                (output / f"{run_id}.best_meta.json").write_text(json.dumps(
                    {"run_id": run_id, "step": step, "score": 3.2, "metric": "eval/simulated_acc_len"}))
        written.append(ckpt)
        states[ckpt.name] = dict(sd)
    return {"output": output, "checkpoints": written, "draft_config": cfg_path, "states": states,
            "capture_layers": capture}


def _write_legacy(out: Path, output: Path, cfg: dict[str, Any], vm: dict[str, Any], g, *, layout: str,
                  steps: tuple[int, ...]) -> dict[str, Any]:
    import torch

    from eaglectl.demo.samples import save_safetensors

    args = argparse.Namespace(target_model_path="meta-llama/Llama-3.1-8B-Instruct",
                              draft_model_config=str(out / "draft_config.json"), output_dir=str(output))
    written, states = [], {}
    for e, step in enumerate(steps):
        d = output / (f"epoch_{e}" if layout == "v0.1" else f"epoch_{e}_step_{step}")
        d.mkdir()
        sd = _state_dict(g, vm, with_embed=False)
        opt = _optimizer(sd, step, max(steps))
        state = ({"optimizer_state_dict": opt["optimizer_state_dict"],
                  "scheduler_state_dict": opt["scheduler_state_dict"], "epoch": e, "args": args}
                 if layout == "v0.1" else {"epoch": e, "global_step": step, "args": args, **opt})
        torch.save(state, d / "training_state.pt")  # needs argparse.Namespace to unpickle: never read by eaglectl
        (d / "config.json").write_text(json.dumps({**cfg, "transformers_version": "4.53.1"}, indent=2,
                                                  sort_keys=True))
        save_safetensors(d / "model.safetensors", sd)  # draft_model.save_pretrained(dir, state_dict=...)
        written.append(d)
        states[d.name] = dict(sd)
    return {"output": output, "checkpoints": written, "draft_config": out / "draft_config.json", "states": states}


def expected_specforge_export(state: dict[str, Any]) -> dict[str, Any]:
    """What `specforge export --to sglang` writes into model.safetensors for a step's draft_state_dict: every tensor
    whose name has no "embed" in it, as stored (export/to_sglang.py l.85-86; the weight map is the identity for
    LlamaForCausalLMEagle3, l.33-35)."""
    return {k: v for k, v in state.items() if "embed" not in k}
