"""Crash-safe writes: stage beside the destination, fsync, then swap into place with one rename.

A reader (or a crash, or Ctrl-C, or SIGKILL) sees either the previous result or the complete new one,
never a half-written directory. Leftovers of killed runs are recognisable by name and cleaned up by the
next run, which holds the same lock. What may be replaced at all is decided by `eaglectl.export.outputs`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from eaglectl.errors import OutputError

STAGE_TAG = ".eaglectl-stage-"
OLD_TAG = ".eaglectl-old-"
LOCK_TAG = ".eaglectl.lock"
_RENAME_EXCHANGE = 2


def output_path(path: Path) -> Path:
    """Where an output really goes: symlinks followed (a `model -> /big/disk/model` link is written through,
    not replaced); a looping or dangling link is refused rather than silently replaced."""
    path = Path(path).expanduser()
    try:
        return path.resolve(strict=path.is_symlink())
    except (OSError, RuntimeError) as exc:  # RuntimeError: Python < 3.13 reports symlink loops so
        raise OutputError(f"{path}: output path is a symlink loop or a broken symlink") from exc


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


def stage_dir(dest: Path) -> Path:
    """A new empty staging directory beside `dest` (same file system, so the final rename is atomic)."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{dest.name}{STAGE_TAG}", dir=dest.parent))
    except OSError as exc:
        raise OutputError(f"{dest.parent}: cannot create a staging directory ({exc.strerror or exc})") from exc


def cleanup_leftovers(dest: Path) -> list[Path]:
    """Remove staging dirs of killed runs; restore `dest` from a backup a killed swap left behind."""
    removed: list[Path] = []
    parent = dest.parent
    if not parent.is_dir():
        return removed
    olds = sorted(parent.glob(f".{dest.name}{OLD_TAG}*"))
    if olds and not dest.exists():  # killed between the two renames of a fallback swap
        os.rename(olds[-1], dest)
        olds = olds[:-1]
    for leftover in [*parent.glob(f".{dest.name}{STAGE_TAG}*"), *olds]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
        removed.append(leftover)
    return removed


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


def commit_dir(staged: Path, dest: Path) -> None:
    """Move a fully written staging dir into place, replacing any previous `dest` atomically."""
    os.chmod(staged, 0o755)  # mkdtemp made it private
    fsync_dir(staged)
    if not dest.exists():
        os.rename(staged, dest)
    elif _exchange(staged, dest):
        shutil.rmtree(staged, ignore_errors=True)  # `staged` now holds the previous result
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}{OLD_TAG}", dir=dest.parent))
        os.rmdir(old)
        os.rename(dest, old)
        os.rename(staged, dest)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dest.parent)


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

    lock = dest.parent / f".{dest.name}{LOCK_TAG}"
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
        if _same_file(fd, lock):
            with contextlib.suppress(OSError):
                os.unlink(lock)
        os.close(fd)


@contextlib.contextmanager
def locked_output(dest: Path) -> Iterator[Path]:
    """What every writer does first: refuse an unwritable parent, take the lock on `dest`, then remove what a
    killed earlier run left beside it (safe only under the lock)."""
    if not os.access(dest.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{dest.parent}: not writable")
    with exclusive_lock(dest) as lock:
        cleanup_leftovers(dest)
        yield lock
