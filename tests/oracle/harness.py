#!/usr/bin/env python3
"""Run SGLang's own EAGLE / EAGLE-3 draft model class and its own `load_weights` on draft directories.

The differential oracle of eaglectl's loader replay (`eaglectl.engines.sglang.loader.simulate_load`): the replay
is written from SGLang's source, so only SGLang's code can tell whether it is right. This script is run in a
subprocess by an interpreter that can import SGLang, and prints one JSON document:

    {"versions": {...}, "mode": ..., "stubs": [...], "setup": {...}, "results": [one object per draft dir]}

It imports nothing from eaglectl (the interpreter that runs it may not have eaglectl installed).

Two ways to reach SGLang:
  * `--sglang-src DIR`: DIR is an unpacked SGLang wheel (the folder holding `sglang/`, and the transformers the
    release pins beside it; see scripts/oracle/setup.sh). Only `sglang.srt.*` is imported: `sglang/__init__.py`
    pulls the frontend language and is not executed. What needs a GPU or an absent heavy dependency is stubbed,
    and every stub is listed in the output under "stubs". This is how it runs on a CPU machine.
  * `--installed`: the SGLang installed in this interpreter (e.g. the GPU bundle), imported normally, no stubs.

What runs for real, per draft directory (SGLang's code, in the order a server start runs it):
  * server args: the `ServerArgs` dataclass defaults (its `__post_init__` probes GPUs and is skipped; 0.5.19+
    run `resolve_once()`), registered with SGLang's own setter;
  * distributed: SGLang's `init_distributed_environment(backend="gloo", world_size=1)` and
    `initialize_model_parallel` (once per process), plus dp-attention initialisation where the release has it;
  * config: `ModelConfig.from_server_args(server_args, model_path=DRAFT, is_draft_model=True)`, i.e. the same
    `get_config` -> `AutoConfig.from_pretrained` path as a server start;
  * model: the class named by `architectures[0]` (`LlamaForCausalLMEagle3` / `LlamaForCausalLMEagle`) built
    under SGLang's `set_default_torch_dtype`, on the chosen device;
  * weights: `DefaultModelLoader(LoadConfig())._prepare_weights` and `_get_all_weights` (the same file
    selection, index filtering and safetensors iterator as a server start), fed to the model's real
    `load_weights`;
  * what the speculative worker does next: the model's real `set_embed_and_head` / `set_embed`, called the way
    the EAGLE worker calls them, with sentinel "target" tensors.

Instrumentation only (it changes no decision SGLang makes): every floating parameter is pre-filled with NaN
(so a parameter nothing loaded is visible), and each parameter's `weight_loader` is wrapped to record which stored
name reached it before the real loader runs. A load error is recorded with the stored name being loaded and the
load resumes with the next tensor, so that one run lists every problem (a server stops at the first).

Several draft directories are handled in one process: importing SGLang costs 10-20 s, building and loading a
tiny head well under a second. Each head gets its own server args, ModelConfig and model; the process-wide
parallel state (world size 1) is the same for every head.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import math
import os
import socket
import sys
import tempfile
import time
import traceback
import types
from typing import Any

# Absent from the CPU venv and imported only at module level by SGLang files on the import chain; none of them is
# used by config building, model construction or weight loading. Kept minimal: transformers probes optional
# packages with find_spec, and a stubbed package it believes installed (torchao, torchvision before transformers is
# imported, ...) breaks it. compressed_tensors, gguf, openai and dill cannot be stubbed (their module-level code
# runs): install them, and so xgrammar and apache-tvm-ffi for 0.5.17+ (a pydantic model types a field with an
# xgrammar class).
DEFAULT_STUB_ROOTS = ("zmq", "starlette", "torchvision", "IPython", "partial_json_parser", "msgspec", "sentencepiece")
ARCH_MODULES = {"LlamaForCausalLMEagle3": "llama_eagle3", "LlamaForCausalLMEagle": "llama_eagle"}
EAGLE3_ARCHS = {"LlamaForCausalLMEagle3"}
SENTINEL = 7.0  # the value of the stand-in "target" embedding / head handed to the draft after loading


# --- stubs (CPU only) -----------------------------------------------------------------------------------------
class _StubBase:
    """A class a stubbed module hands out: accepts any arguments and any subclassing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__()


