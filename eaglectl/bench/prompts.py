"""Benchmark prompts: a file (a JSON list or JSONL of strings, token-id lists or chat conversations) or a seeded
synthetic set of token-id prompts.

Chat conversations are rendered to token ids here, with the target's own chat template
(`tokenizer.apply_chat_template`, as SGLang's /v1/chat/completions does server-side), then sent to /generate as
`input_ids`: /generate is the endpoint whose `meta_info` carries the speculative counters (spec_accept_length,
spec_verify_ct, the acceptance histogram) that the OpenAI-compatible endpoints do not return, and the same ids go
to the baseline, so outputs compare token for token.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eaglectl.errors import CheckpointError, ConfigError
from eaglectl.jsonfile import JsonLimits, loads_bounded

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PROMPTS = 10_000
MAX_PROMPT_TOKENS = 1_000_000  # per token-id prompt
LIMITS = JsonLimits(max_bytes=MAX_FILE_BYTES, max_containers=4 * MAX_PROMPTS + 1_000_000,
                    max_values=16_000_000, max_depth=8)
LINE_LIMITS = JsonLimits(max_bytes=MAX_FILE_BYTES, max_containers=1_000_000, max_values=4_000_000, max_depth=6)
SYNTHETIC_SEED = 0
SYNTHETIC_LENGTHS = (16, 64)
DEFAULT_NUM_SYNTHETIC = 16
SYNTHETIC_WARNING = ("no --prompts: using seeded synthetic token-id prompts; a drafter's acceptance on random ids "
                     "does not predict its acceptance (or the speedup) on real traffic")


@dataclass
class Prompt:
    kind: str  # "text" | "ids" | "chat"
    value: Any  # what /generate gets: a string or token ids (chat: the rendered ids)
    messages: list[dict[str, Any]] | None = None  # chat: the conversation as given


@dataclass
class PromptSet:
    prompts: list[Prompt]
    source: str  # the file, or "synthetic (seed 0)"
    synthetic: bool
    notes: list[str]


def _kind(item: Any) -> str | None:
    if isinstance(item, str):
        return "text" if item else None
    if isinstance(item, list) and item:
        if all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in item):
            return "ids" if len(item) <= MAX_PROMPT_TOKENS else None
        if all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), (str, list))
               for m in item):
            return "chat"
    return None


def read_file(path: Path) -> list[Any]:
    """The prompt items of a JSON list or a JSONL file (a `.jsonl` name, or lines that are not one JSON
document), read within bounds (one ConfigError otherwise)."""
    import stat

    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: prompts must be a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: {st.st_size} bytes of prompts; at most {MAX_FILE_BYTES}")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read prompts ({exc.strerror or exc})") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: more than {MAX_FILE_BYTES} bytes of prompts")
    stripped = raw.strip()
    if not stripped:
        raise ConfigError(f"{path}: no prompts (empty file)")
    if stripped[:1] == b"[" and path.suffix.lower() != ".jsonl":
        try:
            data = loads_bounded(stripped, LIMITS, where=str(path), what="prompts")
        except ConfigError:
            if b"\n" not in stripped:  # one line: it was meant as a JSON list
                raise
            data = None  # JSONL whose lines are lists
        if data is not None:
            if not isinstance(data, list):
                raise ConfigError(f"{path}: expected a JSON list of prompts")
            if data and _kind(data) in ("chat", "ids"):  # one bare prompt
                raise ConfigError(f"{path}: this JSON list is one prompt; a prompt file lists prompts: "
                                  f"[[1, 2, ...], ...] or [[{{\"role\": ..., \"content\": ...}}], ...] (or use "
                                  f"JSONL, one prompt per line, in a .jsonl file)")
            return data
    items: list[Any] = []
    for n, line in enumerate(stripped.split(b"\n"), 1):
        if not line.strip():
            continue
        if len(items) >= MAX_PROMPTS:
            raise ConfigError(f"{path}: more than {MAX_PROMPTS} prompts")
        items.append(loads_bounded(line, LINE_LIMITS, where=f"{path} line {n}", what="prompt"))
    return items


def load(path: Path | None, num_prompts: int | None, *, vocab_size: int | None, target: str,
         trust_remote_code: bool = False, skip_tokenizer_init: bool = False) -> PromptSet:
    """The prompts of a bench run: the file's first `num_prompts` (all by default), or a synthetic set."""
    if path is None:
        n = num_prompts or DEFAULT_NUM_SYNTHETIC
        if n > MAX_PROMPTS:
            raise ConfigError(f"--num-prompts {n}: at most {MAX_PROMPTS}")
        return PromptSet(synthetic_prompts(n, vocab_size), f"synthetic (seed {SYNTHETIC_SEED})", True,
                         [SYNTHETIC_WARNING])
    items = read_file(path)
    if not items:
        raise ConfigError(f"{path}: no prompts (empty list)")
    if len(items) > MAX_PROMPTS:
        raise ConfigError(f"{path}: {len(items)} prompts; at most {MAX_PROMPTS}")
    notes: list[str] = []
    if num_prompts is not None:
        if num_prompts > len(items):
            notes.append(f"--num-prompts {num_prompts}: {path} holds {len(items)}; using all of them")
        items = items[:num_prompts]
    prompts = []
    for i, item in enumerate(items):
        kind = _kind(item)
        if kind is None:
            raise ConfigError(f"{path}: prompt {i} is not a non-empty string, a list of token ids (0 <= id < 2**31) "
                              f"or a list of chat messages ({{\"role\": ..., \"content\": ...}})")
        if kind == "ids" and vocab_size and max(item) >= vocab_size:
            raise ConfigError(f"{path}: prompt {i} holds token id {max(item)}, outside the target's vocabulary "
                              f"({vocab_size})")
        prompts.append(Prompt(kind, item, item if kind == "chat" else None))
    if skip_tokenizer_init and any(p.kind == "text" for p in prompts):
        raise ConfigError(f"{path}: text prompts need SGLang's tokenizer, which -- --skip-tokenizer-init turns off",
                          hint="give token-id lists, or drop --skip-tokenizer-init")
    chats = [p for p in prompts if p.kind == "chat"]
    if chats:
        rendered = render_chats([p.messages or [] for p in chats], target, trust_remote_code)
        for p, ids in zip(chats, rendered, strict=True):
            p.value = ids
        notes.append(f"{len(chats)} chat prompt(s) rendered with {target}'s chat template to token ids")
    return PromptSet(prompts, str(path), False, notes)


