"""Choices shared by the CLI and the core: one `str, Enum` each, never a second list in the CLI."""

from __future__ import annotations

from enum import Enum


class Algorithm(str, Enum):
    """Speculative algorithm names as SGLang spells them."""

    EAGLE3 = "EAGLE3"
    EAGLE = "EAGLE"


# One dtype vocabulary for every command: shown as torch / SGLang spell them, the common short forms accepted.
DTYPES = ("bfloat16", "float16", "float32")
DTYPE_ALIASES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
                 "half": "float16", "float32": "float32", "fp32": "float32", "float": "float32"}


def canonical_dtype(name: object) -> str | None:
    """'bf16', 'BF16', 'torch.bfloat16', torch.bfloat16 ... -> 'bfloat16'; None for anything else."""
    if name is None:
        return None
    text = str(getattr(name, "value", name)).lower().removeprefix("torch.")
    return DTYPE_ALIASES.get(text)


class _DTypeChoice(str, Enum):
    """A `str, Enum` of dtypes (no members of its own) that also takes every alias `canonical_dtype` knows:
    `ExportDType("bf16")` is `ExportDType.bfloat16`."""

    @classmethod
    def _missing_(cls, value: object) -> _DTypeChoice | None:
        name = canonical_dtype(value)
        return cls(name) if name else None


class ExportDType(_DTypeChoice):
    """`export --dtype`: keep the stored dtypes, or cast floating tensors."""

    keep = "keep"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class ServeDType(_DTypeChoice):
    """`serve` / `probe-target --dtype`: SGLang's `--dtype` (auto: the target config's)."""

    auto = "auto"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class ExportFormat(str, Enum):
    """`export --format`: SGLang's layout (which vLLM reads too), or speculators' (vLLM's native drafter format)."""

    sglang = "sglang"
    speculators = "speculators"


class Engine(str, Enum):
    sglang = "sglang"
    hf = "hf"


class Compare(str, Enum):
    hf = "hf"
    none = "none"


class Severity(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"


class Layout(str, Enum):
    """How a drafter checkpoint is laid out on disk (or that it is a Hub id)."""

    nemo_consolidated = "nemo-consolidated"
    nemo_legacy = "nemo-legacy"
    hf = "hf"
    sglang_ready = "sglang-ready"
    hub = "hub"
    # SpecForge >= 0.2 `specforge train` output: `<run>-step<N>/training_state.pt` (the draft weights inside a
    # training-state pickle), no config.json; a run dir, a step dir or its `<run>-latest` / `<run>-best` link
    specforge_training = "specforge-training"