class StubModule(types.ModuleType):
    """A module whose every attribute exists: classes for capitalised names, sub-modules otherwise; calling it
    (as a decorator factory or a decorator) returns the function unchanged. Modelled on SGLang's own
    `sglang/_triton_stub.py`."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__: list[str] = []
        self.__file__ = "<oracle-stub>"
        self.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        full = f"{self.__name__}.{attr}"
        if full in sys.modules:
            return sys.modules[full]
        value: Any
        if attr[:1].isupper():
            value = type(attr, (_StubBase,), {"__module__": self.__name__})
        else:
            value = StubModule(full)
            sys.modules[full] = value
        setattr(self, attr, value)
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f

    def __bool__(self) -> bool:
        return False

    def __iter__(self) -> Any:
        return iter([])


class MissingOnlyFinder:
    """Appended to sys.meta_path, so it only sees imports no real finder resolved: an installed package is always
    used for real. Stubs only the listed top-level names, and remembers which it stubbed."""

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = set(roots)
        self.used: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)  # type: ignore[arg-type]
        return None

    def create_module(self, spec: Any) -> Any:
        self.used.add(spec.name.split(".")[0])
        return StubModule(spec.name)

    def exec_module(self, module: Any) -> None:
        pass


def load_file_as(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Session:
    """One harness process: how SGLang is reached, what was stubbed, the process-wide set-up done once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stubs: list[str] = []
        self.finder: MissingOnlyFinder | None = None
        self.device = args.device
        self.setup: dict[str, Any] = {}
        self.dist_done = False
        self.dp_done = False

    # imports ----------------------------------------------------------------------------------------------
    def import_sglang(self) -> None:
        if self.args.installed:
            import sglang.srt.models.llama_eagle3
            return
        src = os.path.abspath(self.args.sglang_src)
        # The release directory holds the transformers its release pins: first on the path, ahead of the venv's.
        sys.path.insert(0, src)
        package = types.ModuleType("sglang")
        package.__path__ = [os.path.join(src, "sglang")]
        sys.modules["sglang"] = package
        self.stubs.append("sglang/__init__.py not executed (frontend language); `sglang` is a bare package over "
                          "the release directory")
        import torch

        # torch._inductor must see "no triton" before the triton stub exists (it type-checks triton objects)
        import torch._inductor.compile_fx  # noqa: F401

        if importlib.util.find_spec("triton") is None:
            stub = self.triton_stub(src)
            load_file_as("sglang._triton_stub", stub).install()
            self.stubs.append(f"triton: SGLang's own CPU stand-in ({stub})")
        import transformers  # noqa: F401  (its availability flags are computed before any stub exists)

        self.finder = MissingOnlyFinder(DEFAULT_STUB_ROOTS + tuple(self.args.stub))
        sys.meta_path.append(self.finder)
        # configs/__init__ registers VLM image processors; transformers 5 refuses AutoImageProcessor without
        # torchvision. Load configs/utils.py first and make that registration a no-op (no Llama draft uses it).
        utils_path = os.path.join(src, "sglang", "srt", "configs", "utils.py")
        if os.path.exists(utils_path):
            config_utils = load_file_as("sglang.srt.configs.utils", utils_path)
            if hasattr(config_utils, "register_image_processor"):
                config_utils.register_image_processor = lambda *a, **k: None
                self.stubs.append("sglang.srt.configs.utils.register_image_processor -> no-op (needs torchvision)")
        import sglang.srt.models.llama_eagle3  # noqa: F401

    def triton_stub(self, src: str) -> str:
        """SGLang ships a CPU stand-in for triton from 0.5.15 on; older releases borrow a newer one's."""
        for path in (os.path.join(src, "sglang", "_triton_stub.py"), self.args.triton_stub,
                     os.environ.get("EAGLECTL_ORACLE_TRITON_STUB")):
            if path and os.path.exists(path):
                return path
        raise RuntimeError("triton is not installed and no sglang/_triton_stub.py was found: pass --triton-stub "
                           "(scripts/oracle/setup.sh keeps one) or set EAGLECTL_ORACLE_TRITON_STUB")

    def versions(self) -> dict[str, Any]:
        import torch
        import transformers

        found: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                                 "transformers": transformers.__version__, "transformers_file": transformers.__file__}
        try:
            if self.args.installed:
                from importlib.metadata import version

                found["sglang"] = version("sglang")
            else:
                module = load_file_as("sglang.version", os.path.join(self.args.sglang_src, "sglang", "version.py"))
                found["sglang"] = getattr(module, "__version__", None)
        except Exception as e:
            found["sglang"] = f"unknown ({type(e).__name__})"
        return found

    # process-wide SGLang state ----------------------------------------------------------------------------
    def server_args(self, draft_dir: str) -> Any:
        """The draft's ServerArgs as a server start would see them for `--speculative-algorithm EAGLE3`."""
        import dataclasses

        from sglang.srt.server_args import ServerArgs

        if hasattr(ServerArgs, "resolve_once"):  # 0.5.19+: __post_init__ is a no-op, resolution is separate
            sa = ServerArgs(model_path=draft_dir)
            self._fill(sa, draft_dir)
            try:
                sa.resolve_once()
                self.note("server_args", "ServerArgs built and resolve_once() ran")
            except Exception as e:
                self.note("server_args", f"ServerArgs.resolve_once() failed here ({type(e).__name__}: "
                                         f"{str(e)[:120]}); raw dataclass values used")
            return sa
        sa = object.__new__(ServerArgs)
        for f in dataclasses.fields(ServerArgs):
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = None
            object.__setattr__(sa, f.name, value)
        self._fill(sa, draft_dir)
        # what __post_init__ would have resolved for the one field the draft's ModelConfig reads from it
        if getattr(sa, "speculative_draft_model_quantization", None) is None:
            sa.speculative_draft_model_quantization = sa.quantization
        self.note("server_args", "ServerArgs.__post_init__ skipped (it probes GPUs); dataclass defaults")
        return sa

    def _fill(self, sa: Any, draft_dir: str) -> None:
        sa.model_path = draft_dir
        sa.speculative_draft_model_path = draft_dir
        sa.speculative_algorithm = "EAGLE3"
        sa.device = self.device
        sa.trust_remote_code = False
        for key, value in self.args.overrides.items():
            setattr(sa, key, value)

    def note(self, key: str, text: str) -> None:
        self.setup.setdefault(key, text)

    def register(self, sa: Any) -> str | None:
        """Publish the server args the way this release's scheduler does (the layers read them globally)."""
        try:  # 0.5.2x: published with this process's placement (world rank 0, no GPU id)
            import sglang.srt.runtime_context as rc

            if hasattr(rc, "publish") and hasattr(rc, "SpawnRanks"):
                rc.publish(sa, role="scheduler", ranks=rc.SpawnRanks(world_rank=0, dp_rank=None, gpu_id=None))
                return "runtime_context.publish(role=scheduler, ranks=SpawnRanks(world_rank=0))"
        except ImportError:
            pass
        import sglang.srt.server_args as server_args_module

        for name in ("set_global_server_args_for_scheduler", "set_global_server_args"):
            if hasattr(server_args_module, name):
                getattr(server_args_module, name)(sa)
                return name
        return None

    def init_distributed(self) -> None:
        if self.dist_done:
            return
        from sglang.srt.distributed import parallel_state as ps

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        ps.init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                        distributed_init_method=f"tcp://127.0.0.1:{port}")
        if "tensor_model_parallel_size" in inspect.signature(ps.initialize_model_parallel).parameters:
            ps.initialize_model_parallel(tensor_model_parallel_size=1)
        else:  # 0.5.2x: the widths come from the published runtime context
            ps.initialize_model_parallel()
        self.setup["distributed"] = "init_distributed_environment(gloo, world 1) + initialize_model_parallel(1)"
        self.dist_done = True

    def init_dp_attention(self, sa: Any, model_config: Any) -> None:
        """Once per process: it sizes a gather buffer from the first head's hidden size, which loading never
        touches."""
        if self.dp_done:
            return
        self.dp_done = True
        try:
            from sglang.srt.layers import dp_attention
        except Exception as e:
            self.setup["dp_attention"] = f"no dp_attention module: {type(e).__name__}"
            return
        fn = getattr(dp_attention, "initialize_dp_attention", None)
        if fn is None:
            self.setup["dp_attention"] = "no initialize_dp_attention"
            return
        params = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in (("server_args", sa), ("model_config", model_config)) if k in params}
        try:
            fn(**kwargs)
            self.setup["dp_attention"] = "initialize_dp_attention(" + ", ".join(kwargs) + ")"
        except Exception as e:
            self.setup["dp_attention"] = f"failed: {type(e).__name__}: {e}"

    def before_construct(self) -> None:
        """CPU only. RotaryEmbedding.__init__ (0.5.15 layers/rotary_embedding/base.py l.100-118) binds a fallback
        forward kernel from vllm._custom_ops when the platform is none of cuda/cpu/xpu/npu/musa/mps. The CPU
        engine (SGLANG_USE_CPU_ENGINE) is deliberately left off: it switches the weight loaders to padding /
        narrowing variants that would hide shape errors a CUDA server raises. So the loaders run their CUDA
        branch, and only that kernel reference is stubbed, after every import is done."""
        if self.args.installed or self.device != "cpu":
            return
        if importlib.util.find_spec("vllm") is None and "vllm" not in sys.modules:
            vllm = StubModule("vllm")
            sys.modules["vllm"] = vllm
            sys.modules["vllm._custom_ops"] = vllm._custom_ops
            self.stubs.append("vllm._custom_ops (rotary fallback forward kernel reference; inserted after imports)")


