"""`probe-target`: prove an engine honours the EAGLE-3 target contract, against the Hugging Face reference.

The engine and the reference run one after the other (never both loaded at once, so a GPU that holds one holds
the probe) on the same right-padded rows; outputs are compared at real (unpadded) positions only, because what
an engine leaves at padded positions is unspecified.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eaglectl.checkpoint.target import drafter_signs, load_target
from eaglectl.enums import Compare, Engine
from eaglectl.errors import ConfigError, UsageError, require
from eaglectl.jsonfile import JsonLimits, loads_bounded
from eaglectl.runner.contract import TargetRunner, model_dims, output_problems, resolve_aux_layer_ids, row_lengths

if TYPE_CHECKING:
    import torch

# Largest allowed relative mean difference, mean|engine - reference| / mean|reference|, per compared tensor.
# Two engines in bf16 (8 mantissa bits) drift apart by a percent or so over a deep model; fp16 keeps 3 more bits;
# fp32 engines may still use TF32 matmuls (10 bits).
DEFAULT_TOLERANCE = {"bfloat16": 5e-2, "float16": 2e-2, "float32": 5e-3}
# Smallest allowed share of real positions where engine and reference agree on the top-1 token.
DEFAULT_MIN_TOP1 = {"bfloat16": 0.90, "float16": 0.95, "float32": 0.99}
DEFAULT_BATCH = 4
DEFAULT_SEQ_LEN = 128
# A prompt file: a list of token-id lists or of strings (nested 2 deep; 8 leaves room for a text line that starts
# with brackets), at most as large as a bench prompt file.
# Rows x longest row, at most: the logits alone are that many times the vocab (8 GB in bf16 for a 64k vocab), and
# the reference holds them again. A probe needs a few hundred positions; a typo (`--seq-len 100000000`) must not
# allocate for minutes before failing.
MAX_TOKENS = 32_768
PROMPT_LIMITS = JsonLimits(max_bytes=64 * 1024 * 1024, max_containers=1_000_000, max_values=16_000_000, max_depth=8)
# ServerArgs fields probe-target sets from its own options: SGLang flags after `--` must not set them too.
OWN_OPTIONS = {"model_path": "the TARGET argument", "tp_size": "--tp-size", "trust_remote_code": "--trust-remote-code",
               "dtype": "--dtype"}


@dataclass
class TensorDiff:
    """One compared tensor, at real positions only (`shape` is what was compared)."""

    name: str
    shape: list[int]
    max_abs: float
    mean_abs: float
    rel_mean: float
    tolerance: float
    ok: bool


@dataclass
class RunStats:
    engine: str
    device: str
    dtype: str
    load_s: float
    forward_s: float
    tokens_per_s: float
    peak_gpu_memory_bytes: int | None = None  # this process's torch allocator peak; None without CUDA
    gpu_memory_in_use_bytes: int | None = None  # whole device right after the forward (engine subprocesses too)
    settings: dict[str, Any] = field(default_factory=dict)  # the runner's `engine_settings`, when it has them


@dataclass
class ProbeReport:
    target: str
    engine: Engine
    compare: Compare
    dtype: str
    tp_size: int
    aux_layer_ids: list[int]
    num_layers: int
    hidden_size: int
    vocab_size: int
    inputs: str
    row_lengths: list[int]
    tokens: int
    shapes: dict[str, list[int]]
    engine_run: RunStats
    tolerance: float
    tolerance_source: str
    min_top1_agreement: float
    reference_run: RunStats | None = None
    diffs: list[TensorDiff] = field(default_factory=list)
    top1_agreement: float | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class _Outputs:
    """One run's outputs on the CPU, kept until the other run is done."""

    logits: torch.Tensor
    aux: torch.Tensor
    embedding: torch.Tensor | None
    stats: RunStats
    problems: list[str]


def engine_server_args(*, attention_backend: str | None = None, mem_fraction_static: float | None = None
                       ) -> dict[str, Any]:
    """The ServerArgs overrides probe-target's own options ask for (empty: the runner's defaults)."""
    out: dict[str, Any] = {}
    if attention_backend is not None:
        if not attention_backend.strip():
            raise UsageError("--attention-backend needs a backend name (for example triton or fa3)")
        out["attention_backend"] = attention_backend.strip()
    if mem_fraction_static is not None:
        if not 0 < mem_fraction_static <= 1:
            raise UsageError(f"--mem-fraction-static must be in (0, 1], got {mem_fraction_static}")
        out["mem_fraction_static"] = float(mem_fraction_static)
    return out


