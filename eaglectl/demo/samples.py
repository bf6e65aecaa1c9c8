"""Tiny but shape-consistent drafter checkpoints in every layout eaglectl reads (demo and tests).

Generated on demand (never committed binaries): a 64-wide Llama-style EAGLE-3 head for an 8-layer target
with a 512-token vocab and a 128-token draft vocab, plus EAGLE-1 and P-EAGLE variants, and a SpecForge training
output (training_state.pt steps, no config.json beside them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

H, HEADS, KV, HEAD_DIM, INTER, VOCAB, DRAFT_VOCAB, TARGET_LAYERS = 64, 4, 2, 16, 128, 512, 128, 8
AUX_IDS = [1, 3, 4]


@dataclass
class SampleSet:
    root: Path
    paths: dict[str, Path]


def target_config() -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
        "intermediate_size": INTER, "num_hidden_layers": TARGET_LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV, "head_dim": HEAD_DIM, "vocab_size": VOCAB, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
    }


def _selected_ids():
    import torch

    g = torch.Generator().manual_seed(7)
    rest = torch.randperm(VOCAB - 3, generator=g)[: DRAFT_VOCAB - 3] + 3
    return torch.cat([torch.arange(3), rest.sort().values]).to(torch.int64)


def _random_weights(seed: int):
    """w(*shape): seeded small bf16 weights, the same sequence for the same seed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return lambda *shape: (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)


