"""Choices shared by the CLI and the core: one `str, Enum` each, never a second list in the CLI."""

from __future__ import annotations

from enum import Enum


class Algorithm(str, Enum):
    """Speculative algorithm names as SGLang spells them."""

    EAGLE3 = "EAGLE3"
    EAGLE = "EAGLE"


class ExportDType(str, Enum):
    keep = "keep"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class ServeDType(str, Enum):
    auto = "auto"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


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
