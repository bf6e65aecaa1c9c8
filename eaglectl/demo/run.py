"""`demo`: build the sample checkpoints and run the main job on one: inspect, export, the serve command.

The samples go into a new (or empty) directory only: demo never writes over files it did not make. The export goes
to a new `sglang/` directory beside the sample's files, as for any checkpoint; the sample stays as NeMo wrote it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from eaglectl.checks.report import InspectReport, inspect_checkpoint
from eaglectl.demo.samples import build_samples
from eaglectl.errors import OutputError
from eaglectl.export.exporter import ExportReport, export_checkpoint
from eaglectl.export.outputs import refuse_non_empty_dir
from eaglectl.sglang.serve import ServeOptions, prepare


@dataclass
class DemoResult:
    directory: Path
    samples: dict[str, Path]
    inspected: str
    report: InspectReport
    export: ExportReport
    after_export: InspectReport  # of the export's output directory
    serve_command: str
    steps: list[str] = field(default_factory=list)


def run_demo(directory: Path | None = None) -> DemoResult:
    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="eaglectl-demo-"))
    refuse_non_empty_dir(root, what="demo writes its samples only into a new or empty directory",
                         hint="pass a new directory, or none (a temp dir)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{root}: cannot create ({exc.strerror or exc})") from exc
    samples = build_samples(root)
    chosen, target = samples.paths["nemo-consolidated"], samples.paths["target"]
    report = inspect_checkpoint(str(chosen), target=str(target))
    exported = export_checkpoint(str(chosen))
    after = inspect_checkpoint(str(exported.output), target=str(target))
    served = prepare(ServeOptions(target=str(target), draft=str(chosen), print_only=True))
    return DemoResult(
        directory=root, samples=samples.paths, inspected=str(chosen), report=report, export=exported,
        after_export=after, serve_command=served.command,
        steps=[f"wrote {len(samples.paths)} sample checkpoints", f"inspected {chosen}",
               f"exported it to {exported.output} (the checkpoint itself left as it was)",
               "inspected the export", f"built the serve command (draft: {served.draft_model_path})"])

