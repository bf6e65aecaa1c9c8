"""`demo`: build the sample checkpoints and run the main job on one: inspect, export, the serve command."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from eaglectl.checks.report import InspectReport, inspect_checkpoint
from eaglectl.demo.samples import build_samples
from eaglectl.export.exporter import ExportReport, export_checkpoint
from eaglectl.sglang.serve import ServeOptions, prepare


@dataclass
class DemoResult:
    directory: Path
    samples: dict[str, Path]
    inspected: str
    report: InspectReport
    export: ExportReport
    after_export: InspectReport
    serve_command: str
    steps: list[str] = field(default_factory=list)


def run_demo(directory: Path | None = None) -> DemoResult:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="eaglectl-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    samples = build_samples(root)
    chosen, target = samples.paths["nemo-consolidated"], samples.paths["target"]
    report = inspect_checkpoint(str(chosen), target=str(target))
    exported = export_checkpoint(str(chosen))
    after = inspect_checkpoint(str(chosen), target=str(target))
    served = prepare(ServeOptions(target=str(target), draft=str(chosen), print_only=True))
    return DemoResult(
        directory=root, samples=samples.paths, inspected=str(chosen), report=report, export=exported,
        after_export=after, serve_command=served.command,
        steps=[f"wrote {len(samples.paths)} sample checkpoints", f"inspected {chosen}",
               f"exported it to {exported.output}", "inspected it again", "built the serve command"])
