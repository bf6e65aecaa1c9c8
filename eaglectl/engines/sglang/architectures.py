"""The EAGLE draft architectures SGLang registers (EntryClass), and how far eaglectl can check each one.

eaglectl replays SGLang's Llama EAGLE / EAGLE-3 loaders (`eaglectl.engines.sglang.loader`); the other heads are
served by their own loaders, so eaglectl recognises them, keeps their names and config as they are, runs the checks
that do not depend on the loader, and says which it could not run. Sources: each release's python/sglang/srt/models/.
"""

from __future__ import annotations

from dataclasses import dataclass

from eaglectl.enums import Algorithm


@dataclass(frozen=True)
class DraftArchitecture:
    name: str
    algorithm: Algorithm
    since: str  # first SGLang release that registers it
    source: str  # the SGLang model file
    replayed: bool  # eaglectl's loader replay covers it (names, shapes, uninitialised parameters)
    rules: str  # what SGLang's loader does that differs from Llama's
    required_keys: tuple[str, ...] = ()  # config keys the model class reads without a default
    single_layer: bool = False  # SGLang builds exactly one decoder layer


LLAMA_EAGLE3 = DraftArchitecture(
    "LlamaForCausalLMEagle3", Algorithm.EAGLE3, "0.5.9", "llama_eagle3.py", True,
    "Llama EAGLE-3 (replayed by eaglectl)")
LLAMA_EAGLE = DraftArchitecture(
    "LlamaForCausalLMEagle", Algorithm.EAGLE, "0.5.9", "llama_eagle.py", True, "Llama EAGLE-1 (replayed by eaglectl)")

ARCHITECTURES: dict[str, DraftArchitecture] = {a.name: a for a in (
    LLAMA_EAGLE3,
    LLAMA_EAGLE,
    DraftArchitecture(
        "Qwen2ForCausalLMEagle", Algorithm.EAGLE, "0.5.9", "qwen2_eagle.py", False,
        "EAGLE-1 on Qwen2 attention: q/k/v carry biases, fc is Linear(2H, H) with a bias, layer 0 has no "
        "input_layernorm, `model.` is prepended to every name, lm_head and embeddings come from the target"),
    DraftArchitecture(
        "MistralForCausalLMEagle", Algorithm.EAGLE, "0.5.11", "mistral_eagle.py", False,
        "EAGLE-1 on Mistral-native names (layers.N.attention.wq/wk/wv/wo, feed_forward.w1/w2/w3, "
        "eagle_linear -> fc), remapped by its own loader; unknown names are logged and skipped"),
    DraftArchitecture(
        "Eagle3DeepseekV2ForCausalLM", Algorithm.EAGLE3, "0.5.12", "kimi_k25_eagle3.py", False,
        "EAGLE-3 with DeepSeek-V2 multi-latent attention: one `midlayer` (layers.0 is renamed to it), "
        "q_a_proj + kv_a_proj_with_mqa fused, d2t / t2d matched by exact name, no norm_before_fc",
        required_keys=("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"),
        single_layer=True),
    DraftArchitecture(
        "MistralLarge3ForCausalLMEagle", Algorithm.EAGLE3, "0.5.9", "mistral_large_3_eagle.py", False,
        "EAGLE-3 on Mistral Large 3 (DeepSeek-V3 multi-latent attention) layers, a subclass of "
        "MistralLarge3ForCausalLM with its own loader (0.5.9 l.88; 0.5.23 l.59)"),
)}


def architecture_of(config: dict) -> DraftArchitecture | None:
    """The registered SGLang draft architecture a config names, if any."""
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return ARCHITECTURES.get(archs[0])
    return None


def own_loader(config: dict) -> DraftArchitecture | None:
    """A non-Llama EAGLE architecture SGLang serves with its own loader (eaglectl passes it through)."""
    arch = architecture_of(config)
    return arch if arch is not None and not arch.replayed else None
