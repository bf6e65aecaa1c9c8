"""`SGLangTargetRunner`: the `TargetRunner` over SGLang's own model code, one batched extend per call.

It checks and cuts the rows here (rank 0's process), plans the extends against the pools, and has every rank's
`SGLangRankEngine` (engine.py) run them through a `RankGroup` (tp.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eaglectl.errors import EaglectlError
from eaglectl.output import to_jsonable
from eaglectl.runner.contract import resolve_aux_layer_ids, row_lengths
from eaglectl.runner.sglang.api import SGLangApi, load_sglang, sglang_failure
from eaglectl.runner.sglang.batch import ExtendLimits, check_token_ids, plan_extends, token_rows
from eaglectl.runner.sglang.engine import RankSpec, SGLangRankEngine, build_rank_engine
from eaglectl.runner.sglang.settings import (
    REPORTED_SERVER_ARGS,
    START_HINT,
    build_server_args_kwargs,
    sglang_dtype_str,
)

if TYPE_CHECKING:
    import torch

    from eaglectl.runner.sglang.tp import RankGroup


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SGLangTargetRunner:
    """`TargetRunner` over SGLang's own model code: one batched extend per `forward_eagle3`.

    `server_args` are passed through to SGLang's `ServerArgs` (`mem_fraction_static`, `attention_backend`,
    `page_size`, `max_total_tokens`, `max_running_requests`, `context_length`, ...), over eaglectl's defaults
    (`DEFAULT_SERVER_ARGS`). `logits_dtype` (default: the lm_head's dtype, as the HF reference returns them)
    may be "float32"; `max_requests_per_extend` / `max_tokens_per_extend` cap an extend below SGLang's pools.
    """

    def __init__(self, model_path: str, *, dtype: Any = None, tp_size: int = 1, trust_remote_code: bool = False,
                 logits_dtype: Any = None, max_requests_per_extend: int | None = None,
                 max_tokens_per_extend: int | None = None, **server_args: Any) -> None:
        from eaglectl.runner.sglang.tp import RankGroup

        kwargs = build_server_args_kwargs(model_path, dtype=dtype, tp_size=tp_size,
                                          trust_remote_code=trust_remote_code, overrides=server_args)
        self.model_path = str(model_path)
        self.tp_size = int(tp_size)
        self._group: RankGroup | None = None
        sg = load_sglang()
        import torch

        if not torch.cuda.is_available():
            raise EaglectlError("the SGLang engine needs a CUDA GPU and none is visible", hint="use --engine hf")
        logits_name = None if logits_dtype is None else sglang_dtype_str(logits_dtype)
        if logits_name == "auto":
            logits_name = None
        # NVLink multicast (NVLS) and cuMem NCCL buffers stay off unless asked for, as SGLang's launcher does.
        os.environ.setdefault("NCCL_CUMEM_ENABLE", "0")
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        try:
            sa = sg.ServerArgs(**kwargs)
        except TypeError as exc:  # an unknown field
            raise EaglectlError(f"SGLang rejected the ServerArgs overrides: {sglang_failure(exc)}",
                                hint=START_HINT) from exc
        except Exception as exc:  # __post_init__ checks the settings against the GPU and the model config
            raise EaglectlError(f"SGLang refused these settings: {sglang_failure(exc)}",
                                hint=START_HINT) from exc
        nccl_port = getattr(sa, "nccl_port", None)
        if not nccl_port:
            try:
                nccl_port = sg.PortArgs.init_new(sa).nccl_port
            except Exception:  # PortArgs also makes IPC names this runner never uses
                nccl_port = _free_port()
        spec = RankSpec(server_args=sa, nccl_port=int(nccl_port), logits_dtype=logits_name,
                        max_requests_per_extend=max_requests_per_extend, max_tokens_per_extend=max_tokens_per_extend)
        self._attach(RankGroup.start(build_rank_engine, spec, self.tp_size), sg.api, tuple(server_args))

    def _attach(self, group: Any, api: SGLangApi | None, override_keys: Sequence[str] = ()) -> None:
        self._override_keys = tuple(override_keys)
        self._group = group
        self.api = api
        self._engine: SGLangRankEngine = group.local
        self.tp_size = group.size
        self.model = self._engine.model
        self.aux_layer_ids: list[int] | None = None
        self._limits = self._engine.limits()

    @classmethod
    def from_group(cls, group: Any, *, api: SGLangApi | None = None, model_path: str = "",
                   override_keys: Sequence[str] = ()) -> SGLangTargetRunner:
        """A runner over ranks that are already running (a `RankGroup` whose rank 0 is an SGLangRankEngine);
        `override_keys`: the ServerArgs fields the caller set (reported by `engine_settings`)."""
        runner = cls.__new__(cls)
        runner.model_path = model_path
        runner._attach(group, api, override_keys)
        return runner

    @classmethod
    def build(cls, model_path: str, dtype: Any = None, tp_size: int = 1, trust_remote_code: bool = False,
              sglang_kwargs: dict[str, Any] | None = None) -> SGLangTargetRunner:
        """Construct from a model path with pass-through ServerArgs overrides (NeMo AutoModel's spelling)."""
        return cls(model_path, dtype=dtype, tp_size=tp_size, trust_remote_code=trust_remote_code,
                   **(sglang_kwargs or {}))

    @property
    def limits(self) -> ExtendLimits:
        return self._limits

    @property
    def engine_settings(self) -> dict[str, Any]:
        """What this runner runs with (for reports): the `ServerArgs` fields that decide speed and memory and every
        field the caller set, as `ServerArgs` holds them, then the pools SGLang actually allocated (one extend's
        KV slots, request slots and longest row)."""
        sa = self._engine.spec.server_args
        keys = dict.fromkeys((*REPORTED_SERVER_ARGS, *self._override_keys))
        settings = {k: to_jsonable(getattr(sa, k, None)) for k in keys}
        settings.update(kv_slots=self._limits.max_tokens, request_slots=self._limits.max_requests,
                        max_row_tokens=self._limits.max_row_tokens)
        return settings

    @property
    def last_extend_count(self) -> int:
        """Extends the last `forward_eagle3` ran (1 unless the batch exceeded the KV pool or request table)."""
        return self._engine.extends

    def _check_open(self) -> RankGroup:
        """The rank group, while the runner is open."""
        if self._group is None or self._group.closed:
            raise RuntimeError("SGLangTargetRunner is closed")
        return self._group

    def set_aux_layers(self, ids: Sequence[int] | None) -> None:
        """Capture the outputs of these decoder layers (None: SGLang's defaults for this depth)."""
        group = self._check_open()
        layers = resolve_aux_layer_ids(ids, self._engine.num_layers)
        group.call("set_aux_layers", layers)
        self.aux_layer_ids = layers

    def forward_eagle3(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unshifted (logits [B, S, V], aux [B, S, 3H]) on the GPU, from one extend over all rows."""
        group = self._check_open()
        if input_ids.dim() != 2 or tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"input_ids {list(input_ids.shape)} and attention_mask {list(attention_mask.shape)} "
                             f"must both be [batch, seq_len]")
        if self.aux_layer_ids is None:
            self.set_aux_layers(None)
        lengths = row_lengths(attention_mask)
        ids = input_ids.to("cpu")
        check_token_ids(ids, lengths, self._engine.vocab_size)
        rows = token_rows(ids, lengths)
        plan = plan_extends(lengths, self._limits)
        return group.call("forward", rows, int(input_ids.shape[1]), plan)

    def input_embedding_weight(self) -> torch.Tensor:
        """The target's input embedding [V, H] (gathered over the TP ranks)."""
        return self._check_open().call("embedding_weight")

    def pool_state(self) -> tuple[int, int]:
        """(free request slots, free KV slots) of rank 0: unchanged from one call to the next."""
        self._check_open()
        return self._engine.pool_state()

    def close(self) -> None:
        """Release every rank's GPU memory and process groups; safe to call more than once."""
        group, self._group = self._group, None
        self.model = None
        if group is not None:
            group.close()

    def __enter__(self) -> SGLangTargetRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