def with_server_flags(server_args: dict[str, Any], flags: Sequence[str]) -> dict[str, Any]:
    """`server_args` plus `sglang.launch_server` flags read by SGLang's own parser (SGLang is imported here);
    a setting given both ways is refused."""
    from eaglectl.runner.sglang.settings import server_args_from_flags
    from eaglectl.serving.flags import flag_name

    from_flags = server_args_from_flags(flags, own_options=OWN_OPTIONS)
    twice = sorted(from_flags.keys() & server_args.keys())
    if twice:
        raise UsageError(f"{flag_name(twice[0])} is given both as a probe-target option and after --; give it "
                            f"once")
    return {**from_flags, **server_args}


def make_engine_runner(engine: Engine, target: str, *, dtype: str, tp_size: int, device: str,
                       trust_remote_code: bool, server_args: dict[str, Any] | None = None) -> TargetRunner:
    """The runner for `--engine`; SGLang is imported only here, after checking it is installed. `server_args`:
    ServerArgs overrides (probe-target's SGLang options and flags)."""
    if engine is Engine.sglang:
        require("sglang", extra="sglang", purpose="for --engine sglang")
        from eaglectl.runner.sglang import SGLangTargetRunner

        return SGLangTargetRunner(target, dtype=dtype, tp_size=tp_size, trust_remote_code=trust_remote_code,
                                  **(server_args or {}))
    return make_reference_runner(target, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


def make_reference_runner(target: str, *, dtype: str, device: str, trust_remote_code: bool) -> TargetRunner:
    from eaglectl.runner.hf import HFTargetRunner

    return HFTargetRunner(target, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


def run_probe(
    target: str,
    *,
    engine: Engine = Engine.hf,
    aux_layer_ids: Sequence[int] | None = None,
    batch: int | None = None,
    seq_len: int | None = None,
    prompts: Path | None = None,
    dtype: str = "bfloat16",
    tp_size: int = 1,
    compare: Compare = Compare.hf,
    tolerance: float | None = None,
    min_top1_agreement: float | None = None,
    seed: int = 0,
    warmup: int = 1,
    device: str = "auto",
    trust_remote_code: bool = False,
    attention_backend: str | None = None,
    mem_fraction_static: float | None = None,
    sglang_flags: Sequence[str] = (),
) -> ProbeReport:
    """Run `engine` (and the HF reference) on the same rows and report shapes, differences and speed.

    `attention_backend`, `mem_fraction_static` and `sglang_flags` (`sglang.launch_server` flags) configure the
    SGLang engine: probing with the backend you serve with checks the kernels the drafter will meet."""
    from eaglectl.runner.hf import resolve_dtype

    engine, compare = Engine(engine), Compare(compare)
    _check_args(engine, batch=batch, seq_len=seq_len, tp_size=tp_size, tolerance=tolerance,
                min_top1_agreement=min_top1_agreement, warmup=warmup)
    server_args = engine_server_args(attention_backend=attention_backend, mem_fraction_static=mem_fraction_static)
    sglang_flags = list(sglang_flags)
    if (server_args or sglang_flags) and engine is not Engine.sglang:
        extra = f" (got {' '.join(sglang_flags)})" if sglang_flags else ""
        raise UsageError(f"--attention-backend, --mem-fraction-static and SGLang flags after -- configure SGLang: "
                            f"they need --engine sglang{extra}")
    # Fail on a missing extra before loading anything (an SGLang start takes minutes).
    if engine is Engine.sglang:
        require("sglang", extra="sglang", purpose="for --engine sglang")
    if engine is Engine.hf or compare is Compare.hf:
        require("transformers", extra="hf", purpose="to run the Hugging Face reference target")
    if sglang_flags:
        server_args = with_server_flags(server_args, sglang_flags)
    parsed = _read_prompts(prompts) if prompts is not None else None
    if (why := drafter_signs(target)) is not None:  # before anything loads (a drafter makes no sense to probe)
        raise ConfigError(f"{target}: this is a drafter, not a target ({why}); probe-target runs the target model "
                          f"a drafter is trained on and served with",
                          hint="pass the target model, the one `eaglectl serve --target` takes")
    info = load_target(target)
    if seq_len is not None and info.max_position_embeddings and seq_len > info.max_position_embeddings:
        raise UsageError(f"--seq-len {seq_len} is longer than the target's max_position_embeddings "
                         f"({info.max_position_embeddings})")
    if aux_layer_ids is not None and info.num_layers:
        resolve_aux_layer_ids(aux_layer_ids, info.num_layers)  # fail fast, before loading the target
    dtype_name = resolve_dtype(dtype, info.dtype) if (str(dtype) != "auto" or info.local) else "auto"

    notes: list[str] = []
    state: dict[str, Any] = {}

    def start(runner: TargetRunner) -> None:
        nonlocal dtype_name
        if dtype_name == "auto":
            from eaglectl.runner.hf import config_dtype

            dtype_name = resolve_dtype("auto", config_dtype(runner.model.config))
        n, h, v = model_dims(runner.model)
        state.update(num_layers=n, hidden=h, vocab=v, aux=resolve_aux_layer_ids(aux_layer_ids, n))
        runner.set_aux_layers(state["aux"])
        state["input_ids"], state["mask"], state["inputs"] = _build_rows(
            parsed, prompts, target, vocab=v, batch=batch, seq_len=seq_len, seed=seed,
            trust_remote_code=trust_remote_code)

    out = _run(lambda: make_engine_runner(engine, target, dtype=dtype_name, tp_size=tp_size, device=device,
                                          trust_remote_code=trust_remote_code, server_args=server_args),
               engine.value, start, state, warmup=warmup, keep_embedding=compare is Compare.hf)
    input_ids, mask = state["input_ids"], state["mask"]
    tol = tolerance if tolerance is not None else DEFAULT_TOLERANCE[dtype_name]
    min_top1 = min_top1_agreement if min_top1_agreement is not None else DEFAULT_MIN_TOP1[dtype_name]
    report = ProbeReport(
        target=target, engine=engine, compare=compare, dtype=dtype_name, tp_size=tp_size,
        aux_layer_ids=state["aux"], num_layers=state["num_layers"], hidden_size=state["hidden"],
        vocab_size=state["vocab"], inputs=state["inputs"], row_lengths=row_lengths(mask),
        tokens=int(mask.sum()), engine_run=out.stats, tolerance=tol,
        tolerance_source="--tolerance" if tolerance is not None else f"default for {dtype_name}",
        min_top1_agreement=min_top1,
        shapes={"input_ids": list(input_ids.shape), "attention_mask": list(mask.shape),
                "logits": list(out.logits.shape), "aux_hidden_states": list(out.aux.shape),
                "input_embedding": state["embedding_shape"]},
        failures=[f"{engine.value}: {p}" for p in out.problems], notes=notes)
    if compare is Compare.none:
        return report
    if engine is Engine.hf:
        notes.append("engine and reference are both transformers: differences measure run-to-run determinism only")

    def replay(runner: TargetRunner) -> None:
        runner.set_aux_layers(state["aux"])

    ref = _run(lambda: make_reference_runner(target, dtype=dtype_name, device=device,
                                             trust_remote_code=trust_remote_code),
               "hf", replay, state, warmup=warmup, keep_embedding=True)
    report.reference_run = ref.stats
    report.failures += [f"hf reference: {p}" for p in ref.problems]
    if out.problems or ref.problems:
        notes.append("outputs break the contract's shapes; not compared")
        return report
    _compare(report, out, ref, mask.bool(), tol, min_top1)
    return report


def _check_args(engine: Engine, *, batch: int | None, seq_len: int | None, tp_size: int, tolerance: float | None,
                min_top1_agreement: float | None, warmup: int) -> None:
    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be at least 1, got {batch}")
    if seq_len is not None and seq_len < 2:
        raise UsageError(f"--seq-len must be at least 2, got {seq_len}")
    if tp_size < 1:
        raise UsageError(f"--tp-size must be at least 1, got {tp_size}")
    if tp_size > 1 and engine is not Engine.sglang:
        raise UsageError("--tp-size > 1 needs --engine sglang (the HF runner runs on one device)")
    if tolerance is not None and not tolerance >= 0:
        raise UsageError(f"--tolerance must be >= 0, got {tolerance}")
    if min_top1_agreement is not None and not 0 <= min_top1_agreement <= 1:
        raise UsageError(f"--min-top1-agreement must be in [0, 1], got {min_top1_agreement}")
    if warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {warmup}")
    if (batch or DEFAULT_BATCH) * (seq_len or DEFAULT_SEQ_LEN) > MAX_TOKENS:
        raise UsageError(f"--batch {batch or DEFAULT_BATCH} x --seq-len {seq_len or DEFAULT_SEQ_LEN} is more than "
                         f"{MAX_TOKENS} tokens; a probe needs a few hundred")


def _run(factory, label: str, prepare, state: dict[str, Any], *, warmup: int, keep_embedding: bool) -> _Outputs:
    """Load a runner, warm it up, time one forward, check the outputs' contract, keep them on the CPU (the
    embedding only when it will be compared) and close the runner."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    runner = factory()
    try:
        load_s = time.perf_counter() - t0
        prepare(runner)
        input_ids, mask = state["input_ids"], state["mask"]
        for _ in range(warmup):
            runner.forward_eagle3(input_ids, mask)
        _sync(cuda)
        t0 = time.perf_counter()
        logits, aux = runner.forward_eagle3(input_ids, mask)
        _sync(cuda)
        forward_s = time.perf_counter() - t0
        batch, seq_len = input_ids.shape
        problems = output_problems(logits, aux, batch=batch, seq_len=seq_len, vocab_size=state["vocab"],
                                   hidden_size=state["hidden"])
        embedding = runner.input_embedding_weight()
        want = [state["vocab"], state["hidden"]]
        state["embedding_shape"] = list(embedding.shape)
        if list(embedding.shape) != want:
            problems.append(f"input embedding has shape {list(embedding.shape)}, the contract needs {want}")
        real = mask.bool()
        logits, aux = logits.detach().to("cpu"), aux.detach().to("cpu")  # once: checked here, compared later
        if not problems:
            for name, t in (("logits", logits), ("aux hidden states", aux)):
                if not bool(torch.isfinite(t[real]).all()):
                    problems.append(f"{name} hold NaN or inf at real positions")
        used_cuda = cuda and torch.cuda.is_initialized()
        try:
            param = next(iter(runner.model.parameters()), None)
        except (AttributeError, TypeError):
            param = None
            problems.append("model.parameters() is missing or not iterable")
        stats = RunStats(
            engine=label, device=str(param.device) if param is not None else "?",
            dtype=str(param.dtype).removeprefix("torch.") if param is not None else "?",
            load_s=round(load_s, 3), forward_s=round(forward_s, 6),
            tokens_per_s=int(real.sum()) / forward_s if forward_s > 0 else float("inf"),
            peak_gpu_memory_bytes=torch.cuda.max_memory_allocated() if used_cuda else None,
            gpu_memory_in_use_bytes=_device_in_use() if used_cuda else None,
            settings=_settings(runner))
        return _Outputs(logits=logits, aux=aux,
                        embedding=embedding.detach().to("cpu") if keep_embedding else None,
                        stats=stats, problems=problems)
    finally:
        runner.close()


def _settings(runner: TargetRunner) -> dict[str, Any]:
    """The runner's `engine_settings` (optional in the contract: a third-party runner may not have them)."""
    try:
        settings = getattr(runner, "engine_settings", None)
    except Exception:  # a report detail: never fail the probe over it
        return {}
    return dict(settings) if isinstance(settings, dict) else {}


def _sync(cuda: bool) -> None:
    import torch

    if cuda and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _device_in_use() -> int | None:
    import torch

    try:
        free, total = torch.cuda.mem_get_info()
    except RuntimeError:
        return None
    return int(total - free)


def _compare(report: ProbeReport, out: _Outputs, ref: _Outputs, real: torch.Tensor, tol: float,
             min_top1: float) -> None:
    h = report.hidden_size
    pairs = [("logits", out.logits[real], ref.logits[real])]
    for i, (a, b) in enumerate(zip(out.aux.split(h, dim=-1), ref.aux.split(h, dim=-1), strict=True)):
        pairs.append((f"aux[{i}] (layer {report.aux_layer_ids[i]})", a[real], b[real]))
    if out.embedding is not None and ref.embedding is not None:
        pairs.append(("input embedding", out.embedding, ref.embedding))
    for name, a, b in pairs:
        d = diff(name, a, b, tol)
        report.diffs.append(d)
        if not d.ok:
            report.failures.append(f"{name}: relative mean difference {d.rel_mean:.3g} exceeds the tolerance "
                                   f"{tol:g} (max abs {d.max_abs:.3g}, mean abs {d.mean_abs:.3g})")
    top1_engine, top1_ref = out.logits[real].argmax(dim=-1), ref.logits[real].argmax(dim=-1)
    report.top1_agreement = float((top1_engine == top1_ref).float().mean()) if top1_ref.numel() else None
    if report.top1_agreement is not None and report.top1_agreement < min_top1:
        report.failures.append(f"top-1 agreement {report.top1_agreement:.4f} is below {min_top1:g}")


def diff(name: str, a: torch.Tensor, b: torch.Tensor, tolerance: float) -> TensorDiff:
    """Differences of `a` from the reference `b`, in float32; relative to mean |b|."""
    a, b = a.float(), b.float()
    if a.numel() == 0:
        return TensorDiff(name, list(a.shape), 0.0, 0.0, 0.0, tolerance, True)
    d = (a - b).abs()
    max_abs, mean_abs = float(d.max()), float(d.mean())
    scale = float(b.abs().mean())
    rel = mean_abs / scale if scale > 0 else (0.0 if mean_abs == 0 else float("inf"))
    return TensorDiff(name, list(a.shape), max_abs, mean_abs, rel, tolerance, rel <= tolerance)


def _read_prompts(path: Path) -> list[list[int]] | list[str]:
    """A JSON list of token-id lists, a JSON list of strings, or a text file with one prompt per line; read as a
    regular file (a FIFO would block, /dev/zero never end) within `PROMPT_LIMITS` (a deeply nested list or a
    5000-digit id is one error line, not a traceback)."""
    import stat

    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: prompts must be a regular file")
        if st.st_size > PROMPT_LIMITS.max_bytes:
            raise ConfigError(f"{path}: {st.st_size} bytes of prompts; at most {PROMPT_LIMITS.max_bytes}")
        with path.open("rb") as fh:
            raw = fh.read(PROMPT_LIMITS.max_bytes + 1)  # the file may have grown since the stat
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read prompts ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read prompts (not UTF-8 text: {exc.reason} at byte {exc.start})") from exc
    data = None
    if text.lstrip()[:1] in ("[", "{", '"'):  # JSON, unless it does not parse (a text line may start with `[`)
        try:
            data = loads_bounded(raw, PROMPT_LIMITS, where=str(path), what="prompts")
        except ConfigError as exc:
            if not isinstance(exc.__cause__, json.JSONDecodeError):
                raise
    if data is None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ConfigError(f"{path}: no prompts (empty file)") from None
        return lines
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path}: prompts must be a non-empty JSON list of token-id lists or of strings")
    if all(isinstance(row, str) and row for row in data):
        return data
    for i, row in enumerate(data):
        if not (isinstance(row, list) and row
                and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in row)):
            raise ConfigError(f"{path}: prompt {i} is not a non-empty list of non-negative token ids "
                              f"(all prompts must be token-id lists, or all strings)")
    return data


