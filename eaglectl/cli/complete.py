"""Shell-completion callbacks. They run on every TAB press: file system only, no heavy imports."""

from __future__ import annotations

import os
import re
from pathlib import Path

_EPOCH = re.compile(r"^epoch_\d+_step_\d+$")


def _looks_like_checkpoint(d: Path) -> bool:
    try:
        if _EPOCH.match(d.name):
            return True
        names = set(os.listdir(d))
    except OSError:
        return False
    return bool(names & {"config.json", "draft_model.pt", "model"}) or any(_EPOCH.match(n) for n in names)


def _complete_dirs(incomplete: str, keep) -> list[str]:
    base, _, prefix = incomplete.rpartition("/")
    directory = Path(os.path.expanduser(base or ".")) if base or not incomplete.startswith("/") else Path("/")
    if incomplete.startswith("/") and not base:
        directory = Path("/")
    try:
        entries = sorted(e for e in os.scandir(directory) if e.name.startswith(prefix))
    except OSError:
        return []
    out = []
    for entry in entries:
        if entry.name.startswith(".") and not prefix.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if not is_dir:
            continue
        shown = f"{base}/{entry.name}" if base or incomplete.startswith("/") else entry.name
        path = Path(entry.path)
        if keep(path):
            out.append(shown)
        elif _has_subdirs(path):
            out.append(shown + "/")
    return out


def _has_subdirs(d: Path) -> bool:
    try:
        return any(e.is_dir() for e in os.scandir(d))
    except OSError:
        return False


def checkpoint_paths(incomplete: str) -> list[str]:
    """Directories that look like drafter checkpoints (config.json, draft_model.pt, model/, epoch_*_step_*)."""
    return _complete_dirs(incomplete, _looks_like_checkpoint)


def target_paths(incomplete: str) -> list[str]:
    """Directories holding a config.json (model directories)."""
    return _complete_dirs(incomplete, lambda d: (d / "config.json").is_file())


def _enum_values(enum_name: str, incomplete: str) -> list[str]:
    from eaglectl import enums

    return [m.value for m in getattr(enums, enum_name) if m.value.lower().startswith(incomplete.lower())]


def algorithms(incomplete: str) -> list[str]:
    return _enum_values("Algorithm", incomplete)


def engines(incomplete: str) -> list[str]:
    return _enum_values("Engine", incomplete)