# --- one head -------------------------------------------------------------------------------------------------
def run_head(session: Session, draft_dir: str) -> dict[str, Any]:
    """Build the draft of `draft_dir` with SGLang's code and load its weights; the record of what happened.
    "stage" is where it stopped ("done" when loading finished; a load error does not stop it)."""
    import torch

    t0 = time.time()
    draft = os.path.abspath(draft_dir)
    out: dict[str, Any] = {"draft_dir": draft, "stage": "config.json"}
    try:
        with open(os.path.join(draft, "config.json")) as f:
            arch = (json.load(f).get("architectures") or ["LlamaForCausalLMEagle3"])[0]
        out["arch"] = arch
        if arch not in ARCH_MODULES:
            raise ValueError(f"architecture {arch!r} is not one the harness builds ({', '.join(ARCH_MODULES)})")
        cls = getattr(importlib.import_module(f"sglang.srt.models.{ARCH_MODULES[arch]}"), arch)

        out["stage"] = "server_args"
        sa = session.server_args(draft)
        out["server_args_setter"] = session.register(sa)
        out["stage"] = "distributed"
        session.init_distributed()

        out["stage"] = "model_config"
        from sglang.srt.configs.model_config import ModelConfig

        model_config = ModelConfig.from_server_args(sa, model_path=draft, is_draft_model=True)
        hf = model_config.hf_config
        out["config_class"] = type(hf).__name__
        session.init_dp_attention(sa, model_config)

        out["stage"] = "construct"
        session.before_construct()
        from sglang.srt.model_loader.utils import set_default_torch_dtype

        with set_default_torch_dtype(getattr(torch, session.args.dtype)), torch.device(session.device):
            model = cls(config=hf, quant_config=None)

        out["stage"] = "load"
        params = dict(model.named_parameters())
        hits, load_errors, stored_shapes = instrument_and_load(model, params, model_config, draft, out)
        out.update(report(model, hf, params, hits, load_errors, stored_shapes))
        out["after_worker_init_lm_head"] = worker_sharing(model, hf, arch, session.device)
        out["stage"] = "done"
    except Exception as e:  # a start-up failure is a result, not a harness failure
        out["error"] = f"{type(e).__name__}: {e}"
        out["traceback"] = traceback.format_exc().splitlines()[-8:]
    out["seconds"] = round(time.time() - t0, 3)
    return out


