"""Where eaglectl may write: the one set of rules every command that writes (export, token-map, serve, demo) obeys.

eaglectl replaces only what eaglectl wrote, and never writes over, into or around its input:
- an output is refused when it is one of the source checkpoint's files or directories, contains one, or lies
  inside one of its files (paths compared after following symlinks, as the link itself, and by the identity
  (st_dev, st_ino) of every directory on both paths: a bind mount is another path to the same one); a new directory
  inside the checkpoint's outer directory is allowed: the default export goes there;
- a Hub drafter's source is the Hugging Face cache holding it: nothing is written anywhere inside that cache
  (the library owns its layout: blobs, refs, snapshots of links);
- an existing output directory is replaced only when it is empty or a previous eaglectl export: its manifest is
  in eaglectl's form and the directory holds nothing but the regular files that manifest lists;
- an existing single-file output is replaced only when the caller recognises it as its own (a token map is
  recognised by its bytes);
- a directory that receives several files not written as one export (demo's samples) must be new or empty;
- anything read from an output is read as a size-capped regular file, never following a symlink (a FIFO there
  would otherwise block the read forever).
`--force` never relaxes these rules: it only re-writes an export that is up to date.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eaglectl.enums import Layout
from eaglectl.errors import ConfigError, OutputError
from eaglectl.export.atomic import LOCK_TAG, OLD_TAG, STAGE_TAG, is_own_entry, killed_move_names
from eaglectl.jsonfile import CONFIG_LIMITS, config_int, loads_bounded

if TYPE_CHECKING:
    from eaglectl.checkpoint.resolve import Checkpoint

MANIFEST = "eaglectl_export.json"
EXPORT_DIR = "sglang"  # the default export: a new directory beside the checkpoint's files
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# What exports of eaglectl versions whose manifest did not list its files wrote: replaced only if nothing else is there.
LEGACY_EXPORT_FILES = re.compile(
    r"config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|speculative_token_map\.pt|"
    + re.escape(MANIFEST))
NEW_DIR_HINT = "pass --output with a new or empty directory, or remove this one yourself"


@dataclass(frozen=True)
class SourcePaths:
    """Every path a checkpoint is read from, each as its real path and as the link itself (parents resolved)."""

    files: frozenset[str]
    dirs: frozenset[str]
    sealed: frozenset[str] = frozenset()  # directories no output may be in (the Hub cache)
    # The same paths by identity, (st_dev, st_ino): a bind mount or any other alias of a directory has another path
    # but the same identity. Each: identity -> the path, for messages.
    file_ids: tuple[tuple[Identity, str], ...] = ()
    dir_ids: tuple[tuple[Identity, str], ...] = ()
    above_ids: tuple[tuple[Identity, str], ...] = ()  # every directory above a source path -> that source path
    sealed_ids: tuple[tuple[Identity, str], ...] = ()
    parents_of_files: tuple[tuple[Identity, str], ...] = ()  # the directory holding each source file -> the file


Identity = tuple[int, int]


def _forms(p: Path) -> set[str]:
    a = os.path.abspath(p)
    return {os.path.realpath(a), os.path.join(os.path.realpath(os.path.dirname(a)), os.path.basename(a))}


def _identity(path: str) -> Identity | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _chain(path: str) -> list[tuple[Identity, str]]:
    """(identity, path) of `path` when it exists, then of every directory above it up to the root."""
    p = os.path.realpath(os.path.abspath(path))
    found = []
    while True:
        ident = _identity(p)
        if ident is not None:
            found.append((ident, p))
        parent = os.path.dirname(p)
        if parent == p:
            return found
        p = parent


def source_paths(ckpt: Checkpoint) -> SourcePaths:
    """The files (weights, shard index, config, meta) and directories (model dir, outer dir) of a checkpoint."""
    files: set[str] = set()
    ws = ckpt.weights
    meta = ckpt.meta
    for f in [*(ws.files if ws else []), ws.index_file if ws else None, ckpt.config_path, meta.path if meta else None]:
        if f is not None:
            files |= _forms(Path(f))
    dirs: set[str] = set()
    for d in (ckpt.model_dir, ckpt.root):
        if d is not None:
            dirs |= _forms(Path(d))
    cache = ckpt.hub.cache if ckpt.hub is not None else None
    file_ids: list[tuple[Identity, str]] = []
    dir_ids: list[tuple[Identity, str]] = []
    above: list[tuple[Identity, str]] = []
    parents: list[tuple[Identity, str]] = []
    for paths, ids in ((dirs, dir_ids), (files, file_ids)):  # directories first: named first in messages
        for p in sorted(paths):
            chain = _chain(p)
            if chain and chain[0][1] == os.path.realpath(p):
                ids.append((chain[0][0], p))
                above += [(ident, p) for ident, _ in chain[1:]]
                if paths is files and len(chain) > 1:
                    parents.append((chain[1][0], p))
    sealed_ids = [(ident, str(cache)) for ident, _ in _chain(str(cache))[:1]] if cache else []
    return SourcePaths(frozenset(files), frozenset(dirs), frozenset(_forms(Path(cache)) if cache else ()),
                       tuple(file_ids), tuple(dir_ids), tuple(above), tuple(sealed_ids), tuple(parents))


def _inside(path: str, parent: str) -> bool:
    return path != parent and path.startswith(parent.rstrip(os.sep) + os.sep)


SOURCE_HINT = "choose an output outside the checkpoint's own files (the default is a new sglang/ directory beside them)"


def refuse_source_overlap(out: Path, src: SourcePaths, *, hint: str = SOURCE_HINT) -> None:
    """Refuse an output that is a source path, contains one, lies inside a source file, or whose staging / lock /
    backup names beside it are a source path (those are removed by the next run)."""
    o = os.path.realpath(out)
    beside = os.path.dirname(o)
    leftovers = (f".{os.path.basename(o)}{STAGE_TAG}", f".{os.path.basename(o)}{OLD_TAG}",
                 f".{os.path.basename(o)}{LOCK_TAG}")
    for s in sorted(src.sealed):
        if o == s or _inside(o, s):
            raise OutputError(f"{out}: lies in the Hugging Face cache {s}, which holds the source drafter; eaglectl "
                              f"never writes into it", hint="pass --output with a directory outside the cache (the "
                                                            "default for a Hub drafter is ./<name>-sglang/)")
    for s in sorted(src.files | src.dirs):
        if o == s:
            kind = "file" if s in src.files else "directory"
            raise OutputError(f"{out}: is a {kind} of the source checkpoint; eaglectl never writes over its input",
                              hint=hint)
        if _inside(s, o):
            raise OutputError(f"{out}: contains the source checkpoint ({s}); writing there would replace it",
                              hint=hint)
        if s in src.files and _inside(o, s):
            raise OutputError(f"{out}: lies inside the source file {s}", hint=hint)
        if os.path.dirname(s) == beside and os.path.basename(s).startswith(leftovers):
            raise OutputError(f"{out}: the source file {s} has the name of eaglectl's temporary files for this "
                              f"output (they are removed)", hint=hint)
    _refuse_aliases(out, src, leftovers, hint)


def _refuse_aliases(out: Path, src: SourcePaths, leftovers: tuple[str, ...], hint: str) -> None:
    """The rules of `refuse_source_overlap` by identity, (st_dev, st_ino), of `out` and of every directory above
    it: an output reached through a bind mount or another alias of a source directory is the same directory."""
    chain = _chain(str(out))
    o = os.path.realpath(out)
    own = chain[0][0] if chain and chain[0][1] == o else None  # None: `out` does not exist yet
    above = {ident for ident, p in chain if p != o}
    sealed = dict(src.sealed_ids)
    for ident, _ in chain:
        if ident in sealed:
            raise OutputError(f"{out}: lies in the Hugging Face cache {sealed[ident]} (seen through another path), "
                              f"which holds the source drafter; eaglectl never writes into it",
                              hint="pass --output with a directory outside the cache (the default for a Hub "
                                   "drafter is ./<name>-sglang/)")
    if own is not None:
        for kind, ids in (("file", src.file_ids), ("directory", src.dir_ids)):
            for ident, s in ids:
                if ident == own:
                    raise OutputError(f"{out}: is the {kind} {s} of the source checkpoint, seen through another "
                                      f"path; eaglectl never writes over its input", hint=hint)
        for ident, s in src.above_ids:
            if ident == own:
                raise OutputError(f"{out}: contains the source checkpoint ({s}, seen through another path); writing "
                                  f"there would replace it", hint=hint)
    for ident, s in src.file_ids:
        if ident in above:
            raise OutputError(f"{out}: lies inside the source file {s}", hint=hint)
    parent = _identity(os.path.dirname(o))
    for ident, s in src.parents_of_files:
        if ident == parent and os.path.basename(s).startswith(leftovers):
            raise OutputError(f"{out}: the source file {s} has the name of eaglectl's temporary files for this "
                              f"output (they are removed)", hint=hint)


def read_regular(path: Path, cap: int) -> bytes | None:
    """The bytes of `path` when it is a regular file (not a symlink, FIFO, device) of at most `cap` bytes; else None.
    Opened non-blocking and without following links, checked after opening: nothing to race, nothing to hang on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > cap:
            return None
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return None if total > cap else b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The eaglectl export manifest of `directory`, or None when there is none in eaglectl's form."""
    data = read_regular(directory / MANIFEST, MAX_MANIFEST_BYTES)
    if data is None:
        return None
    try:
        doc = loads_bounded(data, CONFIG_LIMITS, where=str(directory / MANIFEST), what="manifest")
    except ConfigError:  # not JSON, not UTF-8, or past the limits: not a manifest eaglectl wrote
        return None
    if not isinstance(doc, dict) or doc.get("eaglectl_export") != 1:
        return None
    if not isinstance(doc.get("source_fingerprint"), str):
        return None
    files = doc.get("files")
    if files is not None and not (isinstance(files, list) and all(_plain_name(f) for f in files)):
        return None
    return doc


