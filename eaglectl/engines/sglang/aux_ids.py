"""Which target layers SGLang captures for an EAGLE-3 draft's aux-layer ids, per target family and release.

A *capture* index c means the hidden state (h + residual) entering target layer c, i.e. the output of layer c-1
(Hugging Face `output_hidden_states[c]`; vLLM's and speculators' id numbering). SGLang ids number layer *outputs*
for most families and are shifted by one before capture; some families take some lists as they are. The families,
their rules per release and the sources they were read from are `eaglectl.engines.sglang.rules` (CAPTURE_FAMILIES,
CAPTURE_RULES, CAPTURE_ORDER); this module answers questions about them with the names the checks use. A capture
index the layer loop never reaches means SGLang returns fewer states than the draft's fc expects; a rule with a
`failure` means the target fails with any EAGLE-3 draft in its releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from eaglectl.engines.sglang import rules
from eaglectl.engines.source import Rule


class Family(str, Enum):
    """How a target family turns draft aux-layer ids into captured layers (rules.CAPTURE_FAMILIES)."""

    plus_one = "llama-style"  # Llama, Qwen2/3, GLM-4.5-MoE, MiniMax-M2, Llama-4, Mistral ...
    qwen_moe = "qwen-moe"  # Qwen2-MoE, Qwen3-MoE, Qwen3-Next: per-layer flags that are never cleared
    deepseek = "deepseek-style"  # DeepSeek-V2/V3/V3.2, Kimi-K2, GLM-4.x-MoE-Lite, GLM-5, Mistral-Large-3
    kimi_k25 = "kimi-k2.5"  # DeepSeek's rule through its language model, from 0.5.10
    gpt_oss = "gpt-oss"
    qwen3_vl = "qwen3-vl"
    qwen3_5 = "qwen3.5"  # Qwen3.5 (MoE) ForConditionalGeneration
    qwen3_5_text = "qwen3.5-text"  # Qwen3.5 (MoE) ForCausalLM
    minimax_m3 = "minimax-m3"
    minimax_m3_vl = "minimax-m3-vl"


_RULES_NAME = {Family.plus_one: "llama-like", Family.deepseek: "deepseek"}
_FAMILY = {_RULES_NAME.get(fam, fam.value): fam for fam in Family}


def _name(family: Family) -> str:
    return _RULES_NAME.get(family, family.value)


def rule_ranges(family: Family) -> tuple[tuple[str, str, str | None], ...]:
    """(label, first, last) of every span of releases in which neither `family`'s capture rule nor the capture
    order changes, oldest first; the newest is open (`first+`, last None)."""
    starts = rules.capture_starts(_name(family))
    out: list[tuple[str, str, str | None]] = []
    for first, nxt in zip(starts, [*starts[1:], None], strict=True):
        if nxt is None:
            out.append((f"{first}+", first, None))
            continue
        last = [r for r in rules.RELEASES if rules.older(r, nxt)][-1]
        out.append((f"{first}-{last}" if last != first else first, first, last))
    return tuple(out)


NEWEST = rules.NEWEST_KNOWN


def family_of(model_type: str | None, architectures: Sequence[str] | None) -> Family:
    """The capture family of a target, from its `architectures` and (text) config's `model_type`."""
    return _FAMILY[rules.capture_family(model_type, tuple(architectures or ()))]


def rule(family: Family, version: str = NEWEST) -> rules.CaptureRule:
    """The capture rule `family` follows in `version`."""
    return rules.capture_rule(_name(family), version)


def rules_of(family: Family) -> list[rules.CaptureRule]:
    """Every capture rule of `family`, oldest first."""
    return rules.capture_rules_of(_name(family))


def fails(family: Family, version: str = NEWEST) -> bool:
    """Whether the target fails with any EAGLE-3 draft in `version` (rules.CaptureRule.failure)."""
    return rule(family, version).failure is not None


def captured(ids: Sequence[int] | None, family: Family, num_layers: int, version: str = NEWEST) -> list[int]:
    """The capture indices SGLang `version` uses for draft ids `ids` on an `num_layers`-layer target."""
    if not ids:
        return rules.default_positions(num_layers, rule(family, version))
    return rules.captured_positions(rule(family, version), list(ids), num_layers)


def reachable(capture: int, family: Family, num_layers: int, version: str = NEWEST) -> bool:
    """Whether SGLang's layer loop ever records this capture index."""
    return rules.position_reached(rule(family, version), capture, num_layers)


def highest_id(family: Family, num_layers: int, version: str = NEWEST) -> int | None:
    """The largest single id whose capture the layer loop of `version` reaches (None: none does)."""
    return max((i for i in range(num_layers + 1)
                if all(reachable(c, family, num_layers, version) for c in captured([i], family, num_layers, version))),
               default=None)


def adds_one(family: Family, version: str = NEWEST) -> bool:
    """Whether `version` captures id + 1 for every id list, and the default as given."""
    r = rule(family, version)
    return r.convention == "plus_one" and r.default_shift is None


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
    capture that repeats a layer or lies past the target's last one): ids to pin whatever SGLang serves them.
    Releases in which the target fails with any draft are left out."""
    capture = list(capture)
    if not capture or len(set(capture)) != len(capture):
        return None
    serving = [start for _, start, _ in rule_ranges(family) if not fails(family, start)]
    for candidate in (capture, [c - 1 for c in capture]):
        if min(candidate) >= 0 and all(captured(candidate, family, num_layers, start) == capture
                                       and all(reachable(c, family, num_layers, start) for c in capture)
                                       for start in serving):
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
    if rule(family, version).convention == "plus_one_if_first_is_1":
        return capture if capture[0] != 1 else None
    shifted = [c - 1 for c in capture]
    return shifted if min(shifted) >= 0 else None


@dataclass(frozen=True)
class Delivery:
    """What SGLang hands the draft's fc from the target in one release: the positions (ascending, the layer loop's
    order) of eager batches and of CUDA-graph-replayed ones, or why the target fails. `why`: what makes them
    differ from the positions the draft's ids ask for (rules.CAPTURE_ORDER), None when they do not."""

    asked: list[int]
    eager: list[int]
    replayed: list[int]
    failure: Rule[str] | None = None
    why: Rule[str] | None = None


def delivered(ids: Sequence[int] | None, family: Family, num_layers: int, version: str = NEWEST, *,
              cuda_graph: bool = True) -> Delivery:
    """What SGLang `version` captures for draft ids `ids` (None: the default) on a `num_layers`-layer target. Where
    the default capture is set before the ids and CUDA graphs are recorded with it (CAPTURE_ORDER), graph-replayed
    batches get the default layers, and a sticky family's eager batches the default's and the draft's together."""
    r = rule(family, version)
    if r.failure is not None:
        return Delivery([], [], [], failure=r.failure)

    def loop(positions: list[int]) -> list[int]:  # what the layer loop records: once each, in layer order
        return sorted({p for p in positions if rules.position_reached(r, p, num_layers)})

    asked = loop(captured(ids, family, num_layers, version))
    order = rules.capture_order(version)
    if not ids or order.default_first is None or not cuda_graph:
        return Delivery(asked, asked, asked)
    default = loop(rules.default_positions(num_layers, r))
    eager = loop(asked + default) if r.sticky and r.sticky.value else asked
    if eager == asked and default == asked:
        return Delivery(asked, asked, asked)
    return Delivery(asked, eager, default, why=order.default_first)