def instrument_and_load(model: Any, params: dict[str, Any], model_config: Any, draft: str,
                        out: dict[str, Any]) -> tuple[dict[str, list[list[str]]], list[str], dict[str, list[int]]]:
    """NaN-fill, wrap every weight_loader, and feed SGLang's weight iterator to the real load_weights."""
    import torch
    from sglang.srt.configs.load_config import LoadConfig
    from sglang.srt.model_loader import weight_utils
    from sglang.srt.model_loader.loader import DefaultModelLoader

    # what construction left in each parameter, before the NaN fill: the replay says some start at zero
    out["initially_zero_params"] = sorted(n for n, p in params.items()
                                          if p.dtype.is_floating_point and p.numel() and not bool(p.data.any()))
    with torch.no_grad():
        for p in params.values():
            if p.dtype.is_floating_point:
                p.data.fill_(math.nan)
    current: dict[str, str | None] = {"name": None}
    hits: dict[str, list[list[str]]] = {}

    def wrap(pname: str, original: Any) -> Any:
        def loader(param: Any, loaded_weight: Any, *rest: Any, **kwargs: Any) -> Any:
            hits.setdefault(str(current["name"]), []).append([pname, *(str(r) for r in rest)])
            real = original if original is not None else weight_utils.default_weight_loader
            return real(param, loaded_weight, *rest, **kwargs)
        return loader

    for pname, p in params.items():
        wrapped = wrap(pname, getattr(p, "weight_loader", None))
        try:
            p.weight_loader = wrapped
        except AttributeError:  # a parameter class exposing weight_loader as a read-only property
            p._weight_loader = wrapped

    loader = DefaultModelLoader(LoadConfig())
    _, files, _ = loader._prepare_weights(draft, None, fall_back_to_pt=True)
    out["weight_files"] = sorted(os.path.relpath(f, draft) for f in files)
    stored_shapes: dict[str, list[int]] = {}

    def tagged() -> Any:
        for name, tensor in loader._get_all_weights(model_config, model):
            current["name"] = name
            stored_shapes[name] = list(tensor.shape)
            yield name, tensor

    load_errors: list[str] = []
    weights = tagged()
    while True:  # one real load_weights call; after an error, the rest of the iterator in a new call
        try:
            model.load_weights(weights)
            break
        except StopIteration:
            break
        except Exception as e:
            load_errors.append(f"{current['name']}: {type(e).__name__}: {e}")
    return hits, load_errors, stored_shapes


