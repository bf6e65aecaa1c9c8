"""`bench`: one SGLang server per configuration (a baseline without speculation, then each speculative
configuration), every batch size measured against it, results appended as each measurement finishes.

Everything before the launches is `serve`'s (`eaglectl.serving.serve.prepare`: drafter resolution and export,
preflight, the installed-release check, passthrough refusals); each configuration's argv comes from
`serve.argv_for`, so bench launches exactly what `serve` would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from eaglectl import interrupts
from eaglectl.bench import client, metrics, results, sweep
from eaglectl.bench.metrics import Finding, Measurement
from eaglectl.bench.prompts import PromptSet
from eaglectl.bench.sweep import Pruned, SpecConfig
from eaglectl.enums import Algorithm, Layout, ServeDType, ServeEngine
from eaglectl.errors import LaunchError, UsageError
from eaglectl.interrupts import Terminated
from eaglectl.output import shell_join
from eaglectl.serving.options import ServeOptions
from eaglectl.serving.passthrough import SERVE_OWNED, refuse_overrides

BASELINE = "baseline"
# bench picks the port and host of every server it starts and polls them itself.
BENCH_OWNED = {**SERVE_OWNED, "--port": "--port", "--host": "--host"}
MAX_BATCH_SIZE = 4096
MAX_NEW_TOKENS = 1_000_000
MAX_REPEATS = 1000


@dataclass
class BenchOptions(ServeOptions):
    """What a sweep is asked to do. The launch settings (target, drafter, SGLang options, `--python`, the
    `/health` timeout, flags after `--`) are `ServeOptions`' own, defined once there; the speculative triple of
    serve's fields is set per configuration by the sweep, and serve's wait / smoke fields are not read."""

    steps: list[int] = field(default_factory=lambda: [3])
    topks: list[int] = field(default_factory=lambda: [1])
    draft_tokens: list[int] | None = None
    configs: list[SpecConfig] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    max_new_tokens: int = 128
    temperature: float = 0.0
    prompts: Path | None = None
    num_prompts: int | None = None
    results: Path | None = None
    resume: bool = False
    request_timeout: float = 600.0
    # Each (configuration, batch size): one warm-up pass over the prompts, not counted, then `repeats` repeats,
    # each of whole passes until it has measured at least `min_seconds` and `min_tokens`.
    min_seconds: float = 10.0
    min_tokens: int = 2000
    repeats: int = 3

    def serve_options(self) -> ServeOptions:
        """The launch settings as serve takes them, with the sweep's first configuration (what `prepare` checks)."""
        first = self.configs[0] if self.configs else SpecConfig(self.steps[0], self.topks[0], self.steps[0] + 1)
        launch = {f.name: getattr(self, f.name) for f in fields(ServeOptions)}
        return ServeOptions(**{**launch, "num_steps": first.steps, "topk": first.topk,
                               "num_draft_tokens": first.draft_tokens, "extra_args": list(self.extra_args)})


@dataclass
class ConfigRun:
    config: str  # "baseline" or "steps,topk,draft_tokens"
    argv: list[str]
    command: str
    steps: int | None = None
    topk: int | None = None
    draft_tokens: int | None = None
    status: str = "planned"  # planned | measured | resumed | failed | not run
    startup_seconds: float | None = None
    gpu_memory_gb: dict[str, float] | None = None
    error: str | None = None


@dataclass
class RequestPlan:
    endpoint: str
    streaming: bool
    prompts: int
    prompt_source: str
    prompt_kinds: dict[str, int]
    synthetic: bool
    batch_sizes: list[int]
    max_new_tokens: int
    temperature: float
    ignore_eos: bool
    warm_up: str
    requests_per_pass: int
    min_seconds: float
    min_tokens: int
    repeats: int


@dataclass
class Recommendation:
    config: str
    score: float  # geometric-mean speedup over the batch sizes
    speedup: dict[int, float | None]  # median speedup per batch size
    argv: list[str]
    command: str
    # "yes": its whole speedup spread is above 1.0 at every batch size; "no": below 1.0 at every one;
    # "uncertain" otherwise (per batch size in `verdicts`)
    beats_baseline: str
    verdicts: dict[int, str | None] = field(default_factory=dict)


