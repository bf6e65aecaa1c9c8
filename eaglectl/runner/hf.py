"""The Hugging Face reference target runner (extra `hf`): plain transformers, no serving engine.

It is the definition the other engines are checked against: aux hidden states are the outputs of decoder layers
k (captured with forward hooks, identical to `output_hidden_states[k + 1]` without keeping every layer's
output alive), logits cover the full vocab, and the dtype is always explicit ("auto" reads the target's config).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eaglectl.checkpoint.weights import library_path
from eaglectl.errors import CheckpointError, ConfigError, EaglectlError, require
from eaglectl.runner.contract import DTYPES, canonical_dtype, model_dims, resolve_aux_layer_ids, text_config

__all__ = ["DTYPES", "HFTargetRunner", "canonical_dtype", "config_dtype", "resolve_dtype"]

if TYPE_CHECKING:
    import torch

def config_dtype(config: Any) -> str | None:
    """The dtype a transformers config records (`dtype` in transformers 5, `torch_dtype` before)."""
    cfg = text_config(config)
    for source in (cfg, config):
        for key in ("dtype", "torch_dtype"):
            value = source.get(key) if isinstance(source, dict) else getattr(source, key, None)
            if value is not None:
                return str(value).removeprefix("torch.")
    return None


def resolve_dtype(requested: str, recorded: str | None) -> str:
    """The dtype to run in: `requested`, or for "auto" the target's recorded dtype (float32 when none is)."""
    if str(requested) != "auto":
        name = canonical_dtype(requested)
        if name is None:
            raise ConfigError(f"dtype {requested!r} is not one of {', '.join(DTYPES)}")
        return name
    if recorded is None:
        return "float32"
    name = canonical_dtype(recorded)
    if name is None:
        raise ConfigError(f"the target's config records dtype {recorded!r}, which eaglectl cannot run as is",
                          hint=f"pass --dtype ({', '.join(DTYPES)})")
    return name


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; a CUDA device without CUDA is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EaglectlError(f"device {device!r} requested but CUDA is not available", hint="use the CPU")
    return device


def _dtype_kwarg() -> str:
    """transformers renamed from_pretrained's `torch_dtype` to `dtype` in 4.56."""
    import transformers

    try:
        major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    except ValueError:
        return "dtype"
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _decoder_layers(model: Any, num_layers: int) -> Any:
    """The ModuleList of decoder layers (None if it cannot be found: then hidden states are used instead)."""
    import torch

    getter = getattr(model, "get_decoder", None)
    decoder = getter() if callable(getter) else None
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, torch.nn.ModuleList) and len(layers) == num_layers:
        return layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_layers and \
                "DecoderLayer" in type(module[0]).__name__:
            return module
    return None


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers' own "Loading weights" bars off while it loads (eaglectl reports load time itself), then
    back as they were."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _held_log(messages: list[str]) -> Iterator[None]:
    """transformers' and huggingface_hub's log records held back while it loads: replayed as they were when the
    load succeeds; when it fails, in `messages` (its load report names what disagrees) and not printed, so the
    failure is one line (a Hub that cannot be reached logs a line per retry)."""
    import logging

    libs = [logging.getLogger(name) for name in ("transformers", "huggingface_hub")]
    records: list[tuple[logging.Logger, logging.LogRecord]] = []

    class Hold(logging.Handler):
        def __init__(self, lib: logging.Logger) -> None:
            super().__init__()
            self.lib = lib

        def emit(self, record: logging.LogRecord) -> None:
            records.append((self.lib, record))

    saved = {lib.name: lib.handlers[:] for lib in libs}
    for lib in libs:
        lib.handlers = [Hold(lib)]
    try:
        yield
    except BaseException:
        messages += [r.getMessage() for _, r in records]
        raise
    finally:
        for lib in libs:
            lib.handlers = saved[lib.name]
    for lib, record in records:
        for handler in saved[lib.name]:
            if record.levelno >= handler.level:
                handler.handle(record)


