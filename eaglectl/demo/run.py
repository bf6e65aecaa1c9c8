"""`demo`: build the sample checkpoints and run the main job on one: inspect, export, the serve command.

The samples go into a new (or empty) directory only: demo never writes over files it did not make. The export goes
to a new `sglang/` directory beside the sample's files, as for any checkpoint; the sample stays as NeMo wrote it."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from eaglectl import __version__
from eaglectl.demo.samples import SampleSet, build_samples, sample_paths
from eaglectl.errors import OutputError
from eaglectl.export.atomic import output_path, write_bytes_atomic
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


def _write_samples(root: Path) -> SampleSet:
    """The samples and their marker, into `root` (absent or empty). A failure on the way (a full disk, Ctrl-C,
    SIGTERM) removes what this call created, the directories above `root` it made included, and leaves `root` as
    it was; only a complete set gets the marker a later demo reuses."""
    first_new = next((d for d in (*reversed(root.parents), root) if not os.path.lexists(d)), None)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{root}: cannot create ({exc.strerror or exc})") from exc
    try:
        samples = build_samples(root)
        write_bytes_atomic(root / MARKER, json.dumps({"eaglectl_demo": 1, "version": __version__}).encode())
    except BaseException as exc:
        _remove_written(root, first_new)
        if isinstance(exc, OSError):
            raise OutputError(f"{root}: write failed ({exc.strerror or exc}); nothing left behind") from exc
        raise
    return samples


def _remove_written(root: Path, first_new: Path | None) -> None:
    """Undo `_write_samples`: the first directory it created (with everything under it), or, in a directory that
    was empty before, every entry (all of them its own)."""
    import shutil

    if first_new is not None:
        shutil.rmtree(first_new, ignore_errors=True)
        return
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def run_demo(directory: Path | None = None) -> DemoResult:
    root = expand_user(directory, OutputError) if directory is not None else default_directory()
    output_path(root)  # a broken or looping symlink on the way is said as such (mkdir would say "File exists")
    reused = earlier_demo(root)
    if reused:
        samples = SampleSet(root, sample_paths(root))
    else:
        refuse_non_empty_dir(root, what="demo writes its samples only into a new or empty directory, or reuses "
                                         "an earlier demo's", hint="pass a new directory, or none")
        samples = _write_samples(root)
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