@dataclass
class BenchResult:
    mode: str  # "print-only" | "run"
    target: str
    draft: str
    draft_layout: Layout
    draft_model_path: str
    algorithm: Algorithm | None
    exported: str | None
    sglang_version: str | None
    sglang_rules: str | None
    plan: RequestPlan
    configs: list[ConfigRun]
    pruned: list[Pruned]
    measurements: list[Measurement] = field(default_factory=list)
    best_per_batch_size: dict[int, str] = field(default_factory=dict)
    speculation_pays: dict[int, str] = field(default_factory=dict)  # per batch size: "yes" | "no" | "uncertain"
    scores: dict[str, Any] = field(default_factory=dict)
    recommended: Recommendation | None = None
    findings: list[Finding] = field(default_factory=list)
    results_file: str | None = None
    resumed: int = 0
    interrupted: str | None = None  # "SIGINT" | "SIGTERM" | "SIGHUP" when the sweep was stopped
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def bench(opts: BenchOptions, *, progress: Callable[[str], None] | None = None,
          server_log: Callable[[str], None] | None = None,
          on_warning: Callable[[str], None] | None = None) -> BenchResult:
    """Plan the sweep (print-only stops there), then run it. `progress` gets one line per step (with an ETA);
    `server_log` gets SGLang's log lines (default: kept for failure reports only); `on_warning` gets each
    warning as it arises, before a sweep that may run for long (they are in `result.warnings` too)."""
    from eaglectl.bench.prompts import load as load_prompts
    from eaglectl.checkpoint.target import load_target
    from eaglectl.serving.serve import argv_for, prepare

    say = progress or (lambda _m: None)
    if opts.engine is not ServeEngine.sglang:
        _sglang_only(opts)
    _check_load(opts)
    configs, pruned = sweep.expand(opts.steps, opts.topks, opts.draft_tokens, opts.configs)
    opts.configs = configs
    refuse_overrides(opts.extra_args, BENCH_OWNED, command="bench")
    target = load_target(opts.target)
    prompt_set = load_prompts(opts.prompts, opts.num_prompts, vocab_size=target.vocab_size, target=opts.target,
                              trust_remote_code=opts.trust_remote_code,
                              skip_tokenizer_init=(opts.skip_tokenizer_init
                                                   or "--skip-tokenizer-init" in opts.extra_args))
    serve_opts = opts.serve_options()
    said: list[str] = []  # said by the export, before it replaced what it warns of

    def early(message: str) -> None:
        said.append(message)
        if on_warning is not None:
            on_warning(message)

    prepared = prepare(serve_opts, on_warning=early)
    runs = [ConfigRun(BASELINE, argv := argv_for(serve_opts, prepared, None), shell_join(argv))]
    for c in configs:
        argv = argv_for(serve_opts, prepared, (c.steps, c.topk, c.draft_tokens))
        runs.append(ConfigRun(c.label, argv, shell_join(argv), c.steps, c.topk, c.draft_tokens))
    result = BenchResult(
        mode="print-only" if opts.print_only else "run", target=opts.target, draft=opts.draft,
        draft_layout=prepared.draft_layout, draft_model_path=prepared.draft_model_path, algorithm=prepared.algorithm,
        exported=prepared.exported, sglang_version=prepared.sglang_version, sglang_rules=prepared.sglang_rules,
        plan=_plan(opts, prompt_set), configs=runs, pruned=pruned, notes=[*prepared.notes, *prompt_set.notes],
        warnings=list(prepared.warnings))
    result.notes = [n for n in result.notes if not n.startswith("topk 1 needs")]  # pruned configs say it
    if prompt_set.synthetic:
        from eaglectl.bench.prompts import SYNTHETIC_WARNING

        result.notes.remove(SYNTHETIC_WARNING)
        result.warnings.append(SYNTHETIC_WARNING)
    for warning in result.warnings:
        if on_warning is not None and warning not in said:
            on_warning(warning)  # before the sweep, not after it
    if opts.temperature > 0:
        result.notes.append(f"temperature {opts.temperature}: outputs are sampled, so agreement with the baseline "
                            f"is not checked")
    if max(opts.batch_sizes) > len(prompt_set.prompts):
        result.notes.append(f"batch size {max(opts.batch_sizes)} > {len(prompt_set.prompts)} prompts: at most "
                            f"{len(prompt_set.prompts)} requests are in flight")
    if opts.print_only:
        return result
    rf = None
    if opts.results is not None:
        rf = results.open_results(opts.results, _fingerprint(opts, prompt_set), _header(opts, prompt_set),
                                  resume=opts.resume)
        result.results_file, result.resumed = str(opts.results), rf.resumed
    _sweep(opts, result, prompt_set, prepared.env, prepared.url, rf, say, server_log)
    _conclude(opts, result, prompt_set)
    return result


