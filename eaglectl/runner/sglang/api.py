"""The installed SGLang: what its internals can do (found by capability, never by version string), importing
them once, calling them across signature drift, and turning their exceptions into one-line errors.

The two shapes handled: 0.5.9 / 0.5.12 (the `ModelRunner` constructor does everything, `Req.fill_ids` +
`set_extend_input_len`, `ScheduleBatch.get_model_worker_batch`) and 0.5.15+ (`alloc_memory_pool` /
`init_attention_backends` / `init_cuda_graphs` after the constructor, `Req.set_extend_range`, no
`ModelWorkerBatch`). Anything else fails with a message naming what is missing.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eaglectl.errors import EaglectlError, install_hint, require


class SGLangApiError(EaglectlError):
    """The installed SGLang does not have an internal API shape this runner knows how to drive."""


@dataclass(frozen=True)
class SGLangApi:
    """What the installed SGLang can do, found by looking at its classes (never at its version string)."""

    staged_init: bool  # ModelRunner.alloc_memory_pool / init_attention_backends / init_cuda_graphs (0.5.15+)
    extend_range: bool  # Req.set_extend_range + full_untruncated_fill_ids (0.5.15+), else fill_ids (0.5.9/0.5.12)
    worker_batch: bool  # ScheduleBatch.get_model_worker_batch feeds ForwardBatch.init_new (0.5.9/0.5.12)
    forward_batch_extra: tuple[tuple[str, Any], ...] = ()  # extra ForwardBatch.init_new keywords (0.5.18)
    version: str = "?"

    @property
    def shape(self) -> str:
        if not self.staged_init and not self.extend_range and self.worker_batch:
            return "0.5.9/0.5.12"
        if self.staged_init and self.extend_range and not self.worker_batch:
            return "0.5.15+"
        return "mixed"


_STAGED_INIT = ("alloc_memory_pool", "init_attention_backends", "init_cuda_graphs")
# ForwardBatch.init_new keywords this runner knows how to fill when a version asks for them.
_KNOWN_FORWARD_BATCH_KWARGS = {"return_hidden_states_before_norm": False}


def detect_api(*, model_runner: Any, req: Any, schedule_batch: Any, forward_batch: Any,
               version: str = "?") -> SGLangApi:
    """Resolve each step of an extend from the classes' capabilities; SGLangApiError names what is missing."""
    problems = []
    staged = [name for name in _STAGED_INIT if callable(getattr(model_runner, name, None))]
    if staged and len(staged) != len(_STAGED_INIT):
        missing = [n for n in _STAGED_INIT if n not in staged]
        problems.append(f"ModelRunner has {', '.join(staged)} but not {', '.join(missing)}")
    if not callable(getattr(model_runner, "forward", None)):
        problems.append("ModelRunner has no forward")
    extend_range = callable(getattr(req, "set_extend_range", None))
    if not extend_range and not callable(getattr(req, "set_extend_input_len", None)):
        problems.append("Req has neither set_extend_range (0.5.15+) nor set_extend_input_len (0.5.9/0.5.12)")
    for name in ("init_new", "prepare_for_extend"):
        if not callable(getattr(schedule_batch, name, None)):
            problems.append(f"ScheduleBatch has no {name}")
    extra: list[tuple[str, Any]] = []
    init_new = getattr(forward_batch, "init_new", None)
    if not callable(init_new):
        problems.append("ForwardBatch has no init_new")
    else:
        try:
            params = list(inspect.signature(init_new).parameters.values())
        except (TypeError, ValueError):
            params = []
        for p in params[2:]:  # (batch, model_runner, ...) once bound to the class
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name in _KNOWN_FORWARD_BATCH_KWARGS:
                extra.append((p.name, _KNOWN_FORWARD_BATCH_KWARGS[p.name]))
            elif p.default is inspect.Parameter.empty:
                problems.append(f"ForwardBatch.init_new needs an argument this runner does not know: {p.name}")
    if problems:
        raise SGLangApiError(
            f"unsupported SGLang internals (sglang {version}): " + "; ".join(problems),
            hint="eaglectl drives the SGLang 0.5.9/0.5.12 and 0.5.15+ internals; install one of those "
                 f'({install_hint("sglang")}) or use --engine hf')
    return SGLangApi(staged_init=bool(staged), extend_range=extend_range,
                     worker_batch=callable(getattr(schedule_batch, "get_model_worker_batch", None)),
                     forward_batch_extra=tuple(extra), version=version)


@dataclass(frozen=True)
class SGLangClasses:
    """The SGLang classes one extend needs, imported once."""

    api: SGLangApi
    ServerArgs: Any
    PortArgs: Any
    ModelConfig: Any
    ModelRunner: Any
    Req: Any
    ScheduleBatch: Any
    ForwardBatch: Any
    CaptureHiddenMode: Any
    SamplingParams: Any
    SpeculativeAlgorithm: Any
    LogitsProcessor: Any
    destroy_distributed: Any = None  # tests' fakes replace SGLang's process-group teardown


def load_sglang() -> SGLangClasses:
    """Import the SGLang internals and check their shape (MissingDependencyError without the extra)."""
    require("sglang", extra="sglang", purpose="for --engine sglang")
    import sglang
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.layers.logits_processor import LogitsProcessor
    from sglang.srt.managers.schedule_batch import Req, ScheduleBatch
    from sglang.srt.model_executor.forward_batch_info import CaptureHiddenMode, ForwardBatch
    from sglang.srt.model_executor.model_runner import ModelRunner
    from sglang.srt.sampling.sampling_params import SamplingParams
    from sglang.srt.server_args import PortArgs, ServerArgs
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    version = str(getattr(sglang, "__version__", "?"))
    api = detect_api(model_runner=ModelRunner, req=Req, schedule_batch=ScheduleBatch, forward_batch=ForwardBatch,
                     version=version)
    return SGLangClasses(api=api, ServerArgs=ServerArgs, PortArgs=PortArgs, ModelConfig=ModelConfig,
                         ModelRunner=ModelRunner, Req=Req, ScheduleBatch=ScheduleBatch, ForwardBatch=ForwardBatch,
                         CaptureHiddenMode=CaptureHiddenMode, SamplingParams=SamplingParams,
                         SpeculativeAlgorithm=SpeculativeAlgorithm, LogitsProcessor=LogitsProcessor)


_PARAMS: dict[Any, frozenset[str] | None] = {}


def accepted_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords `fn` takes (all of them if it takes **kwargs): signatures drift between releases.

    Signatures are read once per function: `inspect.signature` on SGLang's constructors costs ~0.1 ms a call,
    paid per request on the path the GPU waits on."""
    if fn not in _PARAMS:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = None
        _PARAMS[fn] = (None if params is None or any(p.kind is p.VAR_KEYWORD for p in params.values())
                       else frozenset(params))
    names = _PARAMS[fn]
    return kwargs if names is None else {k: v for k, v in kwargs.items() if k in names}


def sglang_failure(exc: BaseException, limit: int = 300) -> str:
    """`Type: first line` of an exception from SGLang's own code (torch compile errors run to pages)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


@contextlib.contextmanager
def sglang_errors(what: str, hint: str, keep: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """An exception from SGLang's code inside the block becomes one `EaglectlError` ("what: Type: first line");
    eaglectl's own errors and `keep` pass through with their tracebacks."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, (EaglectlError, *keep)):
            raise
        raise EaglectlError(f"{what}: {sglang_failure(exc)}", hint=hint) from exc
