"""What `serve` (and `bench`, through it) is asked to do, with every default defined once: the CLI options take
their defaults from this dataclass. Import-light (the CLI reads it on every `--help` and TAB)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from eaglectl.enums import Algorithm, ServeDType


@dataclass
class ServeOptions:
    target: str
    draft: str
    revision: str | None = None  # of a Hub drafter
    draft_config: str | None = None  # the config of a drafter that keeps none (SpecForge training checkpoints)
    algorithm: Algorithm | None = None
    aux_layer_ids: tuple[int, ...] | None = None  # pinned on export for an EAGLE-3 head that records none
    num_steps: int = 3
    topk: int = 1
    num_draft_tokens: int = 4
    host: str = "127.0.0.1"
    port: int = 30000
    tp_size: int = 1
    dtype: ServeDType = ServeDType.bfloat16
    attention_backend: str | None = None
    mem_fraction_static: float | None = None
    context_length: int | None = None
    disable_cuda_graph: bool = False
    skip_tokenizer_init: bool = False
    trust_remote_code: bool = False
    allow_longer_context: bool = False
    python: str = sys.executable
    print_only: bool = False
    wait: bool = False
    smoke: bool = False
    smoke_only: bool = False
    smoke_prompts: Path | None = None
    smoke_max_new_tokens: int = 32
    min_accept_length: float | None = None
    timeout: float = 900.0
    extra_args: list[str] = field(default_factory=list)
