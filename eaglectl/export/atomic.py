"""Crash-safe writes: stage beside the destination, fsync, then swap into place with one rename.

A reader (or a crash, or Ctrl-C, or SIGKILL) sees either the previous result or the complete new one,
never a half-written directory. Leftovers of killed runs are recognisable by name and cleaned up by the
next run, which holds the same lock. What may be replaced at all is decided by `eaglectl.export.outputs`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from eaglectl import interrupts
from eaglectl.errors import OutputError
from eaglectl.hub import expand_user

STAGE_TAG = ".eaglectl-stage-"
OLD_TAG = ".eaglectl-old-"
LOCK_TAG = ".eaglectl.lock"
_RENAME_EXCHANGE = 2


def output_path(path: Path) -> Path:
    """Where an output really goes: symlinks followed (a `model -> /big/disk/model` link is written through,
    not replaced); a looping or dangling link anywhere on the path is refused rather than silently replaced or
    written through (`-o LINK/out` with LINK dangling would create LINK's target's directories)."""
    path = expand_user(path, OutputError)
    prefix = Path(os.getcwd()) if not path.is_absolute() else Path(path.anchor)
    for part in path.parts[1 if path.is_absolute() else 0:]:
        prefix = prefix / part
        try:
            st = os.lstat(prefix)
        except (FileNotFoundError, NotADirectoryError):
            break  # from here on nothing exists yet (the writer creates it) or a file is in the way (refused later)
        except OSError as exc:
            raise path_error(path, exc) from exc
        if stat.S_ISLNK(st.st_mode):
            try:
                os.stat(prefix)
            except FileNotFoundError as exc:
                raise OutputError(f"{path}: {prefix} is a broken symlink (to {os.readlink(prefix)}); eaglectl does "
                                  f"not write through it", hint="fix or remove the link, or choose another output"
                                  ) from exc
            except OSError as exc:
                raise path_error(path, exc) from exc
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: Python < 3.13 reports symlink loops so
        raise path_error(path, exc) from exc
    _refuse_long(path, resolved)
    return resolved


# The longest names eaglectl puts beside (or inside) an output: `.<name>.eaglectl-stage-XXXXXXXX`, and a file
# inside an export directory (`model-00001-of-00002.safetensors`, the token map).
_STAGE_EXTRA = len(f".{STAGE_TAG}") + 8  # mkdtemp / mkstemp add 8 random characters
_LONGEST_INSIDE = len("/model.safetensors.index.json.eaglectl-stage-XXXXXXXX") + 1


def _refuse_long(path: Path, resolved: Path) -> None:
    """An output whose name, or a name eaglectl writes for it, is past what the file system takes: said as such
    (not as whatever the first call to trip over it would report)."""
    existing = next((p for p in (resolved, *resolved.parents) if os.path.isdir(p)), Path("/"))
    name_max = _pathconf(existing, "PC_NAME_MAX", 255)
    path_max = _pathconf(existing, "PC_PATH_MAX", 4096)
    longest = max((len(os.fsencode(n)) for n in resolved.parts[1:]), default=0)
    if longest > name_max or len(os.fsencode(resolved.name)) + _STAGE_EXTRA > name_max:
        raise OutputError(f"{path}: output name too long: {len(os.fsencode(resolved.name))} bytes, and eaglectl's "
                          f"temporary name beside it adds {_STAGE_EXTRA}; this file system takes names of at most "
                          f"{name_max} bytes" if longest <= name_max else
                          f"{path}: output path has a name of {longest} bytes; this file system takes at most "
                          f"{name_max}", hint="choose a shorter output name")
    if len(os.fsencode(resolved)) + _LONGEST_INSIDE >= path_max:
        raise OutputError(f"{path}: output path too long: {len(os.fsencode(resolved))} bytes, and the paths "
                          f"eaglectl writes under it must stay below {path_max}", hint="choose a shorter output path")


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError, AttributeError):
        return default
    return value if value > 0 else default


def path_error(path: Path, exc: BaseException) -> OutputError:
    """What an output path that cannot be looked up is, said as it is."""
    err = getattr(exc, "errno", None)
    if err == errno.ENAMETOOLONG:
        return OutputError(f"{path}: output path too long ({getattr(exc, 'strerror', None) or exc})",
                           hint="choose a shorter output path")
    if err == errno.ELOOP or isinstance(exc, RuntimeError):
        return OutputError(f"{path}: output path is a symlink loop or a broken symlink")
    return OutputError(f"{path}: cannot access the output path ({getattr(exc, 'strerror', None) or exc})")


def fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file via a sibling temp file + fsync + `os.replace`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{STAGE_TAG}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def stages_inside(dest: Path) -> bool:
    """Whether `dest` is an existing directory on another file system than the directory holding it (a mount
    point): a directory staged beside it could not be renamed onto it, so its staging directory and lock go inside
    it, on its own file system."""
    try:
        st, up = os.stat(dest), os.stat(dest.parent)
    except (OSError, ValueError):
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_dev != up.st_dev


def workdir(dest: Path) -> Path:
    """Where `dest`'s staging directory and lock file live: beside it, or inside a mount point."""
    return dest if stages_inside(dest) else dest.parent