def refuse_missing(model_path: str, info: dict[str, Any]) -> None:
    """A config that builds parameters the weights do not hold (more layers than were saved, another model's
    config): transformers initialises them at random and loads without an error, and every comparison after it
    measures noise. Refused, naming the first of them."""
    import re

    missing = sorted(info.get("missing_keys") or [],
                     key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)])
    if not missing:
        return
    more = f", and {len(missing) - 3} more" if len(missing) > 3 else ""
    raise CheckpointError(f"{model_path}: the target's config disagrees with its weights: {len(missing)} "
                          f"parameter(s) it builds are not in the weights ({', '.join(missing[:3])}{more}); "
                          f"transformers would initialise them at random",
                          hint="fix config.json to match the weights (or point at the right checkpoint)")


# The keys transformers reads from a shard index: a KeyError naming another key comes from elsewhere (the config).
INDEX_KEYS = ("metadata", "weight_map")


def _index_lacks(directory: Path, key: Any) -> str | None:
    """The name of the target's shard index when it is a JSON object without `key`, one of the keys transformers
    reads there (what a KeyError raised while it reads the index names), else None."""
    if key not in INDEX_KEYS:
        return None
    from eaglectl.checkpoint.weights import BIN_INDEX, SAFETENSORS_INDEX
    from eaglectl.jsonfile import INDEX_LIMITS, read_json_object

    for name in (SAFETENSORS_INDEX, BIN_INDEX):
        try:
            index = read_json_object(directory / name, what="weight index", limits=INDEX_LIMITS)
        except (EaglectlError, OSError):
            continue
        if isinstance(key, str) and key not in index:
            return name
    return None


def load_error(model_path: str, exc: BaseException, log: Sequence[str],
               directory: Path | None = None) -> CheckpointError | None:
    """What a failed `from_pretrained` means, as one line (None: not a failure of the target's files).
    `directory`: the target's, where the shard index a KeyError may name is read."""
    import pickle
    import re
    import zipfile

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if isinstance(exc, KeyError) and directory is not None and exc.args and (
            index := _index_lacks(directory, exc.args[0])) is not None:
        return CheckpointError(f"{model_path}: the shard index {index} has no \"{exc.args[0]}\", which transformers "
                               f"reads", hint=f"add the \"{exc.args[0]}\" object transformers writes to the index (or "
                                              f"point at the right checkpoint)")
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        return CheckpointError(f"{model_path}: refused to unpickle the target's weights: they need objects beyond "
                               f"tensors ({found.group(1) if found else first}); eaglectl never runs pickled code",
                               hint="convert the target to safetensors where it was trained")
    mismatch = [line for text in log for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
                if "MISMATCH" in line and "|" in line]
    if mismatch or "ignore_mismatched_sizes" in str(exc) or "size mismatch" in str(exc):
        size = r"torch\.Size\((\[[^\]]*\])\)"
        pattern = rf"(.+?)\s*\|.*ckpt:\s*{size}\s*vs\s*model:\s*{size}"
        shapes = re.match(pattern, mismatch[0].strip()) if mismatch else None
        detail = (f"{shapes.group(1)} is {shapes.group(2)} in the weights, {shapes.group(3)} by the config" if shapes
                  else " ".join(mismatch[0].split()) if mismatch else first)
        more = f" (and {len(mismatch) - 1} more)" if len(mismatch) > 1 else ""
        return CheckpointError(f"{model_path}: the target's config disagrees with its weights: {detail}{more}",
                               hint="fix config.json to match the weights (or point at the right checkpoint)")
    if type(exc).__module__.split(".")[0] == "safetensors":
        return CheckpointError(f"{model_path}: a safetensors file of the target is corrupt or truncated ({first})")
    if isinstance(exc, (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError)):
        return CheckpointError(f"{model_path}: transformers cannot load the target ({type(exc).__name__}: {first})")
    return None


