"""Which target layers SGLang captures for an EAGLE-3 draft's aux-layer ids, per target family and release.

A *capture* index c means the hidden state (h + residual) entering target layer c, i.e. the output of layer c-1
(Hugging Face `output_hidden_states[c]`; vLLM's and speculators' id numbering). SGLang ids number layer *outputs*
for most families and are shifted by one before capture; some families take some lists as they are. The families,
their rules per release and the sources they were read from are `eaglectl.engines.sglang.rules` (CAPTURE_FAMILIES,
CAPTURE_RULES); this module answers questions about them with the names the checks use. A capture index the layer
loop never reaches means SGLang returns fewer states than the draft's fc expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from eaglectl.engines.sglang import rules


class Family(str, Enum):
    """How a target family turns draft aux-layer ids into captured layers (rules.CAPTURE_FAMILIES)."""

    plus_one = "llama-style"  # Llama, Qwen2/3, Qwen3-MoE, GLM-4.5-MoE, MiniMax-M2, Llama-4, Mistral ...
    deepseek = "deepseek-style"  # DeepSeek-V2/V3/V3.2, Kimi-K2/K2.5, GLM-4.x-MoE-Lite
    gpt_oss = "gpt-oss"


_RULES_NAME = {Family.plus_one: "llama-like", Family.deepseek: "deepseek", Family.gpt_oss: "gpt-oss"}
_FAMILY = {name: fam for fam, name in _RULES_NAME.items()}


def _release_key(version: str) -> tuple[int, int, int, int]:
    return rules.release_key(version) or (0, 0, 0, 0)  # every CAPTURE_RULES release parses


def _rule_ranges() -> tuple[tuple[str, str, str | None], ...]:
    """(label, first, last) of every span of releases in which no family's capture rule changes."""
    starts = rules.capture_starts()
    out: list[tuple[str, str, str | None]] = []
    for first, nxt in zip(starts, [*starts[1:], None], strict=True):
        if nxt is None:
            out.append((f"{first}+", first, None))
            continue
        last = max((r.last for r in rules.CAPTURE_RULES if rules.older(r.last, nxt)), key=_release_key)
        out.append((f"{first}-{last}", first, last))
    return tuple(out)


# Releases where a capture rule changes; a verdict for each covers the range up to the next one.
RULE_RANGES = _rule_ranges()
NEWEST = rules.NEWEST_KNOWN


def family_of(model_type: str | None, architectures: Sequence[str] | None) -> Family:
    """The capture family of a target, from its (text) config's `model_type` and `architectures`."""
    return _FAMILY[rules.capture_family(model_type, tuple(architectures or ()))]


def _rule(family: Family, version: str) -> rules.CaptureRule:
    return rules.capture_rule(_RULES_NAME[family], version)


def captured(ids: Sequence[int] | None, family: Family, num_layers: int, version: str = NEWEST) -> list[int]:
    """The capture indices SGLang `version` uses for draft ids `ids` on an `num_layers`-layer target."""
    if not ids:
        return rules.default_positions(num_layers)
    return rules.captured_positions(_rule(family, version), list(ids), num_layers)


def reachable(capture: int, family: Family, num_layers: int, version: str = NEWEST) -> bool:
    """Whether SGLang's layer loop ever records this capture index."""
    return rules.position_reached(_rule(family, version), capture, num_layers)


def ids_for_capture(capture: Sequence[int], family: Family, num_layers: int,
                    version: str = NEWEST) -> list[int] | None:
    """Draft ids that make SGLang `version` capture exactly `capture` (None: no id list does)."""
    capture = list(capture)
    if not capture or not all(reachable(c, family, num_layers, version) for c in capture):
        return None
    for candidate in (list(capture), [c - 1 for c in capture]):
        if captured(candidate, family, num_layers, version) == capture:
            return candidate
    return None


def ids_for_capture_in_every_release(capture: Sequence[int], family: Family, num_layers: int) -> list[int] | None:
    """Distinct draft ids that make every known release capture exactly `capture` (None: no id list does, e.g. a
    capture that repeats a layer or lies past the target's last one): ids to pin whatever SGLang serves them."""
    capture = list(capture)
    if not capture or len(set(capture)) != len(capture):
        return None
    for candidate in (capture, [c - 1 for c in capture]):
        if min(candidate) >= 0 and all(captured(candidate, family, num_layers, start) == capture
                                       and all(reachable(c, family, num_layers, start) for c in capture)
                                       for _, start, _ in RULE_RANGES):
            return candidate
    return None


def from_input_numbering(ids: Sequence[int], family: Family, version: str = NEWEST) -> list[int] | None:
    """Convert vLLM / speculators / HF-`hidden_states` ids (k = input to layer k) into SGLang ids (None: no SGLang
    id list captures them). Shifting by one is right for every rule but "plus_one_if_first_is_1", which takes a
    list whose first id is not 1 as it is. (Under "as_is_if_max_is_num_layers" an id equal to the layer count
    would also be kept as it is; without the target's layer count it is shifted like the others.)"""
    capture = list(ids)
    if not capture or min(capture) < 0:
        return None
    if _rule(family, version).convention == "plus_one_if_first_is_1":
        return capture if capture[0] != 1 else None
    shifted = [c - 1 for c in capture]
    return shifted if min(shifted) >= 0 else None