def _check_load(opts: BenchOptions) -> None:
    """The command line's own contradictions and limits: usage errors (exit 2), before anything is read."""
    if not opts.batch_sizes or max(opts.batch_sizes) > MAX_BATCH_SIZE:
        raise UsageError(f"--batch-size: between 1 and {MAX_BATCH_SIZE}")
    if not 1 <= opts.max_new_tokens <= MAX_NEW_TOKENS:
        raise UsageError(f"--max-new-tokens: between 1 and {MAX_NEW_TOKENS}")
    if not (opts.temperature >= 0 and math.isfinite(opts.temperature)):
        raise UsageError("--temperature: a finite number >= 0")
    if not (opts.min_seconds > 0 and math.isfinite(opts.min_seconds)):
        raise UsageError("--min-seconds: a finite number > 0")
    if not 1 <= opts.min_tokens <= MAX_NEW_TOKENS * MAX_BATCH_SIZE:
        raise UsageError("--min-tokens: at least 1")
    if not 1 <= opts.repeats <= MAX_REPEATS:
        raise UsageError(f"--repeats: between 1 and {MAX_REPEATS}")
    if opts.resume and opts.results is None:
        raise UsageError("--resume needs --results FILE (the file of the sweep to continue)")


def _plan(opts: BenchOptions, ps: PromptSet) -> RequestPlan:
    kinds: dict[str, int] = {}
    for p in ps.prompts:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    return RequestPlan(
        endpoint="/generate", streaming=True, prompts=len(ps.prompts), prompt_source=ps.source, prompt_kinds=kinds,
        synthetic=ps.synthetic, batch_sizes=list(opts.batch_sizes), max_new_tokens=opts.max_new_tokens,
        temperature=opts.temperature, ignore_eos=True,
        warm_up="one 8-token request after /health, then one pass over the prompts per batch size; not measured",
        requests_per_pass=len(ps.prompts), min_seconds=opts.min_seconds, min_tokens=opts.min_tokens,
        repeats=opts.repeats)


