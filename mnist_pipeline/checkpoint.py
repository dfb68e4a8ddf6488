"""Per-epoch training checkpoints, so a killed run resumes instead of starting over.

The store is a folder outside the project (CHECKPOINT_STORE in paths.py, in the user's
cache folder) with one file per run, named by the run's fingerprint (a hash of the
params, code and data it trains with): <fingerprint>.ckpt, a zip of state.json (the
fingerprint and the trainer's JSON state) and one .npy member per array. `dvc exp run
--queue` and `--temp` train in temporary copies that DVC deletes; a rerun of the same
experiment, in whatever copy, has the same fingerprint and finds its checkpoint.

`open_store` is the store's whole life in one run: it opens the folder (made 0700),
removes checkpoints no run has written for STALE_AFTER_DAYS, holds the run's lock
(<fingerprint>.lock) while the run lasts, yields the `Store` that loads and saves, and
removes the run's checkpoint when the block succeeds. A checkpoint is a convenience:
where the store cannot be used (another user owns the folder or others can write to it,
another run of the same experiment holds it, the disk is full or read-only) one warning
line says so and training goes on without checkpoints.

Nothing in the folder is trusted beyond what is checked. No symbolic link is followed,
and only the store's own names are ever removed. A checkpoint is loaded only if its
fingerprint is the run's and its arrays are exactly the ones the run names, each of the
expected size and dtype, checked from the zip and .npy headers before any data is read
(the zip's CRC-32 checks the bytes); the trainer then assigns them (Keras checks the
shapes). Anything else is one warning line, the checkpoint is dropped and training
starts over.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import stat
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from mnist_pipeline.stage import printable

log = logging.getLogger(__name__)

STALE_AFTER_DAYS = 7
_STATE = "state.json"
_MAX_STATE_BYTES = 16 << 20  # the history of 10,000 epochs takes about 2 MB
_NPY_HEADER_BYTES = 4096  # more than the header np.save writes before an array's data
# The store's own names: a run's checkpoint, the one being written, its lock, and (no
# suffix) a folder of the previous layout.
_OWN = re.compile(r"([0-9a-f]{32})(\.ckpt|\.ckpt\.tmp|\.lock|)")
_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # no FIFO blocks an open

T = TypeVar("T")


def fingerprint(params: dict[str, Any], files: list[Path]) -> str:
    """sha256 over the params (as canonical JSON) and the paths and bytes of the files."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for path in sorted(files):
        digest.update(str(path).encode())
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