def is_own_entry(dest: Path, name: str) -> bool:
    """Whether the entry `name` inside the directory `dest` is eaglectl's own working file (staging directory or
    lock of a mount-point output), not part of what the output holds."""
    return stages_inside(dest) and (name.startswith(f".{dest.name}{STAGE_TAG}") or name == f".{dest.name}{LOCK_TAG}")


def stage_dir(dest: Path) -> Path:
    """A new empty staging directory on `dest`'s file system: beside it (so the final rename is atomic), or inside
    it when `dest` is a mount point."""
    where = workdir(dest)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{dest.name}{STAGE_TAG}", dir=where))
    except OSError as exc:
        raise OutputError(f"{where}: cannot create a staging directory ({exc.strerror or exc})") from exc


JOURNAL = ".eaglectl-moving"  # in a staging directory inside a mount point: what the move into place touches
MAX_JOURNAL_BYTES = 1 << 20


def _journal_names(staged: Path) -> list[str]:
    """The names a killed move into `staged`'s mount point had touched (read capped, never through a link)."""
    try:
        fd = os.open(staged / JOURNAL, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = os.read(fd, MAX_JOURNAL_BYTES + 1)
    except OSError:
        return []
    finally:
        os.close(fd)
    try:
        names = json.loads(data) if len(data) <= MAX_JOURNAL_BYTES else None
    except ValueError:
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\0" not in n]


def killed_move_names(dest: Path) -> set[str]:
    """The names a killed move into the mount point `dest` left there (its next run removes them under the lock)."""
    names: set[str] = set()
    if stages_inside(dest):
        with contextlib.suppress(OSError):
            for name in os.listdir(dest):
                if name.startswith(f".{dest.name}{STAGE_TAG}") and not (dest / name).is_symlink():
                    names.update(_journal_names(dest / name))
    return names


def _undo_move(staged: Path, dest: Path) -> None:
    """Remove what a move into the mount point `dest` had moved or left (the names its journal lists, regular files
    only), then the staging directory: `dest` is left without an export rather than with half of one."""
    for name in _journal_names(staged):
        p = dest / name
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(p).st_mode):
                os.unlink(p)
    remove_own_tree(staged)
    fsync_dir(dest)


def cleanup_leftovers(dest: Path) -> list[Path]:
    """Remove staging dirs of killed runs; restore `dest` from a backup a killed swap left behind (inside a mount
    point: undo a killed move into place)."""
    removed: list[Path] = []
    if stages_inside(dest):
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(dest)):
                leftover = dest / name
                if name.startswith(f".{dest.name}{STAGE_TAG}") and not leftover.is_symlink() and leftover.is_dir():
                    _undo_move(leftover, dest)
                    removed.append(leftover)
        return removed
    parent = dest.parent
    if not parent.is_dir():
        return removed
    olds = sorted(parent.glob(f".{dest.name}{OLD_TAG}*"))
    if olds and not dest.exists():  # killed between the two renames of a fallback swap
        os.rename(olds[-1], dest)
        olds = olds[:-1]
    for leftover in [*parent.glob(f".{dest.name}{STAGE_TAG}*"), *olds]:
        if leftover.is_dir():
            remove_own_tree(leftover)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
        removed.append(leftover)
    return removed