def source_layer_count(config: dict[str, Any], manifest: dict[str, Any] | None) -> int | None:
    """The layer count a drafter's config names: its own, or for an eaglectl export (`manifest`: its manifest;
    its config says the layers it holds) its source's. NeMo AutoModel's configs name the training target's."""
    if manifest is not None and "source_num_hidden_layers" in manifest:
        value = manifest["source_num_hidden_layers"]
        return value if type(value) is int and value > 0 else None
    return config_int(config, "num_hidden_layers")


def unpin_warning(out: Path, new_config: dict[str, Any]) -> str | None:
    """What replacing the eaglectl export at `out` with `new_config` would un-pin, as a warning (None: nothing):
    a later export without --aux-layer-ids would otherwise drop the pinned ids without a word."""
    from eaglectl.checkpoint.resolve import aux_layer_ids_of

    if read_manifest(out) is None or aux_layer_ids_of(new_config):
        return None
    data = read_regular(out / "config.json", MAX_MANIFEST_BYTES)
    try:
        old = loads_bounded(data, CONFIG_LIMITS, where=str(out / "config.json"), what="config") if data else None
    except ConfigError:
        return None
    ids = aux_layer_ids_of(old) if isinstance(old, dict) else None
    if not ids:
        return None
    return (f"{out} holds an export with aux layer ids {ids} pinned; this one records none, so SGLang captures the "
            f"default layers of whichever target serves it (--aux-layer-ids {' '.join(map(str, ids))} keeps them)")


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def _listing(directory: Path) -> Iterable[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            yield from it
    except OSError as exc:
        raise OutputError(f"{directory}: cannot list the existing output ({exc.strerror or exc})") from exc


def _existing(path: Path, *, follow_symlinks: bool = True) -> os.stat_result | None:
    """`path`'s stat, or None when nothing is there; any other failure to look is the user's error line."""
    try:
        return os.stat(path, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"{path}: cannot access ({exc.strerror or exc})") from exc


def refuse_foreign_dir(out: Path) -> None:
    """An existing `out` may be replaced only when it is empty or a previous eaglectl export holding nothing but
    the files its manifest lists (older manifests, without a list: only the names exports have always had)."""
    st = _existing(out)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{out}: exists and is not a directory (export writes a directory there)",
                          hint="pass --output DIR")
    manifest: dict[str, Any] | None = None
    checked = False
    killed = killed_move_names(out)  # what a killed run moved into a mount point: removed under the lock
    for entry in _listing(out):
        if is_own_entry(out, entry.name):  # the staging dir and lock inside a mount point: eaglectl's own
            continue
        if entry.name in killed and entry.is_file(follow_symlinks=False):
            continue
        if not checked:
            manifest = read_manifest(out)
            checked = True
            if manifest is None:
                raise OutputError(f"{out}: exists, is not empty and is not an eaglectl export (no {MANIFEST} "
                                  f"written by eaglectl); eaglectl replaces only directories it wrote",
                                  hint=NEW_DIR_HINT)
        listed = manifest.get("files") if manifest else None
        ours = (entry.name in listed or entry.name == MANIFEST) if listed is not None else bool(
            LEGACY_EXPORT_FILES.fullmatch(entry.name))
        try:
            regular = entry.is_file(follow_symlinks=False)
        except OSError:
            regular = False
        if not ours or not regular:
            raise OutputError(f"{out}: holds {entry.name!r}, which the eaglectl export there did not write; eaglectl "
                              f"replaces only what it wrote", hint=NEW_DIR_HINT)