def eagle3_tensors(layer: str, top: str, *, seed: int = 0, embeddings: bool = False) -> dict[str, Any]:
    """An EAGLE-3 head's tensors (bf16) with the given decoder-layer and top-level prefixes."""
    import torch

    w = _random_weights(seed)
    q, kv = HEADS * HEAD_DIM, KV * HEAD_DIM
    t = {f"{top}fc.weight": w(H, 3 * H)}
    t.update({f"{layer}self_attn.q_proj.weight": w(q, 2 * H), f"{layer}self_attn.k_proj.weight": w(kv, 2 * H),
              f"{layer}self_attn.v_proj.weight": w(kv, 2 * H), f"{layer}self_attn.o_proj.weight": w(H, q),
              f"{layer}mlp.gate_proj.weight": w(INTER, H), f"{layer}mlp.up_proj.weight": w(INTER, H),
              f"{layer}mlp.down_proj.weight": w(H, INTER)})
    for n in ("input_layernorm", "hidden_norm", "post_attention_layernorm"):
        t[f"{layer}{n}.weight"] = torch.ones(H, dtype=torch.bfloat16)
    t[f"{top}norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    t["lm_head.weight"] = w(DRAFT_VOCAB, H)
    if embeddings:
        t[f"{top}embed_tokens.weight"] = w(VOCAB, H)
    return t


def eagle1_tensors(*, seed: int = 1) -> dict[str, Any]:
    import torch

    w = _random_weights(seed)
    q, kv = HEADS * HEAD_DIM, KV * HEAD_DIM
    return {
        "fc.weight": w(H, 2 * H), "fc.bias": w(H), "embed_tokens.weight": w(VOCAB, H),
        "layers.0.self_attn.q_proj.weight": w(q, H), "layers.0.self_attn.k_proj.weight": w(kv, H),
        "layers.0.self_attn.v_proj.weight": w(kv, H), "layers.0.self_attn.o_proj.weight": w(H, q),
        "layers.0.mlp.gate_proj.weight": w(INTER, H), "layers.0.mlp.up_proj.weight": w(INTER, H),
        "layers.0.mlp.down_proj.weight": w(H, INTER),
        "layers.0.post_attention_layernorm.weight": torch.ones(H, dtype=torch.bfloat16),
    }


def target_tensors(*, seed: int = 8) -> dict[str, Any]:
    """A random Llama target of `target_config()`'s shape, named as transformers' LlamaForCausalLM saves it."""
    import torch

    w = _random_weights(seed)
    q, kv = HEADS * HEAD_DIM, KV * HEAD_DIM
    t = {"model.embed_tokens.weight": w(VOCAB, H), "model.norm.weight": torch.ones(H, dtype=torch.bfloat16),
         "lm_head.weight": w(VOCAB, H)}
    for i in range(TARGET_LAYERS):
        p = f"model.layers.{i}."
        t.update({f"{p}self_attn.q_proj.weight": w(q, H), f"{p}self_attn.k_proj.weight": w(kv, H),
                  f"{p}self_attn.v_proj.weight": w(kv, H), f"{p}self_attn.o_proj.weight": w(H, q),
                  f"{p}mlp.gate_proj.weight": w(INTER, H), f"{p}mlp.up_proj.weight": w(INTER, H),
                  f"{p}mlp.down_proj.weight": w(H, INTER),
                  f"{p}input_layernorm.weight": torch.ones(H, dtype=torch.bfloat16),
                  f"{p}post_attention_layernorm.weight": torch.ones(H, dtype=torch.bfloat16)})
    return t


def draft_config(*, architectures: list[str], num_layers: int, eagle3: bool = True, **extra: Any) -> dict[str, Any]:
    cfg = dict(target_config(), architectures=architectures, num_hidden_layers=num_layers)
    if eagle3:
        cfg.update(draft_vocab_size=DRAFT_VOCAB, target_hidden_size=H)
    cfg.update(extra)
    return cfg


def save_safetensors(path: Path, tensors: dict[str, Any]) -> None:
    from eaglectl.checkpoint.weights import torch_dtype_code
    from eaglectl.export.writer import OutTensor, rows_of, write_safetensors

    path.parent.mkdir(parents=True, exist_ok=True)
    outs = [OutTensor(n, torch_dtype_code(v.dtype), tuple(v.shape), rows_of(v)) for n, v in sorted(tensors.items())]
    write_safetensors(path, outs)


def save_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def save_two_shards(d: Path, tensors: dict[str, Any]) -> None:
    """`tensors` split over two safetensors shards plus `model.safetensors.index.json` in `d`."""
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for fname, members in shards.items():
        save_safetensors(d / fname, {n: tensors[n] for n in members})
    save_json(d / "model.safetensors.index.json",
              {"metadata": {}, "weight_map": {n: f for f, ms in shards.items() for n in ms}})


def save_legacy_eagle3(d: Path, *, seed: int) -> None:
    """NeMo's legacy layout: `draft_model.pt` (draft_model. prefix), a stale 32-layer config, eagle3_meta.pt."""
    import torch

    d.mkdir(parents=True, exist_ok=True)
    torch.save({"draft_model." + k: v for k, v in eagle3_tensors("layers.0.", "", seed=seed).items()},
               d / "draft_model.pt")
    save_json(d / "config.json", draft_config(architectures=["LlamaEagle3DraftModel"], num_layers=32))
    save_meta(d / "eagle3_meta.pt")


def _selected_mask():
    import torch

    mask = torch.zeros(VOCAB, dtype=torch.bool)
    mask[_selected_ids()] = True
    return mask


def save_meta(path: Path) -> None:
    import torch

    torch.save({"global_step": 100, "epoch": 0, "selected_token_ids": _selected_ids(),
                "selected_token_mask": _selected_mask()}, path)


def d2t_t2d() -> dict[str, Any]:
    import torch

    return {"d2t": _selected_ids() - torch.arange(DRAFT_VOCAB), "t2d": _selected_mask()}


def save_specforge_run(d: Path, *, seed: int = 9, steps: tuple[int, ...] = (100, 200)) -> Path:
    """SpecForge >= 0.2's `specforge train` output under `d`: `output/specforge-run-step<N>/training_state.pt` per
    step (the weights are its `draft_state_dict`), the `specforge-run-latest` link, and the draft config the run
    read, `d/config.json`, recorded (path and sha256) in the payload's provenance with the aux ids the run
    captured. The config itself names no aux ids (a run-config override of them is written nowhere else).
    Returns the run dir (`d/output`)."""
    import hashlib
    import os

    import torch

    output = d / "output"
    output.mkdir(parents=True, exist_ok=True)
    cfg_path = d / "config.json"
    save_json(cfg_path, draft_config(architectures=["LlamaForCausalLMEagle3"], num_layers=1))
    data = cfg_path.read_bytes()
    identity = ("file-stat-v2", str(cfg_path.resolve()), ("sha256", "", len(data), hashlib.sha256(data).hexdigest()))
    provenance = {"capture_layers": tuple(AUX_IDS), "draft_config": identity,
                  "embedding_key": "model.embed_tokens.weight", "input_modality": "text",
                  "lm_head_key": "lm_head.weight", "load_target_embedding": True,
                  "source_identity_format": "stat-v2", "torch_dtype": "bfloat16"}
    for i, step in enumerate(steps):
        # SpecForge's state-dict order: the t2d / d2t buffers first; the frozen embedding left out
        weights = {**d2t_t2d(), **dict(sorted(eagle3_tensors("midlayer.", "", seed=seed + i).items()))}
        step_dir = output / f"specforge-run-step{step}"
        step_dir.mkdir(exist_ok=True)
        torch.save({"draft_state_dict": {"t2d": weights.pop("t2d"), "d2t": weights.pop("d2t"), **weights},
                    "global_step": step, "epoch": 0, "strategy": "eagle3", "run_id": "specforge-run", "world_size": 1,
                    "specforge_model_provenance": tuple(sorted(provenance.items()))}, step_dir / "training_state.pt")
        link = output / "specforge-run-latest"
        if link.is_symlink():
            link.unlink()
        os.symlink(step_dir.name, link)  # relative, repointed at every save, as SpecForge does
    return output


SAMPLE_DIRS = {"nemo-consolidated": "nemo-consolidated/epoch_0_step_100", "nemo-legacy-eagle3": "nemo-legacy-eagle3",
               "nemo-legacy-eagle": "nemo-legacy-eagle", "specforge": "specforge", "eagle-research": "eagle-research",
               "nemo-sharded": "nemo-sharded/epoch_1_step_200", "p-eagle": "p-eagle/epoch_0_step_10",
               "specforge-training": "specforge-training/output", "target": "target"}


def sample_paths(root: Path) -> dict[str, Path]:
    """Where `build_samples(root)` puts each sample."""
    return {name: Path(root) / sub for name, sub in SAMPLE_DIRS.items()}


def build_samples(root: Path) -> SampleSet:
    """Write one sample per layout under `root` and return their paths."""
    import torch

    root = Path(root)
    paths: dict[str, Path] = {}

    # NeMo AutoModel consolidated: stale architectures + target layer count, model.layers.0.*, meta beside.
    d = root / "nemo-consolidated" / "epoch_0_step_100"
    save_json(d / "model" / "config.json", draft_config(architectures=["LlamaEagle3DraftModel"],
                                                        num_layers=TARGET_LAYERS, parallel_drafting=False))
    save_safetensors(d / "model" / "model.safetensors",
                     eagle3_tensors("model.layers.0.", "model.", embeddings=True))
    save_meta(d / "eagle_meta.pt")
    paths["nemo-consolidated"] = d

    # NeMo legacy EAGLE-3: draft_model.pt (draft_model. prefix) + stale 32-layer config + eagle3_meta.pt.
    d = root / "nemo-legacy-eagle3"
    save_legacy_eagle3(d, seed=2)
    paths["nemo-legacy-eagle3"] = d

    # NeMo legacy EAGLE-1: fc 2H -> H with bias, no token map.
    d = root / "nemo-legacy-eagle"
    d.mkdir(parents=True, exist_ok=True)
    torch.save(eagle1_tensors(), d / "draft_model.pt")
    save_json(d / "config.json", draft_config(architectures=["LlamaForCausalLMEagle"], num_layers=1, eagle3=False))
    paths["nemo-legacy-eagle"] = d

    # SpecForge: already SGLang-ready (midlayer.*, d2t, t2d).
    d = root / "specforge"
    save_json(d / "config.json", draft_config(architectures=["LlamaForCausalLMEagle3"], num_layers=1,
                                              eagle_config={"eagle_aux_hidden_state_layer_ids": AUX_IDS}))
    save_safetensors(d / "model.safetensors", {**eagle3_tensors("midlayer.", "", seed=3), **d2t_t2d()})
    paths["specforge"] = d

    # EAGLE research code: pytorch_model.bin with midlayer.* names.
    d = root / "eagle-research"
    d.mkdir(parents=True, exist_ok=True)
    torch.save({**eagle3_tensors("midlayer.", "", seed=4, embeddings=True), **d2t_t2d()}, d / "pytorch_model.bin")
    save_json(d / "config.json", draft_config(architectures=["LlamaForCausalLMEagle3"], num_layers=1))
    paths["eagle-research"] = d

    # NeMo consolidated, sharded with an index.
    d = root / "nemo-sharded" / "epoch_1_step_200"
    save_two_shards(d / "model", eagle3_tensors("model.layers.0.", "model.", seed=5, embeddings=True))
    save_json(d / "model" / "config.json", draft_config(architectures=["LlamaEagle3DraftModel"],
                                                        num_layers=TARGET_LAYERS))
    save_meta(d / "eagle_meta.pt")
    paths["nemo-sharded"] = d

    # P-EAGLE: parallel drafting head (not servable by SGLang).
    d = root / "p-eagle" / "epoch_0_step_10"
    save_json(d / "model" / "config.json", draft_config(architectures=["LlamaEagle3DraftModel"], num_layers=1,
                                                        parallel_drafting=True, mask_token_id=VOCAB - 1))
    save_safetensors(d / "model" / "model.safetensors",
                     {**eagle3_tensors("model.layers.0.", "model.", seed=6),
                      "model.mask_hidden": torch.zeros(1, 3 * H, dtype=torch.bfloat16)})
    save_meta(d / "eagle_meta.pt")
    paths["p-eagle"] = d

    # SpecForge >= 0.2 training output: the weights inside training_state.pt, the draft config beside the run.
    paths["specforge-training"] = save_specforge_run(root / "specforge-training")

    # The target: its config (what --target checks and serve's preflight read) and random weights, so that
    # `probe-target --engine hf` runs on it (transformers loads it; no tokenizer: probe-target feeds token ids).
    save_json(root / "target" / "config.json", target_config())
    save_safetensors(root / "target" / "model.safetensors", target_tensors())
    paths["target"] = root / "target"
    assert paths == sample_paths(root)
    return SampleSet(root=root, paths=paths)
