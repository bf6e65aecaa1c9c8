"""`eaglectl export`: write an SGLang-ready directory from any drafter checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eaglectl import interrupts, output
from eaglectl.cli.finish import EarlyWarnings, finish
from eaglectl.cli.options import (
    CONVERSION_PANEL,
    OUTPUT_PANEL,
    AlgorithmOpt,
    AuxLayerIdsOpt,
    CheckpointArg,
    DraftConfigOpt,
    ExportDTypeOpt,
    ExportFormatOpt,
    JsonOpt,
    RevisionOpt,
    size_text,
)
from eaglectl.cli.progress import byte_progress
from eaglectl.enums import ExportDType, ExportFormat
from eaglectl.output import safe

if TYPE_CHECKING:
    from rich.console import Console


def export_command(
    path: CheckpointArg,
    revision: RevisionOpt = None,
    draft_config: DraftConfigOpt = None,
    algorithm: AlgorithmOpt = None,
    aux_layer_ids: AuxLayerIdsOpt = None,
    fmt: ExportFormatOpt = ExportFormat.sglang,
    verifier: Annotated[str | None, typer.Option(
        "--verifier", metavar="NAME", show_default=False, rich_help_panel=CONVERSION_PANEL,
        help="--format speculators: the target's Hub id or path, written into the config as its verifier "
             "(`vllm serve DIR` needs a Hub id there).")] = None,
    dtype: ExportDTypeOpt = ExportDType.keep,
    drop_embeddings: Annotated[bool, typer.Option(
        "--drop-embeddings", rich_help_panel=CONVERSION_PANEL,
        help="Leave out the draft embeddings (SGLang uses the target's; refused for a draft narrower than its "
             "target, whose own embeddings SGLang keeps).")] = False,
    max_shard_size: Annotated[str, typer.Option(
        "--max-shard-size", metavar="SIZE", parser=size_text, rich_help_panel=CONVERSION_PANEL,
        help="Shard above this size, e.g. 500MB.")] = "5GB",
    output_dir: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="DIR", file_okay=False, rich_help_panel=OUTPUT_PANEL,
        help="A new or empty dir, or an earlier eaglectl export (default: a new sglang/ or speculators/ beside the "
             "checkpoint's files; ./<name>-sglang/ for a Hub repo id).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", "-f", rich_help_panel=OUTPUT_PANEL,
        help="Rewrite an up-to-date eaglectl export (replaces nothing eaglectl did not write).")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "-n", rich_help_panel=OUTPUT_PANEL, help="Show what would be written; write nothing.")] = False,
    json: JsonOpt = False,
) -> None:
    """Export a drafter that SGLang (and vLLM) load completely.

    The directory is verified after writing; --format speculators writes vLLM's native speculators layout instead."""
    from eaglectl.export.exporter import export_checkpoint

    interrupts.commit_ends_run()  # a signal once the export is in place does not fail the run
    early = EarlyWarnings("export")
    with byte_progress("exporting", enabled=not dry_run) as progress:
        report = export_checkpoint(
            path, output=output_dir, revision=revision, algorithm=algorithm, dtype=ExportDType(dtype).value,
            drop_embeddings=drop_embeddings, max_shard_size=max_shard_size, force=force, dry_run=dry_run,
            progress=progress, aux_layer_ids=list(aux_layer_ids) if aux_layer_ids else None,
            draft_config=draft_config, fmt=ExportFormat(fmt), verifier=verifier, on_warning=early)
    finish("export", report, as_json=json, render=lambda c: render_export(c, report),
           warnings=early.rest(report.warnings))


def render_export(console: Console, r) -> None:
    from rich.table import Table

    verb = {"written": "Exported", "unchanged": "Up to date", "dry-run": "Would export"}[r.action]
    console.print(f"[bold green]{verb}[/] {r.algorithm.value} drafter ({r.layout.value}) -> [bold]{safe(r.output)}[/]")
    t = Table(show_header=True, title_justify="left")
    t.add_column("file (in the output directory)", no_wrap=True)  # names, not paths: never folded mid-name
    t.add_column("bytes", justify="right")
    for f in r.files:
        name = Path(f.path).name if Path(f.path).parent == Path(r.output) else f.path
        t.add_row(output.cell(name), output.human_bytes(f.bytes))
    if r.files:
        console.print(t)
    count = {"written": f"{r.tensors_written} written", "dry-run": f"{r.tensors_written} would be written",
             "unchanged": f"{r.tensors_written} up to date (nothing written)"}[r.action]
    console.print(f"tensors: {count}, {len(r.renamed)} renamed, {len(r.dropped)} dropped, "
                  f"{len(r.generated)} generated; {output.human_bytes(r.bytes)} in {r.seconds:.2f} s")
    for src, dst in list(r.renamed.items())[:6]:
        console.print(f"  renamed  {safe(src)} -> {safe(dst)}")
    if len(r.renamed) > 6:
        console.print(f"  renamed  ... and {len(r.renamed) - 6} more (see --json)")
    for d in r.dropped:
        console.print(f"  [yellow]dropped[/]  {safe(d.name)}: {safe(d.reason)}")
    for name, how in r.generated.items():
        console.print(f"  built    {safe(name)} from {safe(how)}")
    for change in r.config_changes:
        console.print(f"  config   {safe(change)}")
    for v in r.verification:
        mark = "[green]ok[/]" if v.ok else "[red]FAILED[/]"
        detail = f" ({safe('; '.join(v.problems))})" if v.problems else ""
        engine = {"sglang": "SGLang", "vllm": "vLLM", "speculators": "speculators"}.get(v.engine, v.engine)
        label = "read back" if v.version == "read-back" else f"{engine} {safe(v.releases or v.version)} loader"
        console.print(f"  verify   {label}: {mark}{detail}")
    if r.format.value == "sglang":
        loads = ", ".join(r.sglang_releases) if r.sglang_releases else "no known release"
        console.print(f"  sglang   loads completely in SGLang {safe(loads)}")
    else:
        console.print("  sglang   not SGLang's layout (export without --format writes it)")
    if r.vllm:
        console.print(f"  vllm     {safe(r.vllm)}")
    if r.token_map:
        console.print(f"  token map {safe(r.token_map)} (EAGLE: pass as --speculative-token-map)")
    for n in r.notes:
        console.print(f"[dim]{safe(n)}[/]")