def remove_own_tree(path: Path) -> None:
    """Remove a directory eaglectl wrote (a staging directory, or a previous export it replaces: checked to hold an
    eaglectl manifest and only the files it lists), first giving its owner back the write permission a
    `chmod -R a-w` took (a read-only export would otherwise leave its files behind). Links are not followed."""
    def writable(d: str) -> None:
        with contextlib.suppress(OSError):
            st = os.lstat(d)
            if stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o700) != 0o700:
                os.chmod(d, stat.S_IMODE(st.st_mode) | 0o700)

    writable(str(path))
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:  # before os.walk lists them
            writable(os.path.join(dirpath, name))
    shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    res = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def commit_dir(staged: Path, dest: Path, *, last: str | None = None) -> None:
    """Move a fully written staging dir into place, replacing any previous `dest` atomically. A staging dir inside
    `dest` (a mount point, which cannot be renamed) is moved in file by file instead, `last` (the manifest) last."""
    if staged.parent == dest:
        _commit_inside(staged, dest, last)
        return
    os.chmod(staged, 0o755)  # mkdtemp made it private
    fsync_dir(staged)
    if not dest.exists():
        os.rename(staged, dest)
    elif _exchange(staged, dest):
        remove_own_tree(staged)  # `staged` now holds the previous result
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}{OLD_TAG}", dir=dest.parent))
        os.rmdir(old)
        os.rename(dest, old)
        os.rename(staged, dest)
        remove_own_tree(old)
    fsync_dir(dest.parent)


def _commit_inside(staged: Path, dest: Path, last: str | None) -> None:
    """Replace what the mount point `dest` holds (checked by the caller to be a previous export of eaglectl's, or
    nothing) with the files of `staged`, a staging directory inside it. Not one atomic swap: a journal in `staged`
    names everything the move touches first, so a crash or a failure is undone (by the next run, under the lock)
    to a `dest` without an export, never one with half an export."""
    new = sorted((n for n in os.listdir(staged) if n != JOURNAL), key=lambda n: (n == last, n))
    old = [n for n in sorted(os.listdir(dest)) if not is_own_entry(dest, n)]
    fsync_dir(staged)
    try:
        write_bytes_atomic(staged / JOURNAL, json.dumps(sorted({*old, *new})).encode())
        for name in old:
            if name not in new:
                os.unlink(dest / name)
        for name in new:
            os.rename(staged / name, dest / name)
        fsync_dir(dest)
        os.unlink(staged / JOURNAL)
    except OSError as exc:
        _undo_move(staged, dest)
        raise OutputError(f"{dest}: write failed while moving the export into place ({exc.strerror or exc}); "
                          f"{dest} was left without an export") from exc
    os.rmdir(staged)
    fsync_dir(dest)


def _open_lock(lock: Path) -> int:
    """Open (or create) the lock file itself: never through a symlink (a dangling one would create a file
    wherever it points), never a FIFO or device (checked on the open descriptor), never a non-empty file (a lock
    file eaglectl made is empty; anything else is not its to remove)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(lock, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"{lock}: the lock file is a symlink; eaglectl does not follow it",
                              hint="remove it and run again") from exc
        if exc.errno == errno.EISDIR:
            raise OutputError(f"{lock}: exists and is not an eaglectl lock file (an empty regular file)",
                              hint="remove it and run again") from exc
        raise OutputError(f"{lock.parent}: not writable ({exc.strerror or exc})") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size:
        os.close(fd)
        raise OutputError(f"{lock}: exists and is not an eaglectl lock file (an empty regular file)",
                          hint="remove it and run again")
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def exclusive_lock(dest: Path) -> Iterator[Path]:
    """Hold `.<dest>.eaglectl.lock` beside `dest`; a second holder fails at once with a clear message.

    The lock file is removed on release, while still locked; a process that opened the old file meanwhile sees
    that the path no longer names what it locked and opens the path again, so two holders never coexist."""
    import fcntl

    lock = workdir(dest) / f".{dest.name}{LOCK_TAG}"
    for _ in range(100):
        fd = _open_lock(lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{dest}: another eaglectl process is writing it right now (lock {lock}); "
                              f"try again when it finishes") from None
        if _same_file(fd, lock):
            break
        os.close(fd)  # locked a file its previous holder had already removed
    else:
        raise OutputError(f"{dest}: could not take the lock {lock} (it keeps being replaced)")
    try:
        yield lock
    finally:
        with interrupts.held():  # released whole: a signal here cannot leave the lock file behind
            if _same_file(fd, lock):
                with contextlib.suppress(OSError):
                    os.unlink(lock)
            os.close(fd)


@contextlib.contextmanager
def locked_output(dest: Path) -> Iterator[Path]:
    """What every writer does first: refuse an unwritable parent, take the lock on `dest`, then remove what a
    killed earlier run left beside it (safe only under the lock); and again when the writer fails or is
    interrupted."""
    where = workdir(dest)
    if not os.access(where, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: not writable")
    with exclusive_lock(dest) as lock:
        cleanup_leftovers(dest)
        try:
            yield lock
        except BaseException:  # a failure, Ctrl-C, SIGTERM: whatever this run left is removed (or restored) now,
            cleanup_leftovers(dest)  # also what a signal landing between creating a file and naming it left
            raise