class HFTargetRunner:
    """`TargetRunner` over a transformers causal LM, the reference every other engine is compared with."""

    def __init__(self, model_path: str, *, dtype: str = "auto", device: str = "auto",
                 trust_remote_code: bool = False, aux_layer_ids: Sequence[int] | None = None) -> None:
        require("transformers", extra="hf", purpose="to run the Hugging Face reference target")
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        self.model_path = str(model_path)
        # A directory named in bytes that are not UTF-8 (Latin-1): transformers and safetensors take text paths
        # only, so it is handed over as /proc/self/fd/N, the same directory whatever its name.
        with library_path(Path(self.model_path)) as loadable:
            try:
                with _held_log([]):
                    config = AutoConfig.from_pretrained(loadable, trust_remote_code=trust_remote_code)
            except (OSError, ValueError, KeyError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise CheckpointError(f"{model_path}: transformers cannot read the target config ({first})") from exc
            self.dtype = resolve_dtype(dtype, config_dtype(config))
            self.device = resolve_device(device)
            kwargs = {_dtype_kwarg(): getattr(torch, self.dtype), "trust_remote_code": trust_remote_code}
            log: list[str] = []
            try:
                with _no_progress_bars(), _held_log(log):
                    # Any: transformers types `.to` through a decorator that mypy reads as taking the model itself.
                    loaded: Any = AutoModelForCausalLM.from_pretrained(loadable, config=config,
                                                                       output_loading_info=True, **kwargs)
                    model: Any = loaded[0]
                    refuse_missing(model_path, loaded[1])  # raised here, its load report is held, not printed
            except EaglectlError:
                raise
            except Exception as exc:
                mapped = load_error(model_path, exc, log, Path(self.model_path))
                if mapped is None:
                    raise
                raise mapped from exc
        model.requires_grad_(False)
        self.model = model.to(self.device).eval()
        self.num_layers, self.hidden_size, self.vocab_size = model_dims(self.model)
        self._layers = _decoder_layers(self.model, self.num_layers)
        self.aux_layer_ids: list[int] | None = None
        if aux_layer_ids is not None:
            self.set_aux_layers(aux_layer_ids)

    @property
    def engine_settings(self) -> dict[str, Any]:
        """What decides this reference's numerics and speed (for reports)."""
        return {"attn_implementation": getattr(self.model.config, "_attn_implementation", None),
                "device": self.device}

    def set_aux_layers(self, ids: Sequence[int] | None) -> None:
        """Capture the outputs of these decoder layers (None: SGLang's defaults for this depth)."""
        self.aux_layer_ids = resolve_aux_layer_ids(ids, self.num_layers)

    def forward_eagle3(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unshifted (logits [B, S, V], aux [B, S, 3H]) on the runner's device, in the runner's dtype."""
        import torch

        if self.model is None:
            raise RuntimeError("HFTargetRunner is closed")
        if self.aux_layer_ids is None:
            self.set_aux_layers(None)
        ids = list(self.aux_layer_ids or [])
        captured: dict[int, torch.Tensor] = {}
        handles = []
        if self._layers is not None:
            for k in ids:
                def hook(_module: Any, _inputs: Any, out: Any, k: int = k) -> None:
                    captured[k] = out[0] if isinstance(out, tuple) else out
                handles.append(self._layers[k].register_forward_hook(hook))
        try:
            with torch.inference_mode():
                out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                                 use_cache=False, output_hidden_states=self._layers is None)
        finally:
            for h in handles:
                h.remove()
        if self._layers is not None:
            aux = torch.cat([captured[k] for k in ids], dim=-1)
        else:
            aux = torch.cat([out.hidden_states[k + 1] for k in ids], dim=-1)
        return out.logits, aux

    def input_embedding_weight(self) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError("HFTargetRunner is closed")
        return self.model.get_input_embeddings().weight

    def close(self) -> None:
        """Drop the model (and cached GPU memory); safe to call twice."""
        if self.model is None:
            return
        self.model = None
        self._layers = None
        import gc

        import torch

        gc.collect()
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
