"""`demo`: build the sample checkpoints and run the main job on one of them."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglectl.inspection import InspectReport, inspect_checkpoint
from eaglectl.samples import build_samples


@dataclass
class DemoResult:
    directory: Path
    samples: dict[str, Path]
    inspected: str
    report: InspectReport
    steps: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def run_demo(directory: Path | None = None) -> DemoResult:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="eaglectl-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    samples = build_samples(root)
    chosen = samples.paths["nemo-consolidated"]
    report = inspect_checkpoint(str(chosen), target=str(samples.paths["target"]))
    return DemoResult(directory=root, samples=samples.paths, inspected=str(chosen), report=report,
                      steps=[f"wrote {len(samples.paths)} sample checkpoints", f"inspected {chosen}"])
