"""The results file of a sweep: JSON lines, a header naming the benchmark, then one line per finished measurement
(or failed configuration), each appended with one write and fsynced, so a crash or Ctrl-C keeps everything that
finished and at worst truncates the line being written (ignored on --resume).

Output safety: eaglectl appends only to a results file it wrote itself (its header), and only with --resume;
without it an existing non-empty file is refused, never overwritten.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglectl.errors import OutputError
from eaglectl.jsonfile import JsonLimits, loads_bounded

FORMAT = "eaglectl-bench-results"
# 2: each measurement is repeats of passes over a minimum window (seconds, tokens), with its spread. A version-1
# file holds single-pass measurements, which are not comparable: it is refused, never mixed into a version-2 sweep.
VERSION = 2
MAX_RESULTS_BYTES = 256 * 1024 * 1024
LINE_LIMITS = JsonLimits(max_bytes=MAX_RESULTS_BYTES, max_containers=1_000_000, max_values=50_000_000, max_depth=8)


@dataclass
class ResultsFile:
    path: Path
    fingerprint: str
    done: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (config, batch size) -> record
    resumed: int = 0


def open_results(path: Path, fingerprint: str, header: dict[str, Any], *, resume: bool) -> ResultsFile:
    """Check `path` and, for a new file, write the header. With `resume`, the records already there whose
    benchmark (fingerprint) matches; a file of another benchmark, or not written by eaglectl, is refused."""
    rf = ResultsFile(path, fingerprint)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot use as results file ({exc.strerror or exc})") from exc
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path}: results file is not a regular file")
    if st is not None and st.st_size > 0:
        if not resume:
            raise OutputError(f"{path} exists and is not empty: eaglectl bench does not overwrite it",
                              hint="--resume continues the sweep it holds; or name another --results file")
        _read(rf)
        return rf
    _append(path, {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint, **header}, create=True)
    return rf


def _read(rf: ResultsFile) -> None:
    path = rf.path
    if os.stat(path).st_size > MAX_RESULTS_BYTES:
        raise OutputError(f"{path}: more than {MAX_RESULTS_BYTES} bytes: not a results file of eaglectl bench")
    with open(path, "rb") as fh:
        raw = fh.read(MAX_RESULTS_BYTES + 1)
    lines = raw.split(b"\n")
    complete = lines[:-1] if not raw.endswith(b"\n") else lines  # a line cut by a crash is dropped
    try:
        head = loads_bounded(complete[0], LINE_LIMITS, where=str(path), what="results header") if complete else None
    except Exception:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise OutputError(f"{path} is not a results file written by eaglectl bench: not appending to it",
                          hint="name another --results file")
    version = head.get("version")
    if version != VERSION:
        older = isinstance(version, int) and not isinstance(version, bool) and version < VERSION
        raise OutputError(
            f"{path} was written by {'an older' if older else 'another'} eaglectl bench (results version "
            f"{version!r}, this one writes {VERSION}): "
            + ("its single-pass measurements have no repeats or measured window, so they are not comparable with "
               "this sweep's: not resuming it" if older else "not resuming it"),
            hint="name another --results file (and rerun the sweep it held)")
    if head.get("fingerprint") != rf.fingerprint:
        raise OutputError(f"{path} holds another benchmark (target, drafter, prompts or load differ): not resuming it",
                          hint="name another --results file, or rerun with the options that wrote it")
    for n, line in enumerate(complete[1:], 2):
        if not line.strip():
            continue
        record = loads_bounded(line, LINE_LIMITS, where=f"{path} line {n}", what="results line")
        if isinstance(record, dict) and record.get("kind") == "measurement":
            key = (str(record.get("config")), int(record.get("batch_size", 0)))
            rf.done[key] = record
    rf.resumed = len(rf.done)


def append(rf: ResultsFile, record: dict[str, Any]) -> None:
    _append(rf.path, record, create=False)


def _append(path: Path, record: dict[str, Any], *, create: bool) -> None:
    """One `write` of one line on an O_APPEND descriptor, then fsync: the line is whole or (after a crash) cut
    at its end, never interleaved. A file whose last line was cut gets a newline first."""
    data = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write results ({exc.strerror or exc})") from exc
    try:
        size = os.fstat(fd).st_size
        if size and not create:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write results ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