class Store:
    """One run's checkpoint, while `open_store`'s block lasts. Where the store is not in
    use (refused, or held by another run), `load` finds nothing and `save` does nothing;
    after a save fails, so do the next ones."""

    def __init__(self, root: Path, run_fingerprint: str) -> None:
        self.root, self.fingerprint = root, run_fingerprint
        self.name = f"{run_fingerprint[:32]}.ckpt"
        self.path = root / self.name
        self._fd: int | None = None  # the root folder's, while the store is in use
        self._lock: int | None = None
        self._saving = True  # until a save fails

    def load(
        self, expected: Mapping[str, Any], restore: Callable[[dict[str, Any], dict], T]
    ) -> T | None:
        """What `restore(state, arrays)` returns for this run's checkpoint, if there is
        one: `state` the JSON saved with it, `arrays` named exactly as `expected` (names to
        anything with the shape and dtype the array must have, such as the variable it
        goes into), each of that size and dtype. A checkpoint that cannot be read, or
        that `restore` refuses by raising, is reported in one line and removed."""
        if self._fd is None or not _exists(self.name, self._fd):
            return None
        try:
            with _open(self.name, os.O_RDONLY, self._fd) as file:
                state, arrays = self._read(file, expected)
            return restore(state, arrays)
        except Exception as error:  # whatever is wrong with it, training starts fresh
            _unlink(self.name, self._fd)
            reason = str(error) if type(error) is ValueError else f"{type(error).__name__}: {error}"
            log.warning(f"ignoring the checkpoint in {self.path}: {printable(reason, 160)}")
            return None

    def _read(self, file: IO[bytes], expected: Mapping[str, Any]) -> tuple[dict, dict]:
        with zipfile.ZipFile(file) as archive:
            members = {info.filename: info for info in archive.infolist()}
            info = members.pop(_STATE, None)
            _check(info is not None, f"it holds no {_STATE}")
            _check(
                info.file_size <= _MAX_STATE_BYTES, f"{_STATE} is over {_MAX_STATE_BYTES:,} bytes"
            )
            state = json.loads(archive.read(info))
            _check(isinstance(state, dict), f"{_STATE} is not a JSON object")
            _check(state.get("fingerprint") == self.fingerprint, "it belongs to another run")
            names = {f"{name}.npy": name for name in expected}
            _check(set(members) == set(names), "its arrays are not the ones this run keeps")
            arrays = {
                names[member]: _read_npy(archive, info, names[member], expected[names[member]])
                for member, info in members.items()
            }
        return state, arrays

    def save(self, state: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Make `state` (JSON) and `arrays` this run's checkpoint, in one atomic step. Where
        the disk is full or read-only, say so in one line; the run keeps no more."""
        if self._fd is None or not self._saving:
            return
        temporary = f"{self.name}.tmp"
        try:
            with _open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self._fd) as file:
                with zipfile.ZipFile(file, "w") as archive:
                    archive.writestr(_STATE, json.dumps({"fingerprint": self.fingerprint, **state}))
                    for name, array in arrays.items():
                        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
            os.fsync(self._fd)
        except OSError as error:
            self._saving = False  # and the last one, behind now, goes when the run ends
            _unlink(temporary, self._fd)
            log.warning(
                f"cannot save the checkpoint in {self.root}: {error.strerror or error}; "
                "training goes on without checkpoints"
            )

    def _open(self) -> None:
        """Open the store's folder, remove stale checkpoints and take this run's lock;
        raises OSError, or ValueError where the folder is not to be trusted."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):
            os.mkdir(self.root, 0o700)
        try:
            self._fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _FLAGS)
        except OSError:
            _check(not self.root.is_symlink(), "it is a symbolic link")
            raise
        found = os.fstat(self._fd)
        _check(found.st_uid == os.geteuid(), f"it belongs to another user (uid {found.st_uid})")
        mode = stat.S_IMODE(found.st_mode)
        _check(not mode & 0o022, f"others can write to it (mode {mode:o})")
        for removed in _remove_stale(self._fd, self.root, keep=self.name[:32]):
            log.info(f"removed a checkpoint unused for {STALE_AFTER_DAYS} days: {removed}")
        self._lock = _locked(f"{self.name[:32]}.lock", self._fd)
        if self._lock is None:
            self._close()
            log.warning(
                f"another run of this same experiment holds {self.path}; "
                "this run keeps no checkpoint"
            )

    def _clear(self) -> None:
        """Remove this run's checkpoint, any a kill left half-written, and its lock file
        (the lock still held)."""
        if self._fd is not None:
            for name in (self.name, f"{self.name}.tmp", f"{self.name[:32]}.lock"):
                _unlink(name, self._fd)

    def _close(self) -> None:
        for fd in (self._lock, self._fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock = None


@contextmanager
def open_store(root: Path, run_fingerprint: str) -> Iterator[Store]:
    """The checkpoint store in `root` for the run with `run_fingerprint`, held while the
    block runs; its checkpoint is removed when the block succeeds (the run's outputs are
    written) and kept when it fails or is interrupted."""
    store = Store(root, run_fingerprint)
    try:
        store._open()
    except (OSError, ValueError) as problem:
        store._close()
        reason = str(problem) if isinstance(problem, ValueError) else problem.strerror or problem
        log.warning(f"not using the checkpoint store {root}: {reason}; training goes on without it")
    try:
        yield store
        store._clear()
    finally:
        store._close()


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


@contextmanager
def _open(name: str, flags: int, folder: int) -> Iterator[IO[bytes]]:
    """The regular file `name` in the open folder `folder`, never through a link."""
    fd = os.open(name, flags | _FLAGS, 0o600, dir_fd=folder)
    with os.fdopen(fd, "rb" if flags == os.O_RDONLY else "wb") as file:
        _check(stat.S_ISREG(os.fstat(fd).st_mode), f"{name} is not a regular file")
        yield file


def _exists(name: str, folder: int) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _unlink(name: str, folder: int) -> bool:
    """Remove `name` from `folder` if it is a regular file (never a link); whether it was."""
    with suppress(OSError):
        if stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=folder)
            return True
    return False


