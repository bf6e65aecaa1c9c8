"""Which speculative configurations a sweep launches: the cross product of --steps / --topk / --draft-tokens (or
explicit --config triples), pruned of those SGLang refuses, fails on, or rewrites into another one.

SGLang's rules, from its sources (0.5.9-0.5.23; notes in docs/sglang-versions.md):
- topk 1: SGLang sets num_draft_tokens := num_steps + 1 with a warning (server_args.py `_handle_speculative_decoding`,
  from 0.5.13 arg_groups/speculative_hook.py `_handle_eagle_family`). A sweep keeps only the triple SGLang runs,
  so (3,1,8) is pruned as a rewrite of (3,1,4).
- topk > 1: the draft tree offers topk candidates at step 1 and topk**2 at each later step; SGLang picks the
  num_draft_tokens - 1 best with `torch.topk` (speculative/eagle_utils.py `organize_draft_results`), which fails at
  the first request when asked for more than there are: num_draft_tokens - 1 <= topk + (num_steps - 1) * topk**2.
- num_draft_tokens 1 verifies no drafted token at all: nothing to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

from eaglectl.errors import UsageError

MAX_CONFIGS = 64  # each one is a server start (~1 min on a GPU): a typo like --steps 1-100 should not cost hours


@dataclass(frozen=True, order=True)
class SpecConfig:
    steps: int
    topk: int
    draft_tokens: int

    @property
    def label(self) -> str:
        return f"{self.steps},{self.topk},{self.draft_tokens}"


@dataclass
class Pruned:
    config: SpecConfig
    reason: str


class SweepError(UsageError):
    """A sweep specification that cannot be run: a command-line problem (exit 2)."""


def parse_int_list(text: str, *, option: str) -> list[int]:
    """`1,3,5` -> [1, 3, 5]; positive integers only, duplicates dropped, order kept."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 6 or int(part) < 1:
            raise SweepError(f"{option} {text!r}: expected positive integers separated by commas, e.g. 1,3,5")
        if int(part) not in out:
            out.append(int(part))
    return out


def parse_config(text: str) -> SpecConfig:
    """`3,1,4` -> SpecConfig(steps=3, topk=1, draft_tokens=4)."""
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and 0 < int(p) < 10**6 for p in parts):
        raise SweepError(f"--config {text!r}: expected STEPS,TOPK,DRAFT_TOKENS (three positive integers), e.g. 3,1,4")
    return SpecConfig(*(int(p) for p in parts))


def max_draft_tokens(steps: int, topk: int) -> int:
    """The most num_draft_tokens SGLang can fill from its draft tree (the root plus the candidates)."""
    return 1 + topk + (steps - 1) * topk * topk


def why_pruned(c: SpecConfig) -> str | None:
    """Why SGLang would not run `c` as given, or None."""
    if c.topk == 1 and c.draft_tokens != c.steps + 1:
        return (f"topk 1 needs draft tokens = steps + 1: SGLang rewrites it to {c.steps},1,{c.steps + 1}")
    if c.draft_tokens < 2:
        return "draft tokens 1 verifies no drafted token"
    limit = max_draft_tokens(c.steps, c.topk)
    if c.draft_tokens > limit:
        return (f"the draft tree of {c.steps} step(s) x topk {c.topk} holds {limit - 1} candidate(s): SGLang fails "
                f"at the first request for more than {limit} draft tokens")
    return None


def expand(steps: list[int], topks: list[int], draft_tokens: list[int] | None,
           explicit: list[SpecConfig]) -> tuple[list[SpecConfig], list[Pruned]]:
    """The configurations to run (in order, without duplicates) and those pruned with the reason. Explicit
    `--config` triples are taken as given, then checked like the cross product. Without `--draft-tokens`, each
    (steps, topk) gets SGLang's own choice for topk 1 (steps + 1) and the largest tree it can fill, capped at 8
    draft tokens beyond the first, otherwise."""
    if explicit:
        candidates = list(explicit)
    else:
        candidates = []
        for s in steps:
            for k in topks:
                if draft_tokens is None:
                    n = s + 1 if k == 1 else min(max_draft_tokens(s, k), s + 1 + 8)
                    candidates.append(SpecConfig(s, k, n))
                else:
                    candidates.extend(SpecConfig(s, k, n) for n in draft_tokens)
    keep: list[SpecConfig] = []
    pruned: list[Pruned] = []
    for c in candidates:
        reason = why_pruned(c)
        if reason is not None:
            pruned.append(Pruned(c, reason))
            rewritten = SpecConfig(c.steps, 1, c.steps + 1)
            if c.topk == 1 and rewritten not in keep and rewritten not in candidates:
                keep.append(rewritten)  # what SGLang would run instead, measured once under its own name
        elif c in keep:
            pruned.append(Pruned(c, "listed twice"))
        else:
            keep.append(c)
    if not keep:
        raise SweepError("no configuration left to run: " + "; ".join(f"{p.config.label}: {p.reason}" for p in pruned),
                         hint="topk 1 needs draft tokens = steps + 1 (e.g. --config 3,1,4)")
    if len(keep) > MAX_CONFIGS:
        raise SweepError(f"{len(keep)} configurations (each one a server start): at most {MAX_CONFIGS}",
                         hint="narrow --steps / --topk / --draft-tokens, or list --config triples")
    return keep, pruned