def report(model: Any, hf: Any, params: dict[str, Any], hits: dict[str, list[list[str]]], load_errors: list[str],
           stored_shapes: dict[str, list[int]]) -> dict[str, Any]:
    import torch

    loaded, nan, partial = [], [], {}
    for pname, p in params.items():
        if not p.dtype.is_floating_point:
            continue
        n = int(torch.isnan(p.data).sum())
        if n == 0:
            loaded.append(pname)
        elif n == p.numel():
            nan.append(pname)
        else:
            partial[pname] = f"{n}/{p.numel()} NaN"
    inner = getattr(model, "model", model)
    layers = list(getattr(inner, "layers", None) or [getattr(inner, "midlayer", None)])
    attn = layers[0].self_attn if layers and layers[0] is not None else None
    rot = getattr(attn, "rotary_emb", None)
    fc = getattr(inner, "fc", None)
    fc_norm = getattr(inner, "fc_norm", None)
    lm_head = getattr(model, "lm_head", None)
    hot = getattr(model, "hot_token_id", None)
    return {
        "loaded_params": sorted(loaded),
        "nan_params": sorted(nan),
        "partially_loaded_params": partial,
        "stored_shapes": stored_shapes,
        "stored_names_not_reaching_any_param": sorted(n for n in stored_shapes if n not in hits),
        "stored_to_params": hits,
        "load_errors": load_errors,
        "param_shapes": {k: list(v.shape) for k, v in params.items()},
        "values": {
            "rope_base": getattr(rot, "base", None),
            "rope_class": type(rot).__name__ if rot is not None else None,
            "rope_scaling_factor": getattr(rot, "scaling_factor", None),
            "head_dim": getattr(attn, "head_dim", None),
            "vocab_size": getattr(hf, "vocab_size", None),
            "draft_vocab_size": getattr(hf, "draft_vocab_size", "MISSING"),
            "lm_head_shape": list(lm_head.weight.shape) if lm_head is not None else None,
            "tie_word_embeddings": getattr(hf, "tie_word_embeddings", None),
            "load_lm_head_from_target": getattr(model, "load_lm_head_from_target", None),
            "hot_token_id_len": None if hot is None else int(hot.shape[0]),
            "fc_shape": list(fc.weight.shape) if fc is not None else None,
            "num_aux_hidden_states": getattr(inner, "num_aux_hidden_states", None),
            "fc_norm": None if fc_norm is None else len(fc_norm),
            "input_norm": getattr(inner, "input_norm", None) is not None,
            "norm_output": getattr(inner, "norm_output", None),
            "num_layers_built": len(layers) if layers and layers[0] is not None else 0,
            "target_hidden_size_attr": getattr(hf, "target_hidden_size", "MISSING"),
        },
    }