def _fingerprint(opts: BenchOptions, ps: PromptSet) -> str:
    """What makes two runs' measurements comparable: not the configurations or batch sizes (a resumed sweep may
    add some), but the target, drafter, prompts, load and server flags."""
    doc = {"target": opts.target, "draft": opts.draft, "algorithm": opts.algorithm.value if opts.algorithm else None,
           **({"aux_layer_ids": list(opts.aux_layer_ids)} if opts.aux_layer_ids is not None else {}),
           "prompts": [p.value for p in ps.prompts], "max_new_tokens": opts.max_new_tokens,
           "temperature": opts.temperature, "tp_size": opts.tp_size, "dtype": opts.dtype.value,
           "mem_fraction_static": opts.mem_fraction_static, "context_length": opts.context_length,
           "extra_args": opts.extra_args, "min_seconds": opts.min_seconds, "min_tokens": opts.min_tokens,
           "repeats": opts.repeats}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _header(opts: BenchOptions, ps: PromptSet) -> dict[str, Any]:
    return {"target": opts.target, "draft": opts.draft,
            "aux_layer_ids": list(opts.aux_layer_ids) if opts.aux_layer_ids is not None else None,
            "prompts": ps.source, "num_prompts": len(ps.prompts),
            "max_new_tokens": opts.max_new_tokens, "temperature": opts.temperature, "extra_args": opts.extra_args,
            "min_seconds": opts.min_seconds, "min_tokens": opts.min_tokens, "repeats": opts.repeats,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _record(m: Measurement) -> dict[str, Any]:
    from eaglectl.output import to_jsonable

    return {"kind": "measurement", **to_jsonable(m), "outputs": m.outputs}


def _from_record(rec: dict[str, Any]) -> Measurement | None:
    import dataclasses

    names = {f.name for f in dataclasses.fields(Measurement)}
    try:
        fields = {k: v for k, v in rec.items() if k in names}
        fields["agreement"] = None  # recomputed from the outputs
        for name in ("speedup", "speedup_min", "speedup_max", "beats_baseline"):
            fields[name] = None  # recomputed against the baseline
        return Measurement(**fields)
    except TypeError:
        return None


def _sweep(opts: BenchOptions, result: BenchResult, ps: PromptSet, env_extra: dict[str, str], url: str,
           rf: results.ResultsFile | None, say: Callable[[str], None],
           server_log: Callable[[str], None] | None) -> None:
    prompts = [p.value for p in ps.prompts]
    env = {**os.environ, **env_extra}
    durations: list[float] = []
    old_term = None
    with contextlib.suppress(ValueError):  # not the main thread (a test runner's); the CLI's handler is kept
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            old_term = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        todo_runs = []
        for run in result.configs:
            done = {bs: rf.done[(run.config, bs)] for bs in opts.batch_sizes if rf and (run.config, bs) in rf.done}
            for bs in opts.batch_sizes:
                if bs in done and (m := _from_record(done[bs])) is not None:
                    _add(result, m)
            if len(done) == len(opts.batch_sizes):
                run.status = "resumed"
            else:
                todo_runs.append((run, [bs for bs in opts.batch_sizes if bs not in done]))
        if result.resumed:
            say(f"resuming {result.results_file}: {result.resumed} measurement(s) already done")
        for n, (run, sizes) in enumerate(todo_runs, 1):
            eta = ""
            if durations:
                eta = f" (ETA {_duration(sum(durations) / len(durations) * (len(todo_runs) - n + 1))})"
            say(f"[{n}/{len(todo_runs)}] {run.config}: starting SGLang{eta}")
            t0 = time.monotonic()
            try:
                _run_config(opts, result, run, sizes, prompts, env, url, rf, say, server_log)
            except (KeyboardInterrupt, Terminated) as exc:  # Ctrl-C, SIGTERM, SIGHUP (an SSH session gone)
                result.interrupted = signal.Signals(interrupts.signum_of(exc)).name
                run.status = "failed" if run.status == "planned" else run.status
                run.error = run.error or "interrupted"
                say(f"interrupted: {run.config} stopped; finished measurements are kept")
                break
            durations.append(time.monotonic() - t0)
        for run in result.configs:
            if run.status == "planned":
                run.status = "not run"
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _raise_terminated(signum: int, _frame: Any) -> None:
    interrupts.on_signal(signum)


def _run_config(opts: BenchOptions, result: BenchResult, run: ConfigRun, sizes: list[int], prompts: list[Any],
                env: dict[str, str], url: str, rf: results.ResultsFile | None, say: Callable[[str], None],
                server_log: Callable[[str], None] | None) -> None:
    from eaglectl.serving.launcher import ServerProcess

    server = ServerProcess(run.argv, env, log=server_log or (lambda _line: None))
    try:
        server.start()
        try:
            run.startup_seconds = round(server.wait_healthy(url, timeout=opts.timeout), 2)
        except LaunchError as exc:
            _fail(run, rf, str(exc), say)
            return
        error = client.warm_up(url, prompts[0], timeout=opts.request_timeout)
        if error:
            _fail(run, rf, f"warm-up request failed: {error}; last log lines:\n{server.log_tail()}", say)
            return
        run.gpu_memory_gb = client.server_memory(url)
        say(f"  {run.config}: up after {run.startup_seconds:.1f} s")
        for bs in sizes:
            say(f"  {run.config}: measuring batch size {bs} ({len(prompts)} requests x {opts.max_new_tokens} tokens "
                f"a pass; {opts.repeats} repeat(s) of at least {opts.min_seconds:g} s and {opts.min_tokens} tokens, "
                f"after a warm-up pass)")
            repeats: list[list[tuple[list[client.RequestRecord], float]]] = []
            for n in range(opts.repeats + 1):  # pass 0: the warm-up, not counted
                passes: list[tuple[list[client.RequestRecord], float]] = []
                while True:
                    records, start, end = client.run_batch(url, prompts, batch_size=bs,
                                                           max_new_tokens=opts.max_new_tokens,
                                                           temperature=opts.temperature, timeout=opts.request_timeout)
                    errors = [f"prompt {r.index}: {r.error}" for r in records if r.error]
                    if errors:
                        tail = server.log_tail() if not server.alive() else ""
                        _fail(run, rf, f"batch size {bs}: {len(errors)} request(s) failed, first: {errors[0]}"
                              + (f"; SGLang exited; last log lines:\n{tail}" if tail else ""), say)
                        return
                    passes.append((records, end - start))
                    if n == 0 or (sum(w for _, w in passes) >= opts.min_seconds
                                  and sum(r.completion_tokens for recs, _ in passes for r in recs) >= opts.min_tokens):
                        break
                if n > 0:
                    repeats.append(passes)
                    rm = metrics.summarise_repeats(run.config, bs, [passes])
                    say(f"  {run.config} @ {bs}: repeat {n}/{opts.repeats}: {rm.tokens_per_s:.1f} tok/s over "
                        f"{rm.wall_s:.1f} s, {rm.output_tokens} tokens ({len(passes)} pass(es))")
            m = metrics.summarise_repeats(run.config, bs, repeats)
            _add(result, m)
            _compare(opts, result, m)
            if rf is not None:
                results.append(rf, {**_record(m), "startup_seconds": run.startup_seconds,
                                    "gpu_memory_gb": run.gpu_memory_gb})
            run.status = "measured"
            speed = (f", {m.speedup:.2f}x baseline ({m.speedup_min:.2f}-{m.speedup_max:.2f}, beats it: "
                     f"{m.beats_baseline})" if m.speedup is not None and m.speedup_min is not None
                     and m.speedup_max is not None else "")
            say(f"  {run.config} @ {bs}: median {m.tokens_per_s:.1f} tok/s{speed}"
                + (f", accept length {m.accept_length_mean:.2f}" if m.accept_length_mean is not None else ""))
    finally:
        server.stop()


def failure_reason(error: str | None) -> str:
    """What made a configuration fail, in one line: its error without the server's log tail."""
    lines = (error or "").splitlines()
    return lines[0].removesuffix("; last log lines:") if lines and lines[0] else "failed"


def unmeasured(result: BenchResult) -> list[tuple[str, str]]:
    """(configuration, why) for each configuration that failed, in sweep order."""
    return [(run.config, failure_reason(run.error)) for run in result.configs if run.status == "failed"]


def _fail(run: ConfigRun, rf: results.ResultsFile | None, error: str, say: Callable[[str], None]) -> None:
    run.status, run.error = "failed", error
    say(f"  {run.config}: failed: {failure_reason(error)}; the sweep goes on")
    if rf is not None:
        results.append(rf, {"kind": "failure", "config": run.config, "error": error})


def _add(result: BenchResult, m: Measurement) -> None:
    result.measurements = [x for x in result.measurements if (x.config, x.batch_size) != (m.config, m.batch_size)]
    result.measurements.append(m)


def _compare(opts: BenchOptions, result: BenchResult, m: Measurement) -> None:
    if m.config == BASELINE:
        return
    base = next((x for x in result.measurements if x.config == BASELINE and x.batch_size == m.batch_size), None)
    if base is None:
        return
    m.speedup_min, m.speedup, m.speedup_max, m.beats_baseline = metrics.spread(m, base)
    if opts.temperature == 0:
        m.agreement = metrics.agreement(m, base)


def _conclude(opts: BenchOptions, result: BenchResult, ps: PromptSet) -> None:
    order = {run.config: i for i, run in enumerate(result.configs)}
    result.measurements.sort(key=lambda m: (order.get(m.config, len(order)), m.batch_size))
    for m in result.measurements:
        _compare(opts, result, m)
    best, result.best_per_batch_size, result.scores, result.speculation_pays = metrics.recommend(
        result.measurements)
    if best is not None:
        c = sweep.parse_config(best)
        argv = serve_command(opts, c)
        mine = [m for m in result.measurements if m.config == best]
        verdicts = {m.batch_size: m.beats_baseline for m in mine}
        beats = ("yes" if all(v == "yes" for v in verdicts.values())
                 else "no" if all(v == "no" for v in verdicts.values()) else "uncertain")
        result.recommended = Recommendation(best, result.scores[best], {m.batch_size: m.speedup for m in mine}, argv,
                                            shell_join(argv), beats_baseline=beats, verdicts=verdicts)
    if opts.repeats == 1 and result.measurements:
        result.notes.append("--repeats 1: one repeat per measurement, so its spread is unknown; a verdict of "
                            "\"yes\" rests on a single repeat")
    result.findings = metrics.findings(result.measurements, greedy=opts.temperature == 0,
                                       max_new_tokens=opts.max_new_tokens, synthetic=ps.synthetic)


def _sglang_only(opts: BenchOptions) -> None:
    """bench measures SGLang servers (its numbers come from SGLang's /generate answers): say so, and how vLLM is
    served and measured instead, naming what was found for --python."""
    from eaglectl.errors import MissingDependencyError, UsageError
    from eaglectl.serving.vllm import INSTALL_HINT, installed_vllm

    try:
        found = installed_vllm(opts.python)
    except MissingDependencyError:
        raise MissingDependencyError(f"bench measures SGLang servers only (--engine sglang), and vLLM is not "
                                     f"importable by {opts.python} either", hint=INSTALL_HINT) from None
    serve = shell_join(["eaglectl", "serve", "--engine", "vllm", "--target", opts.target, "--draft", opts.draft])
    version = f"vLLM {found.version}" if found.version else "vLLM"
    raise UsageError(f"bench measures SGLang servers only; {version} is installed for "
                     f"{opts.python}: serve the drafter with `{serve}` and measure it with `vllm bench serve`",
                     hint="drop --engine vllm to benchmark with SGLang")


def serve_command(opts: BenchOptions, c: SpecConfig) -> list[str]:
    """The `eaglectl serve` command that serves configuration `c` with the flags this sweep ran under."""
    from eaglectl.serving.serve import same_named_flags

    argv = ["eaglectl", "serve", "--target", opts.target, "--draft", opts.draft]
    if opts.revision is not None:
        argv += ["--revision", opts.revision]
    if opts.draft_config is not None:
        argv += ["--draft-config", opts.draft_config]
    if opts.algorithm is not None:
        argv += ["--algorithm", opts.algorithm.value]
    if opts.aux_layer_ids is not None:
        argv += ["--aux-layer-ids", *map(str, opts.aux_layer_ids)]
    argv += ["--num-steps", str(c.steps), "--topk", str(c.topk), "--num-draft-tokens", str(c.draft_tokens)]
    if opts.tp_size != 1:
        argv += ["--tp-size", str(opts.tp_size)]
    if opts.dtype is not ServeDType.bfloat16:
        argv += ["--dtype", opts.dtype.value]
    argv += same_named_flags(opts)
    for flag, on in (("--disable-cuda-graph", opts.disable_cuda_graph),
                     ("--skip-tokenizer-init", opts.skip_tokenizer_init),
                     ("--trust-remote-code", opts.trust_remote_code)):
        if on:
            argv.append(flag)
    if opts.allow_longer_context:
        argv.append("--allow-longer-context")
    from eaglectl.serving.installed import is_this_interpreter

    if not is_this_interpreter(opts.python):
        argv += ["--python", opts.python]
    if opts.extra_args:
        argv += ["--", *opts.extra_args]
    return argv


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
