"""Hub id or local path: one rule for every argument that may be either (a drafter, `--target`, `TARGET`).

An argument that names no existing file is a Hugging Face repo id only if nothing about it reads as a local
path: it does not start with `/`, `./`, `../` or `~`, its first component is not an existing directory here,
and it is a valid `namespace/name` repo id. Anything else is "no such file or directory", so a mistyped local
path (`demo/specforgee`, `./targt`, a missing `/x/target`) fails instead of passing through to SGLang as a
download.
"""

from __future__ import annotations

import os

from eaglectl.errors import CheckpointError

PATH_PREFIXES = ("/", "./", "../", "~")


def hub_id(source: str) -> str:
    """`source` as a Hub repo id, or a `CheckpointError` saying why it is a missing local path instead.
    Called for an argument that does not exist on disk; never touches the network."""
    if os.path.lexists(os.path.expanduser(source)):
        raise CheckpointError(f"{source}: broken symlink" if os.path.islink(source) else f"{source}: cannot access")
    missing = f"{source}: no such file or directory"
    if source in ("", ".", "..") or source.startswith(PATH_PREFIXES):
        raise CheckpointError(missing)
    first = source.split("/", 1)[0]
    if "/" in source and os.path.isdir(first):
        raise CheckpointError(f"{missing} ({first}/ is a local directory, so this is a path, not a Hugging Face "
                              f"repo id)")
    if source.count("/") != 1 or not _valid_repo_id(source):
        raise CheckpointError(f"{missing} (and not a Hugging Face repo id, which reads namespace/name)")
    return source


def _valid_repo_id(source: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True
