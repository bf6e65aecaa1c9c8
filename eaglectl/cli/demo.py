"""`eaglectl demo`: write sample checkpoints for every layout and run the main job on one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eaglectl.cli.finish import finish
from eaglectl.cli.options import JsonOpt
from eaglectl.output import printable, safe, shell_join

if TYPE_CHECKING:
    from rich.console import Console


def demo_command(
    directory: Annotated[Path | None, typer.Argument(
        metavar="DIR", show_default=False,
        help="A new or empty directory for the samples, or an earlier demo's, reused (default: eaglectl-demo-USER "
             "in the temp dir).",
        file_okay=False)] = None,
    json: JsonOpt = False,
) -> None:
    """Write sample drafters and show what eaglectl does with them.

    Samples in every layout eaglectl reads (NeMo, SpecForge, EAGLE, P-EAGLE) and a tiny target; then inspect,
    export and serve --print-only on one."""
    from eaglectl.demo.run import run_demo

    result = run_demo(directory)
    finish("demo", result, as_json=json, render=lambda c: _render(c, result), warnings=result.export.warnings)


def _render(console: Console, result) -> None:
    from eaglectl.cli.export import render_export
    from eaglectl.cli.inspect import render_findings, render_report

    reused = " (reused: an earlier demo's)" if result.reused else ""
    console.print(f"[bold]Samples in {safe(result.directory)}[/]{reused}")
    for name, path in result.samples.items():
        console.print(f"  {safe(name):<20} {safe(path)}")

    def cmd(*argv: object) -> str:  # as serve --print-only quotes: pasted into a shell, it runs as shown
        return safe(shell_join(["eaglectl", *map(str, argv)]))

    console.print(f"\n[bold]$ {cmd('inspect', result.inspected, '--target', result.samples['target'])}[/]")
    render_report(console, result.report)
    console.print(f"\n[bold]$ {cmd('export', result.inspected)}[/]")
    render_export(console, result.export)
    console.print(f"\n[bold]$ {cmd('inspect', result.export.output)}[/]  (the export: findings only)")
    render_findings(console, result.after_export.findings)
    serve = cmd("serve", "--target", result.samples["target"], "--draft", result.inspected, "--print-only")
    console.print(f"\n[bold]$ {serve}[/]")
    console.print(printable(result.serve_command), markup=False, highlight=False, soft_wrap=True)
