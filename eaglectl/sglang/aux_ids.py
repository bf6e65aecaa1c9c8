"""Which target layers SGLang captures for an EAGLE-3 draft's aux-layer ids, per target family and release.

A *capture* index c means the hidden state (h + residual) entering target layer c, i.e. the output of layer c-1
(Hugging Face `output_hidden_states[c]`; vLLM's and speculators' id numbering). SGLang ids number layer *outputs*
for most families and are shifted by one before capture; some families take some lists as they are. The rules
below are copied from each release's `set_eagle3_layers_to_capture` (python/sglang/srt/models/*.py):

- llama.py, qwen2.py, qwen3.py, qwen3_moe.py, glm4_moe.py, minimax_m2.py, mllama4 (delegates), every release:
  explicit ids -> `[i + 1 for i in ids]`; no ids -> `[2, L // 2, L - 3]` as they are.
- deepseek_v2.py (DeepSeek-V2/V3/V3.2, Kimi-K2 / K2.5 through `language_model`) and glm4_moe_lite.py:
  0.5.9-0.5.12 `+1`; from 0.5.13 `+1` only when `ids[0] == 1`, otherwise as they are (SGLang PR #25454).
- gpt_oss.py: `+1` through 0.5.16; from 0.5.17 `max(ids) == L` -> as they are, the final boundary (the last
  layer's output before the final norm) included (SGLang PR #32334); otherwise `+1`.
A capture index outside [0, L-1] is never reached by the layer loop (gpt-oss >= 0.5.17 also captures L), so SGLang
returns fewer states than the draft's fc expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

Version = tuple[int, ...]


class Family(str, Enum):
    """How a target family turns draft aux-layer ids into captured layers."""

    plus_one = "llama-style"  # Llama, Qwen2/3, Qwen3-MoE, GLM-4.5-MoE, MiniMax-M2, Llama-4, Mistral ...
    deepseek = "deepseek-style"  # DeepSeek-V2/V3/V3.2, Kimi-K2/K2.5, GLM-4.x-MoE-Lite
    gpt_oss = "gpt-oss"


DEEPSEEK_MODEL_TYPES = frozenset({"deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2", "kimi_k25",
                                  "glm4_moe_lite"})
DEEPSEEK_ARCHITECTURES = frozenset({"DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "DeepseekV32ForCausalLM",
                                    "KimiK25ForConditionalGeneration", "Glm4MoeLiteForCausalLM"})
GPT_OSS_MODEL_TYPES = frozenset({"gpt_oss"})
GPT_OSS_ARCHITECTURES = frozenset({"GptOssForCausalLM"})

DEEPSEEK_FIRST_ID_RULE = (0, 5, 13)  # deepseek_v2.py / glm4_moe_lite.py: "ids[0] == 1 -> +1, else as they are"
GPT_OSS_FINAL_BOUNDARY = (0, 5, 17)  # gpt_oss.py: "max(ids) == L -> as they are"
# Releases where a rule above changes; a verdict for each covers the range up to the next one.
RULE_RANGES: tuple[tuple[str, Version, Version | None], ...] = (
    ("0.5.9-0.5.12", (0, 5, 9), (0, 5, 12)),
    ("0.5.13-0.5.16", (0, 5, 13), (0, 5, 16)),
    ("0.5.17+", (0, 5, 17), None),
)
NEWEST = RULE_RANGES[-1][1]


def parse_version(text: str) -> Version:
    """`0.5.15.post1` -> (0, 5, 15): post-releases load like their base release."""
    parts = []
    for piece in text.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def family_of(model_type: str | None, architectures: Sequence[str] | None) -> Family:
    """The capture family of a target, from its (text) config's `model_type` and `architectures`."""
    archs = set(architectures or ())
    if model_type in DEEPSEEK_MODEL_TYPES or archs & DEEPSEEK_ARCHITECTURES:
        return Family.deepseek
    if model_type in GPT_OSS_MODEL_TYPES or archs & GPT_OSS_ARCHITECTURES:
        return Family.gpt_oss
    return Family.plus_one


def captured(ids: Sequence[int] | None, family: Family, num_layers: int, version: Version = NEWEST) -> list[int]:
    """The capture indices SGLang `version` uses for draft ids `ids` on an `num_layers`-layer target."""
    if not ids:
        return [2, num_layers // 2, num_layers - 3]
    ids = list(ids)
    if family is Family.deepseek and version >= DEEPSEEK_FIRST_ID_RULE and ids[0] != 1:
        return ids
    if family is Family.gpt_oss and version >= GPT_OSS_FINAL_BOUNDARY and max(ids) == num_layers:
        return ids
    return [i + 1 for i in ids]


def reachable(capture: int, family: Family, num_layers: int, version: Version = NEWEST) -> bool:
    """Whether SGLang's layer loop ever records this capture index."""
    if family is Family.gpt_oss and version >= GPT_OSS_FINAL_BOUNDARY and capture == num_layers:
        return True
    return 0 <= capture < num_layers


def ids_for_capture(capture: Sequence[int], family: Family, num_layers: int,
                    version: Version = NEWEST) -> list[int] | None:
    """Draft ids that make SGLang `version` capture exactly `capture` (None: no id list does)."""
    capture = list(capture)
    if not capture or not all(reachable(c, family, num_layers, version) for c in capture):
        return None
    for candidate in (list(capture), [c - 1 for c in capture]):
        if captured(candidate, family, num_layers, version) == capture:
            return candidate
    return None


def from_input_numbering(ids: Sequence[int], family: Family, version: Version = NEWEST) -> list[int] | None:
    """Convert vLLM / speculators / HF-`hidden_states` ids (k = input to layer k) into SGLang ids (None: no SGLang
    id list captures them). Shifting by one is right for every family but DeepSeek-style targets from 0.5.13,
    which take a list whose first id is not 1 as it is. (A gpt-oss id equal to the layer count would also be kept
    as it is; without the target's layer count it is shifted like the others.)"""
    capture = list(ids)
    if not capture or min(capture) < 0:
        return None
    if family is Family.deepseek and version >= DEEPSEEK_FIRST_ID_RULE:
        return capture if capture[0] != 1 else None
    shifted = [c - 1 for c in capture]
    return shifted if min(shifted) >= 0 else None