def worker_sharing(model: Any, hf: Any, arch: str, device: str) -> dict[str, Any]:
    """What the EAGLE worker does right after the draft's load_weights (speculative/eagle_worker_v2.py
    init_lm_head, and the v1 worker of 0.5.9-0.5.12): EAGLE-3 calls set_embed_and_head(target embed, target head)
    when the draft set load_lm_head_from_target, else set_embed(target embed); EAGLE calls set_embed_and_head.
    Called here with sentinel tensors standing for the target's, to see which draft weights they replace."""
    import torch

    found: dict[str, Any] = {}
    try:
        emb = model.model.embed_tokens.weight
        target_embed = torch.full_like(emb, SENTINEL)
        target_head = torch.full((hf.vocab_size, emb.shape[1]), SENTINEL, dtype=emb.dtype, device=emb.device)
        if device == "cpu" and not torch.cuda.is_available():
            # set_embed / set_embed_and_head free the old tensors with torch.cuda.empty_cache() + synchronize(),
            # device no-ops that need CUDA to be callable
            for name in ("empty_cache", "synchronize"):
                setattr(torch.cuda, name, lambda *a, **k: None)
        if arch not in EAGLE3_ARCHS or getattr(model, "load_lm_head_from_target", False):
            model.set_embed_and_head(target_embed, target_head)
            found["call"] = "set_embed_and_head"
        else:
            model.set_embed(target_embed)
            found["call"] = "set_embed"
        found["embed_from_target"] = bool((model.model.embed_tokens.weight == SENTINEL).all())
        found["lm_head_from_target"] = bool((model.lm_head.weight == SENTINEL).all())
    except Exception as e:
        found["error"] = f"{type(e).__name__}: {e}"
    return found


