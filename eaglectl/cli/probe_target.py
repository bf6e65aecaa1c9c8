"""`eaglectl probe-target`: check that an engine produces the EAGLE-3 supervision the HF reference does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eaglectl import output
from eaglectl.cli import complete
from eaglectl.cli.finish import finish
from eaglectl.cli.options import (
    COMPARISON_PANEL,
    ENGINE_PANEL,
    INPUTS_PANEL,
    JsonOpt,
    choices,
    dtype_parser,
    in_range,
    mem_fraction,
    passthrough_args,
)
from eaglectl.enums import Compare, Engine, ServeDType
from eaglectl.errors import CheckFailedError
from eaglectl.output import cell, safe
from eaglectl.runner.probe import DEFAULT_BATCH, DEFAULT_MIN_TOP1, DEFAULT_SEQ_LEN, DEFAULT_TOLERANCE

if TYPE_CHECKING:
    from rich.console import Console, JustifyMethod


def _per_dtype(table: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in table.items())


MAX_WARMUP = 100


def probe_target_command(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(
        metavar="TARGET", help="Target model directory (or Hugging Face repo id).",
        autocompletion=complete.target_paths, show_default=False)],
    prompts: Annotated[Path | None, typer.Option(
        "--prompts", "-p", metavar="FILE", dir_okay=False, rich_help_panel=INPUTS_PANEL,
        help="JSON list of token-id lists (or of strings, or a text file with one prompt a line, tokenized with "
             "the target's tokenizer) instead of seeded random rows.")] = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", "-b", min=1, metavar="N", show_default=False, rich_help_panel=INPUTS_PANEL,
        help=f"Rows (default: {DEFAULT_BATCH} random rows, or every prompt).")] = None,
    seq_len: Annotated[int | None, typer.Option(
        "--seq-len", "-l", min=2, metavar="L", show_default=False, rich_help_panel=INPUTS_PANEL,
        help=f"Longest row; prompts are cut to it (default: {DEFAULT_SEQ_LEN} for random rows).")] = None,
    seed: Annotated[int, typer.Option("--seed", callback=in_range(-(2**63), 2**64 - 1),  # torch's seed range
                                      metavar="N", rich_help_panel=INPUTS_PANEL, help="Seed of the random rows.")] = 0,
    aux_layer_ids: Annotated[tuple[int, int, int] | None, typer.Option(
        "--aux-layer-ids", metavar="A B C", show_default=False, rich_help_panel=INPUTS_PANEL,
        help="Decoder layers whose outputs are captured (default: 1, N//2-1, N-4).")] = None,
    engine: Annotated[Engine, typer.Option(
        "--engine", "-e", case_sensitive=False, autocompletion=complete.engines, metavar="ENGINE",
        rich_help_panel=ENGINE_PANEL, help=f"{choices(Engine)}, the engine to probe; hf runs on CPU too.")
    ] = Engine.sglang,
    dtype: Annotated[ServeDType, typer.Option(
        "--dtype", parser=dtype_parser(ServeDType), metavar="DTYPE", autocompletion=complete.serve_dtypes,
        rich_help_panel=ENGINE_PANEL, help=f"Dtype of engine and reference: {choices(ServeDType)}; auto: the target "
                                           "config's.")] = ServeDType.bfloat16,
    tp_size: Annotated[int, typer.Option("--tp-size", min=1, metavar="N", rich_help_panel=ENGINE_PANEL,
                                         help="Tensor-parallel GPUs, sglang only.")] = 1,
    attention_backend: Annotated[str | None, typer.Option(
        "--attention-backend", metavar="NAME", autocompletion=complete.attention_backends, show_default=False,
        rich_help_panel=ENGINE_PANEL,
        help="SGLang's; probe with the one you serve with, e.g. fa3 on Hopper (default: triton, which runs "
             "everywhere).")] = None,
    mem_fraction_static: Annotated[float | None, typer.Option(
        "--mem-fraction-static", callback=mem_fraction, metavar="F", show_default=False, rich_help_panel=ENGINE_PANEL,
        help="GPU memory share, above 0, for SGLang's weights and KV (default: 0.6; the logits live outside "
             "it).")] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", rich_help_panel=ENGINE_PANEL,
        help="Let transformers / SGLang run the target's own modelling code.")] = False,
    warmup: Annotated[int, typer.Option("--warmup", callback=in_range(0, MAX_WARMUP),  # a typo must not run for hours
                                        metavar="N", rich_help_panel=ENGINE_PANEL,
                                        help="Untimed forwards before the timed one.")] = 1,
    compare: Annotated[Compare, typer.Option(
        "--compare", case_sensitive=False, metavar="REF", rich_help_panel=COMPARISON_PANEL,
        help=f"{choices(Compare)}: compare with the HF reference, or only run the engine.")] = Compare.hf,
    tolerance: Annotated[float | None, typer.Option(
        "--tolerance", callback=in_range(0.0), metavar="X", show_default=False, rich_help_panel=COMPARISON_PANEL,
        help=f"Largest allowed mean|engine - hf| / mean|hf| per tensor "
             f"(default: {_per_dtype(DEFAULT_TOLERANCE)}).")] = None,
    min_top1: Annotated[float | None, typer.Option(
        "--min-top1-agreement", callback=in_range(0.0, 1.0), metavar="X", show_default=False,
        rich_help_panel=COMPARISON_PANEL,
        help=f"Smallest allowed top-1 agreement (default: {_per_dtype(DEFAULT_MIN_TOP1)}).")] = None,
    json: JsonOpt = False,
) -> None:
    """Compare an engine's EAGLE-3 target outputs with HF's.

    Runs the target forward (logits + aux hidden states) on the engine and compares it with the Hugging Face
    reference; exit 1 when a difference exceeds the tolerance. Flags for `sglang.launch_server` go after `--`,
    e.g. --page-size 16."""
    from eaglectl.runner.probe import run_probe

    report = run_probe(target, engine=engine, aux_layer_ids=list(aux_layer_ids) if aux_layer_ids else None,
                       batch=batch, seq_len=seq_len, prompts=prompts, dtype=ServeDType(dtype).value, tp_size=tp_size,
                       compare=compare, tolerance=tolerance, min_top1_agreement=min_top1, seed=seed,
                       warmup=warmup, trust_remote_code=trust_remote_code, attention_backend=attention_backend,
                       mem_fraction_static=mem_fraction_static, sglang_flags=passthrough_args(ctx))
    failure = None
    if not report.ok:
        more = f" (and {len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
        failure = CheckFailedError(f"probe-target failed: {report.failures[0]}{more}")
    finish("probe-target", report, as_json=json, render=lambda c: _render(c, report), failure=failure)


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def _render(console: Console, r) -> None:
    from rich.table import Table

    head = Table(title="Target", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("target", cell(r.target))
    head.add_row("engine", f"{r.engine.value} (tp {r.tp_size})" if r.tp_size > 1 else r.engine.value)
    head.add_row("dtype", cell(r.dtype))
    head.add_row("layers / hidden / vocab", f"{r.num_layers} / {r.hidden_size} / {r.vocab_size}")
    head.add_row("aux layer ids", ", ".join(map(str, r.aux_layer_ids)))
    head.add_row("inputs", cell(f"{r.inputs}; {r.tokens} tokens, row lengths {r.row_lengths}"))
    for name, shape in r.shapes.items():
        head.add_row(cell(name), cell(shape))
    for label, run in (("engine", r.engine_run), ("reference", r.reference_run)):
        if run is not None and run.settings:
            head.add_row(cell(f"{label} settings ({run.engine})"),
                         cell(", ".join(f"{k}={v}" for k, v in run.settings.items())))
    console.print(head)
    if r.diffs:
        t = Table(title=f"Differences vs HF (tolerance {r.tolerance:g}, {r.tolerance_source})", title_justify="left")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("tensor", "left"), ("compared", "left"), ("max abs", "right"), ("mean abs", "right"),
            ("rel mean", "right"), ("", "left"))
        for col, justify in columns:
            t.add_column(col, justify=justify)
        for d in r.diffs:
            t.add_row(cell(d.name), cell(d.shape), _num(d.max_abs), _num(d.mean_abs), _num(d.rel_mean),
                      "[green]ok[/]" if d.ok else "[bold red]over[/]")
        console.print(t)
    if r.top1_agreement is not None:
        console.print(f"top-1 agreement: {r.top1_agreement:.4f} (minimum {r.min_top1_agreement:g})")
    perf = Table(title="Runs", title_justify="left")
    run_columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("run", "left"), ("device", "left"), ("dtype", "left"), ("load s", "right"), ("forward s", "right"),
        ("tokens/s", "right"), ("peak GPU mem", "right"))
    for col, justify in run_columns:
        perf.add_column(col, justify=justify, no_wrap=col == "run")
    for label, run in (("engine", r.engine_run), ("reference", r.reference_run)):
        if run is None:
            continue
        mem = output.human_bytes(run.peak_gpu_memory_bytes) if run.peak_gpu_memory_bytes is not None else "-"
        perf.add_row(cell(f"{label} ({run.engine})"), cell(run.device), cell(run.dtype), f"{run.load_s:.2f}",
                     f"{run.forward_s:.4f}", _num(run.tokens_per_s, ".0f"), mem)
    console.print(perf)
    for n in r.notes:
        console.print(f"[dim]note: {safe(n)}[/]", soft_wrap=True)
    if r.ok and r.reference_run is None:
        console.print("[green]The engine's outputs have the contract's shapes[/] (not compared with the HF reference).")
    elif r.ok:
        console.print("[green]The engine honours the EAGLE-3 target contract.[/]")
    else:
        console.print("[bold red]Failed:[/]")
        for f in r.failures:
            console.print(f"  {safe(f)}", soft_wrap=True)