def refuse_non_empty_dir(root: Path, *, what: str, hint: str) -> None:
    """`root` must be absent or an empty directory (for writers whose outputs carry no manifest)."""
    st = _existing(root)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{root}: exists and is not a directory", hint=hint)
    if next(iter(_listing(root)), None) is not None:
        raise OutputError(f"{root}: is not empty; {what}", hint=hint)


def refuse_foreign_file(out: Path, is_ours: Callable[[bytes], bool], *, cap: int, what: str) -> None:
    """An existing file at `out` is replaced only when `is_ours` recognises its bytes (read capped, no links)."""
    st = _existing(out, follow_symlinks=False)
    if st is None:
        return
    hint = "pass --output with a new file name, or remove this file yourself"
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{out}: exists and is not a regular file", hint=hint)
    data = read_regular(out, cap)
    if data is None or not is_ours(data):
        raise OutputError(f"{out}: exists and is not a {what} eaglectl wrote; eaglectl replaces only files it wrote",
                          hint=hint)


def earlier_export_notes(ckpt: Checkpoint) -> list[str]:
    """Exports earlier eaglectl versions made where they no longer go: a NeMo consolidated `model/` rewritten in
    place (NeMo's own files there are gone), or a `model/` export beside a checkpoint's files."""
    if ckpt.model_dir is None or ckpt.root is None:
        return []
    notes = []
    if ckpt.layout is Layout.nemo_consolidated and read_manifest(ckpt.model_dir) is not None:
        notes.append(f"{ckpt.model_dir} holds an export an earlier eaglectl wrote in place ({MANIFEST}); the "
                     f"checkpoint NeMo wrote there was replaced then. eaglectl now leaves model/ alone and exports "
                     f"to {Path(ckpt.root) / EXPORT_DIR}")
    old = Path(ckpt.root) / "model"
    with contextlib.suppress(OSError):
        if old != ckpt.model_dir and old.is_dir() and read_manifest(old) is not None:
            notes.append(f"{old} holds an export an earlier eaglectl wrote (the default output was model/ then; "
                         f"it is now {EXPORT_DIR}/)")
    return notes
