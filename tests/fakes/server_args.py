"""SGLang's `ServerArgs` as far as `launch_server` flag parsing goes (no SGLang on the CPU machines): a few flags
declared the way 0.5.15's `ServerArgs.add_cli_args` declares them."""

from __future__ import annotations

import argparse
import dataclasses
import sys


class _DeprecatedStoreTrue(argparse.Action):
    """SGLang 0.5.14+'s DeprecatedStoreTrueAction: sets the flag and prints a warning naming the new spelling."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.setdefault("default", False)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"'{option_string}' is deprecated and will be removed in a future release.", file=sys.stderr)
        setattr(namespace, self.dest, True)


class _AssertingAction(argparse.Action):
    """Like SGLang's own option actions, which validate with `assert` while parsing."""

    def __call__(self, parser, namespace, values, option_string=None):
        assert values.startswith("/"), f"{option_string} takes an absolute path"
        setattr(namespace, self.dest, values)


@dataclasses.dataclass
class FakeServerArgs:
    """A few of SGLang's `launch_server` flags, declared the way 0.5.15's `ServerArgs.add_cli_args` declares them
    (a dataclass whose fields are the flags' destinations, plus `--config`, which is not a field)."""

    model_path: str = ""
    tp_size: int = 1
    dtype: str = "auto"
    page_size: int = 1
    mem_fraction_static: float | None = None
    attention_backend: str | None = None
    kv_cache_dtype: str = "auto"
    disable_radix_cache: bool = False
    cuda_graph_bs_decode: list[int] | None = None
    enable_metrics: bool = False
    tokenizer_path: str | None = None
    log_level: str = "info"
    # What `serve` writes itself (its argv is read whole).
    speculative_algorithm: str | None = None
    speculative_draft_model_path: str | None = None
    speculative_num_steps: int | None = None
    speculative_eagle_topk: int | None = None
    speculative_num_draft_tokens: int | None = None
    speculative_token_map: str | None = None
    host: str = "127.0.0.1"
    port: int = 30000
    context_length: int | None = None
    disable_cuda_graph: bool = False
    disable_decode_cuda_graph: bool = False
    disable_prefill_cuda_graph: bool = False
    skip_tokenizer_init: bool = False
    trust_remote_code: bool = False

    @staticmethod
    def add_cli_args(parser) -> None:
        parser.add_argument("--model-path", "--model", type=str, required=True)
        parser.add_argument("--tp-size", type=int, default=1)
        parser.add_argument("--dtype", type=str, default="auto")
        parser.add_argument("--page-size", type=int, default=1)
        parser.add_argument("--mem-fraction-static", type=float, default=None)
        parser.add_argument("--attention-backend", type=str, choices=["triton", "fa3", "torch_native"], default=None)
        parser.add_argument("--kv-cache-dtype", type=str, default="auto")
        parser.add_argument("--disable-radix-cache", action="store_true")
        parser.add_argument("--cuda-graph-bs-decode", "--cuda-graph-bs", dest="cuda_graph_bs_decode", type=int,
                            nargs="+", default=None)
        parser.add_argument("--enable-metrics", action=argparse.BooleanOptionalAction, default=False)
        parser.add_argument("--tokenizer-path", action=_AssertingAction, default=None)
        parser.add_argument("--config", type=str, default=None)
        parser.add_argument("--speculative-algorithm", type=str, choices=["EAGLE", "EAGLE3", "NEXTN"])
        parser.add_argument("--speculative-draft-model-path", "--speculative-draft-model", type=str)
        parser.add_argument("--speculative-num-steps", type=int)
        parser.add_argument("--speculative-eagle-topk", type=int)
        parser.add_argument("--speculative-num-draft-tokens", type=int)
        parser.add_argument("--speculative-token-map", type=str)
        parser.add_argument("--host", type=str, default="127.0.0.1")
        parser.add_argument("--port", type=int, default=30000)
        parser.add_argument("--context-length", type=int, default=None)
        parser.add_argument("--disable-cuda-graph", action=_DeprecatedStoreTrue)
        parser.add_argument("--disable-decode-cuda-graph", action="store_true")
        parser.add_argument("--disable-prefill-cuda-graph", action="store_true")
        parser.add_argument("--skip-tokenizer-init", action="store_true")
        parser.add_argument("--trust-remote-code", action="store_true")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--log-level", type=str, default="info")
        group.add_argument("--quiet-logs", dest="log_level", action="store_const", const="error")
