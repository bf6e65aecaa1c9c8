"""ServerArgs for a supervision runner: eaglectl's defaults, the caller's overrides, `launch_server` flags read by
SGLang's own parser, the dtype spellings SGLang compares against, and the fields reported back."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from eaglectl.errors import EaglectlError, UsageError
from eaglectl.runner.contract import DTYPES, canonical_dtype
from eaglectl.runner.sglang.api import load_sglang
from eaglectl.serving.flags import flag_name, parse_flags

SUPPORTED_DTYPES = ("auto", *DTYPES)  # the ServerArgs.dtype spellings eaglectl hands to SGLang

# Defaults for a supervision runner rather than a server; every one can be overridden.
DEFAULT_SERVER_ARGS: dict[str, Any] = {
    # Works on every CUDA GPU and in the offline bundle (no FlashAttention-3 / FlashInfer there).
    "attention_backend": "triton",
    "sampling_backend": "pytorch",  # nothing is sampled; avoids needing FlashInfer
    "disable_cuda_graph": True,  # graphs only help decode; extends here have varying shapes
    "disable_radix_cache": True,  # every call is independent; no prefix reuse
    "skip_tokenizer_init": True,  # token ids in, tensors out
    "page_size": 1,
    # The [B, S, V] logits live outside SGLang's static pool (weights + KV): leave 40 % of the GPU for them.
    "mem_fraction_static": 0.6,
    # KV slots: SGLang sizes the pool to fill mem_fraction_static, which for a small target means tens of GB of
    # KV no batch uses (an extend of 128k tokens already has a 128k x V logits tensor). This caps the pool;
    # larger batches are split into several extends.
    "max_total_tokens": 131072,
    # Rows per extend; more rows than this are split into several extends (a big request table wastes memory).
    "max_running_requests": 256,
}
START_HINT = ("check the attention backend and other ServerArgs against this SGLang install (the triton backend "
              "runs everywhere); on out-of-memory lower mem_fraction_static; EAGLECTL_DEBUG=1 shows SGLang's traceback")
FORWARD_HINT = ("a backend other than triton may start but not run on this install; on out-of-memory pass fewer "
                "rows or max_tokens_per_extend; EAGLECTL_DEBUG=1 shows SGLang's traceback")
_FLAGS_HINT = "they are sglang.launch_server's flags, spelled out in full, e.g. --page-size 16"
# What `engine_settings` always reports: the fields that decide speed and memory.
REPORTED_SERVER_ARGS = ("attention_backend", "page_size", "mem_fraction_static", "max_total_tokens",
                        "max_running_requests", "disable_cuda_graph")
# ServerArgs fields a runner takes as its own arguments: flags must not set them behind the runner's back.
RUNNER_ARGUMENTS = {"model_path": "the model path", "tp_size": "tp_size", "dtype": "dtype",
                    "trust_remote_code": "trust_remote_code"}


def sglang_dtype_str(dtype: Any) -> str:
    """The `ServerArgs.dtype` string for a torch dtype or a dtype name; None means "auto".

    SGLang compares `ServerArgs.dtype` with string literals, so a raw `torch.dtype` would silently miss them.
    """
    if dtype is None or str(dtype).lower() == "auto":
        return "auto"
    name = canonical_dtype(dtype)
    if name is None:
        raise EaglectlError(f"dtype {dtype!r} is not supported by the SGLang engine; "
                            f"use one of {', '.join(SUPPORTED_DTYPES)}")
    return name


def build_server_args_kwargs(model_path: str, *, dtype: Any = None, tp_size: int = 1, trust_remote_code: bool = False,
                             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """ServerArgs keywords: eaglectl's defaults for a supervision runner, then the caller's overrides."""
    if tp_size < 1:
        raise EaglectlError(f"tp_size must be >= 1, got {tp_size}")
    kwargs = dict(DEFAULT_SERVER_ARGS)
    kwargs.update(model_path=str(model_path), dtype=sglang_dtype_str(dtype), tp_size=int(tp_size),
                  trust_remote_code=bool(trust_remote_code))
    for key, value in (overrides or {}).items():
        if key in ("model_path", "tp_size", "trust_remote_code"):
            raise EaglectlError(f"pass {key} as an argument of the runner, not as a ServerArgs override")
        if key == "dtype":
            value = sglang_dtype_str(value)
        kwargs[key] = value
    if kwargs.get("pp_size", 1) != 1:
        raise EaglectlError("the SGLang target runner does not support pipeline parallelism (pp_size must be 1)")
    if kwargs.get("enable_dp_attention"):
        raise EaglectlError("the SGLang target runner does not support DP attention")
    return kwargs


def server_args_from_flags(flags: Sequence[str], server_args_cls: Any = None,
                           own_options: dict[str, str] | None = None) -> dict[str, Any]:
    """`sglang.launch_server` flags (`--page-size 16 --kv-cache-dtype fp8_e5m2`) as ServerArgs overrides: typed,
    checked and named by SGLang's own parser, as `launch_server` reads them (abbreviations aside). Only the flags
    given are returned. `own_options` names the caller's option for a field it sets itself (refused), and flags
    that are not ServerArgs fields (`--config`, which `launch_server` expands itself) are refused too."""
    cls = server_args_cls if server_args_cls is not None else load_sglang().ServerArgs
    given = parse_flags(flags, cls, allow_abbrev=False, hint=_FLAGS_HINT)
    owned = {**RUNNER_ARGUMENTS, **(own_options or {})}
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None
    for key in given:
        flag = flag_name(key)
        if key in owned:
            raise UsageError(f"{flag} cannot be passed to SGLang here: set it with {owned[key]}")
        if fields is not None and key not in fields:
            raise UsageError(f"{flag} is not a ServerArgs setting ({key}); pass the settings themselves",
                             hint=_FLAGS_HINT)
    return given
