"""A Hugging Face Hub cache written by hand, laid out exactly as huggingface_hub lays it out, so tests resolve Hub
ids through the library itself without a network:

    <HF_HOME>/hub/models--<org>--<name>/
        blobs/<etag>                      file contents, named by their etag (sha256 for LFS files, the git blob
                                          sha1 for small ones)
        refs/<revision>                   the commit hash a branch points at (no newline)
        snapshots/<commit>/<file>         relative symlinks ../../blobs/<etag>
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".pt")


def repo_folder(hub_cache: Path, repo_id: str) -> Path:
    return hub_cache / ("models--" + repo_id.replace("/", "--"))


def etag(name: str, data: bytes) -> str:
    if name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def cache_repo(hub_cache: Path, repo_id: str, files: dict[str, bytes], *, commit: str = "c0ffee" * 6 + "0123",
               ref: str | None = "main") -> Path:
    """Write `files` as one cached commit of `repo_id` (and point `ref` at it); returns the snapshot folder."""
    folder = repo_folder(hub_cache, repo_id)
    snapshot = folder / "snapshots" / commit
    for name, data in files.items():
        blob = folder / "blobs" / etag(name, data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return snapshot


def cache_dir_of(directory: Path) -> dict[str, bytes]:
    """The top-level files of a local checkpoint directory, as `cache_repo` takes them."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def tree_bytes(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under `root` (links as their targets, files as their bytes): equal before and after means
    nothing in the cache changed."""
    out: dict[str, tuple[str, bytes]] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p).encode())
        elif p.is_file():
            out[rel] = ("file", p.read_bytes())
        else:
            out[rel] = ("dir", b"")
    return out
