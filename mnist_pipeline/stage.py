"""What every stage shares: its console lines (`logging`, configured once by
`run_stage`), one-line errors for user mistakes, and outputs that appear all at once or
not at all."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path


class StageError(Exception):
    """A problem the user can fix (bad params, missing or corrupt files).

    Reported as one line on stderr, without a traceback."""


def printable(text: str, limit: int = 200) -> str:
    """`text` fit for a one-line message: unprintable characters (newlines, terminal
    escape codes) escaped, and cut to at most `limit` characters."""
    shown = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit]
    )
    return shown if len(text) <= limit and len(shown) <= limit else shown[: limit - 3] + "..."


# The project's logger: modules log to its children (logging.getLogger(__name__)), stage
# scripts to it directly. Where no stage configured it (a benchmark, a test calling a
# module), only warnings show, as Python's last-resort lines.
log = logging.getLogger("mnist_pipeline")


def configure_logging(name: str) -> None:
    """Show the project's log as `name: message` lines, each as it happens: information
    on stdout, warnings and errors on stderr."""
    prefix = name.replace("%", "%%")
    to_stdout = logging.StreamHandler(sys.stdout)
    to_stdout.addFilter(lambda record: record.levelno < logging.WARNING)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    for handler in (to_stdout, to_stderr):
        handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    log.handlers[:] = [to_stdout, to_stderr]
    log.setLevel(logging.INFO)
    log.propagate = False


def run_stage(main: Callable[[], None], name: str | None = None) -> None:
    """Run a stage's (or a command's) main() with its log configured; turn StageError and
    Ctrl-C into a one-line message and exit code. Lines start with `name`, by default the
    script's."""
    configure_logging(name or Path(sys.argv[0]).stem)
    try:
        main()
    except StageError as error:
        log.error(f"error: {error}")
        sys.exit(1)
    except OSError as error:  # disk full, read-only folder, permissions
        where = f"{error.filename}: " if error.filename else ""
        log.error(f"error: {where}{error.strerror or error}")
        sys.exit(1)
    except KeyboardInterrupt:
        log.error("interrupted, no output written")
        sys.exit(130)


def require_file(path: Path, made_by: str) -> None:
    """Fail in one line, before anything heavy loads, if `path` (an output of the stage
    `made_by`) is not there."""
    if not path.is_file():
        raise StageError(f"{path}: missing; run the {made_by} stage (dvc repro)")


# Staging copies are named .<target>.tmp.<random>[<suffix>] beside their target (git
# ignores the pattern). Each run stages in a copy of its own and holds a lock on it, so
# a run cleaning up after a killed one never removes the copy another run is writing.
_OLD = ".old"  # a staging copy holding the previous output, moved aside
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.tmp."


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file in a folder and the folder entries themselves, to disk."""
    if not path.is_dir():
        _fsync(path)
        return
    for parent, _, files in os.walk(path):
        for name in files:
            _fsync(Path(parent, name))
        _fsync(Path(parent))


@contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """Try to lock `path` (a file or folder) for the block; yields whether it was got.
    The kernel drops the lock when the process ends, however it ends."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone, or not ours to open
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a running process (or no locks here, as on some NFS)
        os.close(fd)
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)


def _claimed(make: Callable[[], tuple[Path, int]]) -> tuple[Path, int]:
    """A new staging path and an open descriptor of it from `make`, locked by this
    process; made again if a run cleaning up after killed ones removed it before the
    lock was taken."""
    for _ in range(100):
        try:
            path, fd = make()
        except FileNotFoundError:  # removed between its making and its opening
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits while a cleanup holds it, then it is gone
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                return path, fd
        except FileNotFoundError:
            pass
        except OSError:  # no locks on this filesystem: go on without
            return path, fd
        os.close(fd)
    raise OSError(errno.EAGAIN, "cannot keep a staging copy: something removes each one")


def _new_staging_dir(target: Path) -> tuple[Path, int]:
    path = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), dir=target.parent))
    path.chmod(0o777 & ~_UMASK)  # as mkdir would make it, not mkdtemp's private 0o700
    return path, os.open(path, os.O_RDONLY)


def _new_staging_file(target: Path) -> tuple[Path, int]:
    fd, name = tempfile.mkstemp(
        prefix=_staging_prefix(target), suffix=target.suffix, dir=target.parent
    )
    os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it, not mkstemp's private 0o600
    return Path(name), fd


def _clean_up_after_killed_runs(target: Path) -> None:
    """Remove the staging copies of `target` that no running process holds. If a run
    was killed between moving the old output aside and moving the new one in (only
    where the filesystem cannot swap two folders atomically), put the old one back."""
    for leftover in sorted(target.parent.glob(_staging_prefix(target) + "*")):
        if leftover.is_symlink():  # an old output that was a link: never locked
            leftover.unlink(missing_ok=True)
            continue
        with _locked(leftover) as free:
            if not free:
                continue  # another run is writing it
            if leftover.name.endswith(_OLD) and not os.path.lexists(target):
                os.rename(leftover, target)
            else:
                _remove(leftover)


_RENAME_EXCHANGE = 2  # renameat2 flag, linux/fs.h
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` in one atomic step (Linux renameat2 RENAME_EXCHANGE);
    False where the system or filesystem cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _put_in_place(staging: Path, target: Path) -> Path | None:
    """Make the staged output `target`; return where the previous output now is."""
    if not staging.is_dir() or not os.path.lexists(target):
        os.replace(staging, target)  # one atomic step for a file, or where nothing was
        return None
    if _exchange(staging, target):
        return staging
    aside = staging.with_name(staging.name + _OLD)  # two steps, repaired if killed between
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)
        raise
    return aside


def staged_dir(target: Path) -> AbstractContextManager[Path]:
    """Yield an empty staging directory that replaces `target` only if the block succeeds.

    On any error, or Ctrl-C, the staging directory is removed and `target` is untouched.
    Killed at any instant, even during the swap, `target` is the whole old output or the
    whole new one; the next run removes what was left beside it.
    """
    return _staged(target, _new_staging_dir)


def staged_file(target: Path) -> AbstractContextManager[Path]:
    """Yield a temporary path beside `target` (same suffix) that is renamed onto it on
    success; as `staged_dir`, for one file."""
    return _staged(target, _new_staging_file)


@contextmanager
def _staged(target: Path, make: Callable[[Path], tuple[Path, int]]) -> Iterator[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_up_after_killed_runs(target)
    staging, fd = _claimed(lambda: make(target))
    try:
        try:
            yield staging
            _fsync_tree(staging)
        except BaseException:
            _remove(staging)
            raise
        previous = _put_in_place(staging, target)
        _fsync(target.parent)
    finally:
        os.close(fd)
    if previous is not None:
        _remove(previous)


def write_text_atomic(target: Path, text: str) -> None:
    """Write `text` to `target` through a temporary file, so readers never see half of it."""
    with staged_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
