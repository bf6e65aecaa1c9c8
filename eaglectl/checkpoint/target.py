"""The target model's config, read locally (a model directory or a config.json); a Hub id's config.json only from
the local Hugging Face cache, never fetched (SGLang downloads the target itself)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eaglectl.engines.sglang.loader import context_length, rope_only_in_parameters
from eaglectl.errors import ConfigError, require
from eaglectl.hub import META_FILES, cached_target_config, expand_user, hub_id
from eaglectl.jsonfile import config_int, read_json_object


def text_config(config: Any) -> Any:
    """The language-model part of a (possibly multimodal) transformers config, or of a config dict."""
    if isinstance(config, dict):
        return config["text_config"] if isinstance(config.get("text_config"), dict) else config
    getter = getattr(config, "get_text_config", None)
    if callable(getter):
        try:
            return getter()
        except TypeError:
            pass
    sub = getattr(config, "text_config", None)
    return sub if sub is not None else config


def default_aux_layer_ids(num_layers: int) -> list[int]:
    """SGLang's default EAGLE-3 capture layers, in eaglectl's convention (output of layer k)."""
    return [1, num_layers // 2 - 1, num_layers - 4]


@dataclass
class TargetInfo:
    source: str
    config_path: Path | None
    hidden_size: int | None = None
    vocab_size: int | None = None
    num_layers: int | None = None
    dtype: str | None = None
    max_position_embeddings: int | None = None
    model_type: str | None = None
    architectures: list[str] | None = None  # the top-level class names (a multimodal wrapper's own)
    hub_id: str | None = None
    note: str | None = None  # for a Hub id: where its config came from, or why it could not be checked
    rope_only_in_parameters: str | None = None  # RoPE settings a transformers-4 SGLang (0.5.9) would not read
    context_length: int | None = None  # as SGLang derives it (engines.sglang.loader.context_length)

    @property
    def local(self) -> bool:
        """Its config was read (a local path, or a Hub id cached locally): the checks against it can run."""
        return self.config_path is not None


def load_target(source: str) -> TargetInfo:
    """Read the target's config; for a Hub id (`eaglectl.hub`: no local path) from the local Hugging Face cache
    when it is there, else nothing read (`note` says so)."""
    p = expand_user(source)
    try:  # a name too long, a directory on the way that may not be searched: said as such, as for the drafter
        exists = p.exists()
        cfg_path = p / "config.json" if exists and p.is_dir() else p
        has_config = exists and cfg_path.is_file()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot access ({exc.strerror or exc})") from exc
    if not exists:
        repo = hub_id(source)
        cached, note = cached_target_config(repo)
        if cached is None:
            return TargetInfo(source=repo, config_path=None, hub_id=repo, note=note)
        info = _read(source, cached)
        info.hub_id, info.note = repo, note
        return info
    if not has_config:
        if cfg_path.name == "config.json" and os.path.lexists(cfg_path):  # a FIFO, a device, a dangling link
            raise ConfigError(f"{cfg_path}: the target's config.json is not a regular file")
        raise ConfigError(f"{source}: target has no config.json")
    return _read(source, cfg_path)


DRAFTER_FILES = ("draft_model.pt", *META_FILES)  # NeMo's drafter weights and vocab metas: no target has them
DRAFTER_CONFIG_KEYS = ("draft_vocab_size", "eagle_config", "speculators_config", "speculators_model_type")


def drafter_signs(source: str) -> str | None:
    """What makes the local directory (or config) `source` a speculative drafter rather than a target model, read
    from names and its config only (nothing loaded); None when nothing does or it is no local path."""
    import re

    p = expand_user(source)
    try:
        if p.is_dir():
            found = [n for n in DRAFTER_FILES if (p / n).is_file()]
            if found:
                return f"it holds {found[0]}"
            if (p / "model").is_dir() and any((p / m).is_file() for m in META_FILES):
                return "a NeMo consolidated checkpoint (model/ beside an eagle meta file)"
            if any(re.fullmatch(r"epoch_\d+_step_\d+", c.name) and c.is_dir() for c in p.iterdir()):
                return "a NeMo training run (epoch_<E>_step_<S>/ checkpoints)"
        cfg_path = p / "config.json" if p.is_dir() else p
        if not cfg_path.is_file():
            return None
    except OSError:
        return None
    try:
        cfg = read_json_object(cfg_path, what="config")
    except ConfigError:
        return None  # whatever is wrong with it is said when it is read as a target config
    archs = [a for a in _names(cfg.get("architectures")) or [] if re.search(r"eagle|draft", a, re.IGNORECASE)]
    if archs:
        return f"its config's architectures name {archs[0]}"
    keys = [k for k in DRAFTER_CONFIG_KEYS if k in cfg]
    if keys:
        return f"its config has {keys[0]}"
    return None


def _read(source: str, cfg_path: Path) -> TargetInfo:
    cfg = read_json_object(cfg_path, what="target config")
    text = text_config(cfg)  # multimodal wrappers
    dtype = text.get("torch_dtype") or text.get("dtype") or cfg.get("torch_dtype") or cfg.get("dtype")
    return TargetInfo(
        source=source, config_path=cfg_path.resolve(), hidden_size=config_int(text, "hidden_size"),
        vocab_size=config_int(text, "vocab_size"), num_layers=config_int(text, "num_hidden_layers"),
        dtype=dtype if isinstance(dtype, str) else None,
        max_position_embeddings=config_int(text, "max_position_embeddings"),
        model_type=text.get("model_type") if isinstance(text.get("model_type"), str) else None,
        architectures=_names(cfg.get("architectures")) or _names(text.get("architectures")),
        rope_only_in_parameters=rope_only_in_parameters(text), context_length=context_length(text))


def _names(value: object) -> list[str] | None:
    return list(value) if isinstance(value, list) and all(isinstance(a, str) for a in value) else None


def load_tokenizer(target: str, *, trust_remote_code: bool, purpose: str, hint: str) -> Any:
    """The target's own tokenizer (transformers), for prompts given as text or chats; a target without one is
    one ConfigError naming `purpose`, with `hint` (what to pass instead)."""
    require("transformers", extra="hf", purpose=f"to {purpose}")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(target, trust_remote_code=trust_remote_code)
    except Exception as exc:  # the target's tokenizer files as transformers reads them: a malformed one raises
        # anything (AttributeError for a list where an object belongs, RecursionError for deep nesting)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigError(f"{target}: no tokenizer to {purpose} ({type(exc).__name__}: {first})", hint=hint) from exc