# --- probe ----------------------------------------------------------------------------------------------------
def probe_head(root: str) -> str:
    """A minimal EAGLE-3 head (hidden 64, one layer) written with torch + safetensors, for `--probe`: does this
    interpreter and release get through imports, config, construction and loading at all."""
    import torch
    from safetensors.torch import save_file

    h, heads, kv, inter, vocab, dvocab = 64, 4, 2, 128, 512, 128
    cfg = {"architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "hidden_size": h,
           "intermediate_size": inter, "num_hidden_layers": 1, "num_attention_heads": heads,
           "num_key_value_heads": kv, "head_dim": h // heads, "vocab_size": vocab, "draft_vocab_size": dvocab,
           "target_hidden_size": h, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
           "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "bfloat16"}
    q, k = heads * (h // heads), kv * (h // heads)
    shapes = {"fc.weight": (h, 3 * h), "norm.weight": (h,), "lm_head.weight": (dvocab, h),
              "midlayer.self_attn.q_proj.weight": (q, 2 * h), "midlayer.self_attn.k_proj.weight": (k, 2 * h),
              "midlayer.self_attn.v_proj.weight": (k, 2 * h), "midlayer.self_attn.o_proj.weight": (h, q),
              "midlayer.mlp.gate_proj.weight": (inter, h), "midlayer.mlp.up_proj.weight": (inter, h),
              "midlayer.mlp.down_proj.weight": (h, inter), "midlayer.input_layernorm.weight": (h,),
              "midlayer.hidden_norm.weight": (h,), "midlayer.post_attention_layernorm.weight": (h,)}
    d = os.path.join(root, "probe-head")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    tensors = {n: torch.full(s, 0.01, dtype=torch.bfloat16) for n, s in shapes.items()}
    tensors["d2t"] = torch.zeros(dvocab, dtype=torch.int64)
    save_file(tensors, os.path.join(d, "model.safetensors"))
    return d


# --- entry point ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("drafts", nargs="*", help="draft directories (config.json + weights)")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--sglang-src", help="an unpacked SGLang release (the folder holding sglang/)")
    where.add_argument("--installed", action="store_true", help="the SGLang installed in this interpreter")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    ap.add_argument("--dtype", default="float32", help="parameter dtype (loading casts; float32 keeps every value)")
    ap.add_argument("--triton-stub", default=None, help="sglang/_triton_stub.py of a release that has one")
    ap.add_argument("--stub", action="append", default=[], help="one more top-level module to stub if missing")
    ap.add_argument("--server-arg", action="append", default=[], metavar="KEY=JSON",
                    help="override a ServerArgs field, e.g. json_model_override_args='{\"norm_output\": true}'")
    ap.add_argument("--probe", action="store_true", help="run on a tiny built-in head; exit 1 unless it loads")
    ap.add_argument("--out", default=None, help="write the JSON here instead of stdout")
    args = ap.parse_args(argv)
    args.overrides = {}
    for kv in args.server_arg:
        key, value = kv.split("=", 1)
        try:
            args.overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            args.overrides[key] = value
    if not args.drafts and not args.probe:
        ap.error("give draft directories, or --probe")
    return args


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    args = parse_args(argv)
    doc: dict[str, Any] = {"mode": "installed" if args.installed else f"source {args.sglang_src}", "results": []}
    session = Session(args)
    code = 0

    def flush(final: bool = False) -> None:
        """Write the document (`--out`: after the import and after every head, so that a process that dies
        part-way still tells what it did; stdout: once, at the end)."""
        doc["stubs"] = session.stubs
        doc["stub_modules_used"] = sorted(session.finder.used) if session.finder else []
        doc["setup"] = session.setup
        doc["seconds"] = round(time.time() - t0, 2)
        if args.out:
            tmp = f"{args.out}.part"
            with open(tmp, "w") as f:
                f.write(json.dumps(doc, indent=1, default=str) + "\n")
            os.replace(tmp, args.out)
        elif final:
            print(json.dumps(doc, indent=1, default=str))

    try:
        session.import_sglang()
        import torch

        if args.device == "auto":
            session.device = args.device = "cuda" if torch.cuda.is_available() else "cpu"
        doc["device"] = session.device
        doc["versions"] = session.versions()
        doc["t_import"] = round(time.time() - t0, 2)
        flush()
        drafts = list(args.drafts)
        if args.probe:
            drafts.append(probe_head(tempfile.mkdtemp(prefix="eaglectl-oracle-probe-")))
        for d in drafts:
            doc["results"].append(run_head(session, d))
            flush()
        if args.probe and doc["results"][-1].get("stage") != "done":
            code = 1
    except Exception as e:  # SGLang could not be imported or set up at all
        doc["error"] = f"{type(e).__name__}: {e}"
        doc["traceback"] = traceback.format_exc().splitlines()[-12:]
        code = 1
    flush(final=True)
    if code:
        print(doc.get("error") or f"probe head did not load: {doc['results'][-1].get('error')}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
