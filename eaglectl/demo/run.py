"""`demo`: build the sample checkpoints and run the main job on one: inspect, export, the serve command.

The samples go into a new (or empty) directory only: demo never writes over files it did not make. The export goes
to a new `sglang/` directory beside the sample's files, as for any checkpoint; the sample stays as NeMo wrote it."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from eaglectl import __version__
from eaglectl.demo.samples import SampleSet, build_samples, sample_paths
from eaglectl.errors import OutputError
from eaglectl.export.atomic import write_bytes_atomic
from eaglectl.export.exporter import ExportReport, export_checkpoint
from eaglectl.export.outputs import refuse_non_empty_dir
from eaglectl.hub import expand_user
from eaglectl.inspection.report import InspectReport, inspect_checkpoint
from eaglectl.serving.options import ServeOptions
from eaglectl.serving.serve import prepare


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
    reused: bool = False  # the samples of an earlier demo in the same directory


MARKER = ".eaglectl-demo.json"  # what demo leaves in its directory: a later demo may reuse it


def default_directory() -> Path:
    """One fixed directory per user in the temp dir, reused by every `demo` without a DIR (no new temp dir each
    time; nothing in it is deleted: the samples are rebuilt only into a new or empty directory)."""
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"eaglectl-demo-{user}"


def earlier_demo(root: Path) -> bool:
    """`root` holds the samples of an earlier demo of this eaglectl version (its marker, read as a plain file), in
    a real directory of this user's (in a shared temp dir, another user's directory is never reused)."""
    from eaglectl.export.outputs import read_regular

    try:
        st = os.lstat(root)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return False
    data = read_regular(root / MARKER, 4096)
    try:
        marker = json.loads(data) if data is not None else None
    except ValueError:
        return False
    return isinstance(marker, dict) and marker.get("eaglectl_demo") == 1 and marker.get("version") == __version__


def run_demo(directory: Path | None = None) -> DemoResult:
    root = expand_user(directory, OutputError) if directory is not None else default_directory()
    reused = earlier_demo(root)
    if not reused:
        refuse_non_empty_dir(root, what="demo writes its samples only into a new or empty directory, or reuses "
                                         "an earlier demo's", hint="pass a new directory, or none")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{root}: cannot create ({exc.strerror or exc})") from exc
    samples = SampleSet(root, sample_paths(root)) if reused else build_samples(root)
    if not reused:
        write_bytes_atomic(root / MARKER, json.dumps({"eaglectl_demo": 1, "version": __version__}).encode())
    chosen, target = samples.paths["nemo-consolidated"], samples.paths["target"]
    report = inspect_checkpoint(str(chosen), target=str(target))
    exported = export_checkpoint(str(chosen))
    after = inspect_checkpoint(str(exported.output), target=str(target))
    served = prepare(ServeOptions(target=str(target), draft=str(chosen), print_only=True))
    return DemoResult(
        directory=root, samples=samples.paths, inspected=str(chosen), report=report, export=exported,
        after_export=after, serve_command=served.command, reused=reused,
        steps=[f"reused the {len(samples.paths)} sample checkpoints of an earlier demo" if reused else
               f"wrote {len(samples.paths)} sample checkpoints", f"inspected {chosen}",
               f"exported it to {exported.output} (the checkpoint itself left as it was)",
               "inspected the export", f"built the serve command (draft: {served.draft_model_path})"])