def _tokenize(texts: list[str], target: str, trust_remote_code: bool) -> list[list[int]]:
    from eaglectl.checkpoint.target import load_tokenizer

    tok = load_tokenizer(target, trust_remote_code=trust_remote_code, purpose="tokenize text prompts",
                         hint="pass token ids instead: a JSON list of token-id lists")
    rows = [list(tok(t)["input_ids"]) for t in texts]
    for i, row in enumerate(rows):
        if not row:
            raise ConfigError(f"prompt {i} tokenizes to no tokens")
    return rows


def _build_rows(parsed: list[list[int]] | list[str] | None, prompts: Path | None, target: str, *, vocab: int,
                batch: int | None, seq_len: int | None, seed: int, trust_remote_code: bool
                ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Right-padded rows (ids padded with 0) and their mask, plus a description of where they came from."""
    import torch

    if parsed is None:
        b, s = batch or DEFAULT_BATCH, seq_len or DEFAULT_SEQ_LEN
        gen = torch.Generator().manual_seed(seed)
        # The first row is full length, the others shorter, so the mask (and right padding) is exercised.
        lengths = [s, *torch.randint(max(1, s // 2), s, (b - 1,), generator=gen).tolist()]
        rows = [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]
        source = f"{b} random row(s), seed {seed}"
    else:
        rows = _tokenize(parsed, target, trust_remote_code) if isinstance(parsed[0], str) else parsed
        rows = [list(r) for r in rows[:batch]] if batch else [list(r) for r in rows]
        if seq_len:
            rows = [r[:seq_len] for r in rows]
        for i, row in enumerate(rows):
            bad = [t for t in row if t >= vocab]
            if bad:
                raise ConfigError(f"prompt {i}: token id {bad[0]} is out of range for the target's vocab ({vocab})")
        source = f"{len(rows)} prompt(s) from {prompts}"
    width = max(len(r) for r in rows)
    if len(rows) * width > MAX_TOKENS:
        raise ConfigError(f"{prompts}: {len(rows)} prompt(s) padded to {width} tokens are more than {MAX_TOKENS} "
                          f"tokens", hint="pass --batch and --seq-len to take fewer and shorter rows")
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return input_ids, mask, source