def _locked(name: str, folder: int) -> int | None:
    """A descriptor of the lock file `name` in `folder` (made if missing), locked by this
    process; None where another process holds it."""
    for _ in range(10):
        fd = os.open(name, os.O_RDWR | os.O_CREAT | _FLAGS, 0o600, dir_fd=folder)
        try:
            _check(stat.S_ISREG(os.fstat(fd).st_mode), f"{name} is not a regular file")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        with suppress(FileNotFoundError):  # still the file of that name: not removed since
            if os.path.samestat(os.fstat(fd), os.stat(name, dir_fd=folder, follow_symlinks=False)):
                return fd
        os.close(fd)
    raise OSError(errno.EAGAIN, "its lock file is removed each time it is taken", name)


def _remove_stale(folder: int, root: Path, keep: str) -> list[Path]:
    """Remove the checkpoints in the store (`folder`, open; `root`, its path) that no run
    has written for STALE_AFTER_DAYS and no running process holds, except `keep`'s;
    return those removed."""
    newest: dict[str, float] = {}
    for entry in os.scandir(folder):
        own = _OWN.fullmatch(entry.name)
        with suppress(OSError):
            if own and (
                entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)
            ):
                mtime = entry.stat(follow_symlinks=False).st_mtime
                newest[own[1]] = max(newest.get(own[1], mtime), mtime)
    removed = []
    cutoff = time.time() - STALE_AFTER_DAYS * 86400
    for name in sorted(name for name, mtime in newest.items() if mtime < cutoff and name != keep):
        with suppress(OSError, ValueError):  # an unusable lock: left as it is
            lock = _locked(f"{name}.lock", folder)
            if lock is None:
                continue  # a run is using it right now
            try:
                if _unlink(f"{name}.ckpt", folder):
                    removed.append(root / f"{name}.ckpt")
                if stat.S_ISDIR(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
                    shutil.rmtree(name, dir_fd=folder)  # never follows a link inside
                    removed.append(root / name)
            except FileNotFoundError:
                pass
            finally:
                _unlink(f"{name}.ckpt.tmp", folder)
                _unlink(f"{name}.lock", folder)
                os.close(lock)
    return removed


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, like: Any) -> np.ndarray:
    """The .npy member `info`, holding as many values of the dtype as `like` has: its size
    in the zip, then its header, checked before its data is read."""
    dtype, size = np.dtype(like.dtype), math.prod(like.shape)
    nbytes = size * dtype.itemsize
    _check(info.file_size <= nbytes + _NPY_HEADER_BYTES, f"{name} is larger than this model's")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        _check(version in ((1, 0), (2, 0)), f"{name} is not a .npy array")
        read_header = np.lib.format.read_array_header_1_0
        if version == (2, 0):
            read_header = np.lib.format.read_array_header_2_0
        shape, fortran_order, found = read_header(member)
        _check(
            found == dtype and math.prod(shape) == size and not fortran_order,
            f"{name} is {found} {tuple(shape)}, this model's is {dtype} {tuple(like.shape)}",
        )
        data = member.read(nbytes + 1)  # to its end, so the zip checks its CRC-32
    _check(len(data) == nbytes, f"{name} is not {nbytes:,} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
