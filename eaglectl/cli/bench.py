"""`eaglectl bench`: serve the target without and with the drafter, per configuration and batch size, and say
which configuration to serve."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eaglectl import output
from eaglectl.cli.finish import finish
from eaglectl.cli.options import (
    CONFIGS_PANEL,
    MEASUREMENT_PANEL,
    OUTPUT_PANEL,
    SERVER_PANEL,
    AlgorithmOpt,
    AllowLongerContextOpt,
    AttentionBackendOpt,
    AuxLayerIdsOpt,
    ContextLengthOpt,
    DisableCudaGraphOpt,
    DraftConfigOpt,
    DraftOpt,
    JsonOpt,
    MemFractionOpt,
    PythonOpt,
    RevisionOpt,
    ServedTargetOpt,
    ServeDTypeOpt,
    ServeEngineOpt,
    SkipTokenizerInitOpt,
    TpSizeOpt,
    TrustRemoteCodeOpt,
    above,
    in_range,
    passthrough_args,
)
from eaglectl.enums import ServeDType, ServeEngine
from eaglectl.errors import CheckFailedError, EaglectlError, UsageError
from eaglectl.output import cell, printable, safe
from eaglectl.serving.options import ServeOptions

if TYPE_CHECKING:
    from rich.console import Console

INTERRUPT_EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}
BAR_WIDTH = 40


class Interrupted(EaglectlError):
    """The sweep was stopped by a signal; what finished is reported (and kept in --results)."""


def bench_command(
    ctx: typer.Context,
    target: ServedTargetOpt,
    draft: DraftOpt,
    revision: RevisionOpt = None,
    draft_config: DraftConfigOpt = None,
    algorithm: AlgorithmOpt = None,
    aux_layer_ids: AuxLayerIdsOpt = None,
    steps: Annotated[str, typer.Option("--steps", metavar="N,N,...", rich_help_panel=CONFIGS_PANEL,
                                       help="Draft steps to sweep.")] = "3",
    topk: Annotated[str, typer.Option("--topk", metavar="K,K,...", rich_help_panel=CONFIGS_PANEL,
                                      help="Topk values to sweep.")] = "1",
    draft_tokens: Annotated[str | None, typer.Option(
        "--draft-tokens", metavar="N,N,...", show_default=False, rich_help_panel=CONFIGS_PANEL,
        help="Draft-token counts to sweep (default: steps + 1 for topk 1, else the fullest tree up to steps + 9).")
    ] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", metavar="S,K,N", rich_help_panel=CONFIGS_PANEL,
        help="Steps, topk, draft tokens of one configuration (repeatable); replaces the sweep.")] = None,
    batch_size: Annotated[str, typer.Option("--batch-size", metavar="B,B,...", rich_help_panel=MEASUREMENT_PANEL,
                                            help="Concurrent requests, one measurement each.")] = "1",
    prompts: Annotated[Path | None, typer.Option(
        "--prompts", metavar="FILE", dir_okay=False, show_default=False, rich_help_panel=MEASUREMENT_PANEL,
        help="JSON list or JSONL of strings, token-id lists or chats ([{role, content}, ...]) (default: seeded "
             "synthetic token ids).")] = None,
    num_prompts: Annotated[int | None, typer.Option(
        "--num-prompts", callback=in_range(1), metavar="N", show_default=False, rich_help_panel=MEASUREMENT_PANEL,
        help="Use the first N (default: all; synthetic: 16).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", callback=in_range(1), metavar="N",
                                                rich_help_panel=MEASUREMENT_PANEL,
                                                help="Tokens decoded per request.")] = 128,
    temperature: Annotated[float, typer.Option("--temperature", callback=in_range(0.0), metavar="T",
                                               rich_help_panel=MEASUREMENT_PANEL,
                                               help="0: greedy, outputs checked against the baseline's.")] = 0.0,
    min_seconds: Annotated[float, typer.Option(
        "--min-seconds", callback=above(0.0), metavar="SECONDS", rich_help_panel=MEASUREMENT_PANEL,
        help="Least measured time per repeat, in whole passes after a warm-up pass.")] = 10.0,
    min_tokens: Annotated[int, typer.Option("--min-tokens", callback=in_range(1), metavar="N",
                                            rich_help_panel=MEASUREMENT_PANEL,
                                            help="Least tokens generated per repeat.")] = 2000,
    repeats: Annotated[int, typer.Option("--repeats", callback=in_range(1, 1000), metavar="N",
                                         rich_help_panel=MEASUREMENT_PANEL,
                                         help="Repeats per configuration and batch size, for the spread.")] = 3,
    request_timeout: Annotated[float, typer.Option("--request-timeout", callback=above(0.0), metavar="SECONDS",
                                                   rich_help_panel=MEASUREMENT_PANEL,
                                                   help="Seconds per request.")] = 600.0,
    engine: ServeEngineOpt = ServeOptions.engine,
    python: PythonOpt = ServeOptions.python,
    host: Annotated[str, typer.Option("--host", metavar="ADDR", rich_help_panel=SERVER_PANEL,
                                      help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", callback=in_range(1, 65535), metavar="PORT",
                                      rich_help_panel=SERVER_PANEL,
                                      help="HTTP port, one server at a time.")] = 30000,
    tp_size: TpSizeOpt = ServeOptions.tp_size,
    dtype: ServeDTypeOpt = ServeOptions.dtype,
    attention_backend: AttentionBackendOpt = None,
    mem_fraction_static: MemFractionOpt = None,
    context_length: ContextLengthOpt = None,
    disable_cuda_graph: DisableCudaGraphOpt = False,
    skip_tokenizer_init: SkipTokenizerInitOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = ServeOptions.trust_remote_code,
    allow_longer_context: AllowLongerContextOpt = ServeOptions.allow_longer_context,
    timeout: Annotated[float, typer.Option("--timeout", callback=above(0.0), metavar="SECONDS",
                                           rich_help_panel=SERVER_PANEL,
                                           help="Wait for each server's /health.")] = 900.0,
    server_log: Annotated[bool, typer.Option(
        "--server-log", rich_help_panel=SERVER_PANEL,
        help="Stream server logs to stderr (default: only a failed server's).")] = False,
    results: Annotated[Path | None, typer.Option(
        "--results", metavar="FILE", dir_okay=False, rich_help_panel=OUTPUT_PANEL,
        help="JSONL file, a line per measurement as it finishes.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", rich_help_panel=OUTPUT_PANEL,
        help="Skip the measurements already in --results.")] = False,
    print_only: Annotated[bool, typer.Option(
        "--print-only", rich_help_panel=OUTPUT_PANEL,
        help="Print each server command and the request plan; run nothing.")] = False,
    json: JsonOpt = False,
) -> None:
    """Measure each configuration per batch size; recommend one.

    Serves the target without speculation (the baseline), then once per configuration: tokens/s, speedup, accept
    length, latency and greedy agreement per batch size. Arguments after `--` go to every server."""
    from eaglectl.bench.run import BenchOptions, bench
    from eaglectl.bench.sweep import parse_config, parse_int_list

    swept = [option for name, option in (("steps", "--steps"), ("topk", "--topk"), ("draft_tokens", "--draft-tokens"))
             if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"]
    if config and swept:  # one of them would be dropped without a word
        raise UsageError(f"--config replaces the --steps x --topk x --draft-tokens sweep, so {', '.join(swept)} "
                         f"would be ignored: pass either --config triples or the sweep")
    opts = BenchOptions(
        target=target, draft=draft, engine=ServeEngine(engine), revision=revision, draft_config=draft_config,
        algorithm=algorithm,
        aux_layer_ids=aux_layer_ids,
        steps=parse_int_list(steps, option="--steps"),
        topks=parse_int_list(topk, option="--topk"),
        draft_tokens=parse_int_list(draft_tokens, option="--draft-tokens") if draft_tokens is not None else None,
        configs=[parse_config(c) for c in config or []], batch_sizes=parse_int_list(batch_size, option="--batch-size"),
        max_new_tokens=max_new_tokens, temperature=temperature, prompts=prompts, num_prompts=num_prompts,
        min_seconds=min_seconds, min_tokens=min_tokens, repeats=repeats, results=results, resume=resume,
        print_only=print_only, host=host, port=port, tp_size=tp_size,
        dtype=ServeDType(dtype), attention_backend=attention_backend, disable_cuda_graph=disable_cuda_graph,
        skip_tokenizer_init=skip_tokenizer_init,
        mem_fraction_static=mem_fraction_static, context_length=context_length, trust_remote_code=trust_remote_code,
        allow_longer_context=allow_longer_context, python=python, timeout=timeout, request_timeout=request_timeout,
        extra_args=passthrough_args(ctx))
    def log(line: str) -> None:
        sys.stderr.write(line)

    result = bench(opts, progress=output.note, server_log=log if server_log else None, on_warning=output.warn)
    for n in result.notes:
        output.note(n)
    failure: EaglectlError | None = None
    if result.interrupted:
        failure = Interrupted(f"interrupted ({result.interrupted}): {len(result.measurements)} measurement(s) finished"
                              + (f", kept in {result.results_file}" if result.results_file else ""),
                              hint="rerun with --resume to continue" if result.results_file else None)
        failure.exit_code = INTERRUPT_EXIT[result.interrupted]
    elif result.mode == "run" and not result.measurements:
        failure = CheckFailedError(_nothing_measured(result))
    finish("bench", result, as_json=json, render=lambda c: _render(c, result), failure=failure)


MAX_REASONS = 4  # configurations whose reason the error line names (the text and --json have every one)


def _nothing_measured(r) -> str:
    """The error of a sweep in which no server could be measured: why, per configuration."""
    from eaglectl.bench.run import unmeasured

    reasons = unmeasured(r)
    more = f"; and {len(reasons) - MAX_REASONS} more" if len(reasons) > MAX_REASONS else ""
    why = "; ".join(f"{config}: {reason}" for config, reason in reasons[:MAX_REASONS]) + more
    return f"no configuration could be measured: every server failed ({why})" if why else \
        "no configuration could be measured"


def _render(console: Console, r) -> None:
    if r.mode == "print-only":
        _render_plan(console, r)
        return
    if not r.measurements:  # an empty table would say nothing: why each configuration went unmeasured instead
        _render_unmeasured(console, r)
    else:
        _render_table(console, r)
        _render_chart(console, r)
    for run in r.configs if r.measurements else ():
        if run.status == "failed":
            console.print(f"[red]{safe(run.config)} failed:[/]")
            for line in (run.error or "").splitlines():
                console.print("  " + printable(line), markup=False, highlight=False)
    for f in r.findings:
        colour = "yellow" if f.severity == "warning" else "cyan"
        console.print(f"[{colour}]{f.severity}[/] [{safe(f.code)}] {safe(f.message)}")
        for cause in f.causes:
            console.print(f"  - {safe(cause)}")
    if r.recommended:
        rec = r.recommended
        verdict = {
            "yes": " [green](beats the baseline at every batch size over every repeat)[/]",
            "no": " [yellow](slower than the baseline: serving without it is faster)[/]",
        }.get(rec.beats_baseline, " [yellow](not a sure win: its speedup spread reaches 1.0x at batch size "
              + ", ".join(str(b) for b, v in rec.verdicts.items() if v != "yes") + ")[/]")
        console.print(f"\nRecommended: [bold]{safe(rec.config)}[/] (steps, topk, draft tokens), geometric-mean "
                      f"median speedup {rec.score:.2f}x{verdict}")
        console.print(printable(rec.command), markup=False, highlight=False, soft_wrap=True)
    elif r.measurements:
        console.print("\nNo recommendation: no speculative configuration was measured at every batch size beside the "
                      "baseline.")


def _render_unmeasured(console: Console, r) -> None:
    from eaglectl.bench.run import failure_reason

    console.print("[bold]No configuration was measured:[/]")
    for run in r.configs:
        if run.status != "failed":
            continue
        console.print(f"  {safe(run.config)}: [red]{safe(failure_reason(run.error))}[/]")
        for line in (run.error or "").splitlines()[1:]:  # the server's log tail
            console.print("    " + printable(line), markup=False, highlight=False)


def _render_plan(console: Console, r) -> None:
    from rich.table import Table

    for run in r.configs:
        console.print(f"[bold]{safe(run.config)}[/]")
        console.print(printable(run.command), markup=False, highlight=False, soft_wrap=True)
    for p in r.pruned:
        console.print(f"[dim]pruned {safe(p.config.label)}: {safe(p.reason)}[/]")
    plan = r.plan
    t = Table(show_header=False, title="Request plan", title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    kinds = ", ".join(f"{n} {k}" for k, n in plan.prompt_kinds.items())
    for key, value in (("endpoint", f"POST {plan.endpoint}, streamed"), ("prompts", f"{plan.prompts} ({kinds})"),
                       ("source", plan.prompt_source), ("batch sizes", ", ".join(map(str, plan.batch_sizes))),
                       ("max new tokens", f"{plan.max_new_tokens} (ignore_eos)"),
                       ("temperature", str(plan.temperature)), ("warm-up", plan.warm_up),
                       ("per pass", f"{plan.requests_per_pass} requests"),
                       ("per measurement", f"{plan.repeats} repeat(s), each of whole passes until at least "
                                           f"{plan.min_seconds:g} s and {plan.min_tokens} tokens")):
        t.add_row(key, cell(value))
    console.print(t)


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _render_table(console: Console, r) -> None:
    from rich.table import Table

    runs = {run.config: run for run in r.configs}
    t = Table(title="Benchmark (median (min-max) over repeats; bold green: the fastest per batch size whose whole "
                    "speedup spread is above 1.0x, else the baseline)", title_justify="left")
    for col in ("config", "batch", "tok/s", "speedup", "beats base", "window", "tok/s/req", "TTFT p50/p99 ms",
                "ITL p50/p99 ms", "accept mean/p50/p90", "agreement", "start s", "GPU GB"):
        t.add_column(col, justify="left" if col == "config" else "right")
    for m in r.measurements:
        run = runs.get(m.config)
        a = m.agreement
        agree = "-" if a is None else f"{a.exact}/{a.compared}" + (
            f" (div@{a.median_first_divergence:g})" if a.median_first_divergence is not None else "")
        mem = run.gpu_memory_gb if run else None
        best = r.best_per_batch_size.get(m.batch_size) == m.config
        t.add_row(cell(m.config), str(m.batch_size), _spread(m.tokens_per_s, m.tokens_per_s_min, m.tokens_per_s_max),
                  _spread(m.speedup, m.speedup_min, m.speedup_max, ".2f"), _fmt(m.beats_baseline, ""),
                  f"{m.repeats}x, {m.wall_s:.1f} s, {m.output_tokens} tok", _fmt(m.per_request_tokens_per_s),
                  f"{_fmt(m.ttft_p50_ms)}/{_fmt(m.ttft_p99_ms)}",
                  f"{_fmt(m.itl_p50_ms, '.2f')}/{_fmt(m.itl_p99_ms, '.2f')}",
                  f"{_fmt(m.accept_length_mean, '.2f')}/{_fmt(m.accept_length_p50, '.1f')}/"
                  f"{_fmt(m.accept_length_p90, '.1f')}", agree,
                  _fmt(run.startup_seconds if run else None), _fmt(sum(mem.values()) if mem else None, ".2f"),
                  style="bold green" if best else None)
    console.print(t)
    if r.speculation_pays:
        word = {"yes": "pays", "no": "stops paying", "uncertain": "uncertain"}
        console.print("Speculation per batch size: " + "; ".join(
            f"{bs}: {word.get(v, v)} ({safe(r.best_per_batch_size.get(bs, '-'))})"
            for bs, v in sorted(r.speculation_pays.items())))


def _spread(mid, lo, hi, spec: str = ".1f") -> str:
    if mid is None or lo is None or hi is None:
        return _fmt(mid, spec)
    return f"{format(mid, spec)} ({format(lo, spec)}-{format(hi, spec)})"


def _render_chart(console: Console, r) -> None:
    rows = [m for m in r.measurements if m.speedup is not None]
    if not rows:
        return
    top = max(max(m.speedup for m in rows), 1.0)
    console.print("Speedup vs baseline (| marks 1.0x)")
    width = max(len(m.config) for m in rows)
    one = round(BAR_WIDTH / top)
    for bs in sorted({m.batch_size for m in rows}):
        console.print(f"batch size {bs}")
        for m in (m for m in rows if m.batch_size == bs):
            n = round(BAR_WIDTH * m.speedup / top)
            bar = "".join("|" if i == one - 1 and i >= n else ("█" if i < n else " ") for i in range(max(n, one)))
            colour = {"yes": "green", "no": "red"}.get(m.beats_baseline or "", "yellow")
            console.print(f"  {safe(m.config.ljust(width))} [{colour}]{bar}[/] {m.speedup:.2f}x "
                          f"({_fmt(m.speedup_min, '.2f')}-{_fmt(m.speedup_max, '.2f')}, beats baseline: "
                          f"{safe(m.beats_baseline or '-')})")
