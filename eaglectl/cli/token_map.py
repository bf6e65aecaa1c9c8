"""`eaglectl token-map`: materialise SGLang's speculative_token_map.pt from a meta file or d2t."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eaglectl import interrupts, output
from eaglectl.cli.finish import finish
from eaglectl.cli.options import OUTPUT_PANEL, CheckpointArg, DraftConfigOpt, JsonOpt
from eaglectl.output import safe

if TYPE_CHECKING:
    from rich.console import Console


def token_map_command(
    path: CheckpointArg,
    draft_config: DraftConfigOpt = None,
    output_file: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", rich_help_panel=OUTPUT_PANEL,
        help="Where to write (default: speculative_token_map.pt in the checkpoint's outer directory).")] = None,
    json: JsonOpt = False,
) -> None:
    """Write speculative_token_map.pt, validated.

    int64 target ids in draft-row order, from the meta file or d2t; SGLang uses the file for EAGLE and ignores it
    for EAGLE3."""
    from eaglectl.export.token_map import write_token_map

    interrupts.commit_ends_run()  # a signal once the file is in place does not fail the run
    report = write_token_map(path, output=output_file, draft_config=draft_config)
    finish("token-map", report, as_json=json, render=lambda c: _render(c, report),
           warnings=[] if report.sglang_uses_it else [report.note])  # EAGLE-3: SGLang reads d2t instead


def _render(console: Console, r) -> None:
    size = output.human_bytes(r.bytes)
    console.print(f"[bold green]Wrote[/] {safe(r.output)} ({r.draft_vocab} ids from {safe(r.ids_from)}; {size})")
    console.print(f"  first ids: {safe(r.first_ids)}")
    if r.sglang_uses_it:  # otherwise the note is the warning already on stderr: said once
        console.print(f"  {safe(r.note)}")