def synthetic_prompts(n: int, vocab_size: int | None) -> list[Prompt]:
    """`n` seeded random token-id prompts (16-64 ids, from 3 upwards: ids 0-2 are special in most vocabularies)."""
    rng = random.Random(SYNTHETIC_SEED)
    top = min(vocab_size or 32000, 32000)
    lo, hi = SYNTHETIC_LENGTHS
    return [Prompt("ids", [rng.randrange(3, top) for _ in range(rng.randint(lo, hi))]) for _ in range(n)]


def render_chats(conversations: list[list[dict[str, Any]]], target: str, trust_remote_code: bool) -> list[list[int]]:
    from eaglectl.checkpoint.target import load_tokenizer

    tok = load_tokenizer(target, trust_remote_code=trust_remote_code, purpose="render chat prompts",
                         hint="give strings or token-id lists instead")
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"{target}: the tokenizer has no chat template to render chat prompts",
                          hint="give strings or token-id lists instead")
    out = []
    for i, messages in enumerate(conversations):
        try:
            ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        except Exception as exc:  # a template error (jinja) on this conversation
            raise ConfigError(f"chat prompt {i}: the chat template failed ({exc})") from exc
        if hasattr(ids, "get") and "input_ids" in ids:  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        out.append([int(t) for t in ids])
    return out
