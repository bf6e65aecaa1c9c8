"""`eaglectl inspect`: what a drafter checkpoint is and what would go wrong serving it with SGLang."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eaglectl import output
from eaglectl.cli.finish import finish
from eaglectl.cli.options import CheckpointArg, DraftConfigOpt, JsonOpt, RevisionOpt, TargetOpt
from eaglectl.errors import CheckFailedError
from eaglectl.output import cell, safe

if TYPE_CHECKING:
    from rich.console import Console, JustifyMethod


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def inspect_command(path: CheckpointArg, target: TargetOpt = None, revision: RevisionOpt = None,
                    draft_config: DraftConfigOpt = None, json: JsonOpt = False) -> None:
    """Classify a drafter and list what SGLang would get wrong.

    Exit 1 on an error finding."""
    from eaglectl.inspection.report import inspect_checkpoint

    report = inspect_checkpoint(path, target=target, revision=revision, draft_config=draft_config)
    failure = None
    if not report.ok:  # the findings say what; the JSON document also says that the run failed, as any failure does
        errors = [f.code for f in report.findings if f.severity.value == "error"]
        counts = {code: errors.count(code) for code in dict.fromkeys(errors)}  # each code once, in order
        codes = ", ".join(code if n == 1 else f"{code} (x{n})" for code, n in counts.items())
        failure = CheckFailedError(f"{len(errors)} error finding(s): {codes}",
                                   hint=next((f.fix for f in report.findings if f.fix and f.code == errors[0]), None))
    finish("inspect", report, as_json=json, render=lambda c: render_report(c, report), failure=failure)


def render_report(console: Console, report) -> None:
    from rich.table import Table

    head = Table(title="Checkpoint", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    head.add_row("layout", report.layout.value)
    if report.algorithm:
        head.add_row("algorithm", cell(f"{report.algorithm.value} ({report.algorithm_reason})"))
    head.add_row("sglang-ready", "yes" if report.sglang_ready else "no")
    if report.vllm:
        head.add_row(f"vllm {report.vllm.release}", cell(vllm_line(report.vllm)))
    if report.hub:
        h = report.hub
        where = "headers read remotely" if h.headers_only else f"cached at {h.snapshot}"
        head.add_row("hub", cell(f"{h.repo_id}@{h.revision or 'main'} (commit {h.commit or '?'}; {where})"))
    console.print(head)
    # Paths on lines of their own, never folded inside a table cell: a copied path is the path.
    for key, value in [("source", report.source), *report.paths.items()]:
        if value:
            console.print(f"  [bold]{safe(key):<12}[/] {safe(value)}", soft_wrap=True)
    if report.config:
        cfg = Table(title="Config", show_header=False, title_justify="left")
        cfg.add_column(style="bold")
        cfg.add_column()
        for key, value in vars(report.config).items():
            if value is not None:
                cfg.add_row(key, cell(value))
        console.print(cfg)
    if report.tensors:
        t = Table(title="Tensors", title_justify="left")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("group", "left"), ("count", "right"), ("params", "right"), ("bytes", "right"), ("dtypes", "left"))
        for col, justify in columns:
            t.add_column(col, justify=justify)
        for g in report.tensors:
            t.add_row(cell(g.group), str(g.count), output.human_count(g.params), output.human_bytes(g.bytes),
                      cell(",".join(g.dtypes)))
        t.add_row("total", "", output.human_count(report.total_params), output.human_bytes(report.total_bytes), "",
                  style="bold")
        console.print(t)
    if report.loader_as_is:
        t = Table(title="SGLang loader, as stored", title_justify="left")
        t.add_column("releases", no_wrap=True, min_width=13)
        for col in ("loaded", "skipped", "uninit"):
            t.add_column(col, justify="right")
        for col in ("ignored keys", "from target"):
            t.add_column(col, overflow="fold")
        for v in report.loader_as_is:
            span = v.version if v.version == v.last else f"{v.version}–{v.last}"
            t.add_row(cell(span), str(v.loaded), str(len(v.skipped)), str(len(v.uninitialized)),
                      cell(", ".join(v.ignored_config) or "-"), cell(", ".join(v.from_target) or "-"))
        console.print(t)
    if report.sglang:
        s = report.sglang
        serves = ", ".join(s.serves) if s.serves else "no known release"
        console.print(f"SGLang after export: loads completely in {safe(serves)}"
                      + (f"; needs >= {safe(s.minimum)}" if s.minimum and s.needs else "")
                      + f" (newest known {safe(s.newest_known)})", soft_wrap=True)
    render_findings(console, report.findings)


def vllm_line(v) -> str:
    """vLLM's verdict in a few words (the reasons are in --json): as stored, after export, or neither."""
    if v.as_stored is not None and v.as_stored.ok:
        return "loads as stored"
    stored = f"as stored: {v.as_stored.summary}" if v.as_stored is not None else "export first"
    if v.after_export is not None and v.after_export.ok:
        how = " --force" if v.force else " --format speculators" if v.export_format == "speculators" else ""
        return f"loads after export{how} ({stored})"
    after = v.after_export.summary if v.after_export is not None else "export refuses the head"
    return f"no: after export {after}"


def render_findings(console: Console, findings) -> None:
    """Findings as a list, not a table: they are sentences and must stay readable at 80 columns."""
    if not findings:
        console.print("[green]No findings: SGLang loads this drafter as it is.[/]")
        return
    console.print("[bold]Findings[/]")
    rank = {"error": 0, "warning": 1, "info": 2}
    for f in sorted(findings, key=lambda f: rank.get(f.severity.value, 3)):  # the worst first, else as found
        sev = f.severity.value
        console.print(f"  [{SEVERITY_STYLE[sev]}]{sev:<7}[/] [bold]{safe(f.code)}[/]: {safe(f.message)}",
                      soft_wrap=True)
        if f.fix:
            console.print(f"          [dim]fix:[/] {safe(f.fix)}", soft_wrap=True)
