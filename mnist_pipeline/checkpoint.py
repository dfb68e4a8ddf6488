"""Per-epoch training checkpoints, so a killed run resumes instead of starting over.

A checkpoint holds every model variable (weights, and the dropout layers' random
generator states), every optimizer variable (its step count and learning rate too), the
state of each callback that keeps one (early stopping's best value and weights, the
plateau schedule's counters), the finished epochs and their logged metrics.

Checkpoints live in a store outside the project (CHECKPOINT_STORE in paths.py, the user's
cache directory), one folder per run fingerprint: a hash of the params, code and data
the run trains with. `dvc exp run --queue` and `--temp` train in temporary copies that
DVC deletes; a rerun of the same experiment, in whatever copy, has the same fingerprint
and finds its checkpoint. A checkpoint is removed when its run finishes; those left by
runs that were killed and never rerun are removed once unused for STALE_AFTER_DAYS.

A checkpoint is resumed only if everything in it is what the run expects (its Layout):
the epoch count in range, one finite metrics entry per epoch, each callback's counters,
and every array's name, size, shape and dtype, checked before the array is read, and the
sha256 of the arrays file. Anything else is reported in one line and discarded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.stage import printable, staged_dir

STALE_AFTER_DAYS = 7
_STATE_FILE = "state.json"
_VARIABLES_FILE = "variables.npz"
_MAX_STATE_BYTES = 16 << 20  # the history of 10,000 epochs takes about 2 MB
_NPY_HEADER_BYTES = 4096  # more than the header np.save writes before an array's data
_METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

# A callback's state: JSON values, and arrays (e.g. the best weights so far).
CallbackState = tuple[dict[str, Any], list[np.ndarray]]


def fingerprint(params: dict[str, Any], files: list[Path]) -> str:
    """sha256 over the params (as canonical JSON) and the paths and bytes of the files."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for path in sorted(files):
        digest.update(str(path).encode())
        _hash_file(digest, path)
    return digest.hexdigest()


@dataclass
class Checkpoint:
    epochs_done: int
    stopped_early: bool  # a callback ended training after epochs_done
    history: list[dict[str, float]]  # one entry of logged metrics per finished epoch
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    callbacks: dict[str, CallbackState] = field(default_factory=dict)


@dataclass(frozen=True)
class ArraySpec:
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, array: Any) -> ArraySpec:
        """The spec of anything with a shape and a dtype: an array, a Keras variable."""
        return cls(tuple(int(side) for side in array.shape), np.dtype(array.dtype).str)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class CallbackLayout:
    counters: tuple[str, ...]  # whole numbers from 0 to the run's epochs
    values: tuple[str, ...]  # finite numbers, or null
    arrays: tuple[ArraySpec, ...] = ()  # the arrays it holds: all of these, or none


@dataclass(frozen=True)
class Layout:
    """What a checkpoint of one run must hold to be resumed."""

    epochs: int
    model_variables: tuple[ArraySpec, ...]
    optimizer_variables: tuple[ArraySpec, ...]
    callbacks: dict[str, CallbackLayout]


def _arrays(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    arrays = {f"model_{i}": v for i, v in enumerate(checkpoint.model_variables)}
    arrays |= {f"optimizer_{i}": v for i, v in enumerate(checkpoint.optimizer_variables)}
    for name, (_, values) in checkpoint.callbacks.items():
        arrays |= {f"callback_{name}_{i}": v for i, v in enumerate(values)}
    return arrays


class CheckpointStore:
    """The checkpoint of one run, in `root`/<fingerprint>, held by this process alone."""

    def __init__(self, root: Path, run_fingerprint: str) -> None:
        self.root = root
        self.folder = root / run_fingerprint[:32]
        self.run_fingerprint = run_fingerprint

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the stored checkpoint with this one, atomically."""
        with staged_dir(self.folder) as staging:
            np.savez(staging / _VARIABLES_FILE, **_arrays(checkpoint))
            state = {
                "fingerprint": self.run_fingerprint,
                "variables_sha256": _sha256(staging / _VARIABLES_FILE),
                "epochs_done": checkpoint.epochs_done,
                "stopped_early": checkpoint.stopped_early,
                "history": checkpoint.history,
                "model_variables": len(checkpoint.model_variables),
                "optimizer_variables": len(checkpoint.optimizer_variables),
                "callbacks": {
                    name: {"values": values, "arrays": len(arrays)}
                    for name, (values, arrays) in checkpoint.callbacks.items()
                },
            }
            (staging / _STATE_FILE).write_text(json.dumps(state, indent=2))

    def load(self, layout: Layout) -> tuple[Checkpoint | None, str]:
        """This run's checkpoint, if there is one, and a line saying why it cannot be used.

        One that cannot be read, or does not hold what `layout` says, is removed, so that
        training starts fresh.
        """
        if not self.folder.exists():
            return None, ""
        try:
            return self._read(layout), ""
        except Exception as error:  # whatever is wrong with it, training starts fresh
            self.clear()
            reason = str(error) if type(error) is ValueError else f"{type(error).__name__}: {error}"
            return None, f"ignoring the checkpoint in {self.folder}: {printable(reason, 160)}"

    def _read(self, layout: Layout) -> Checkpoint:
        state_file, variables_file = self.folder / _STATE_FILE, self.folder / _VARIABLES_FILE
        if state_file.stat().st_size > _MAX_STATE_BYTES:
            raise ValueError(f"{_STATE_FILE} is larger than {_MAX_STATE_BYTES:,} bytes")
        state = json.loads(state_file.read_text(encoding="utf-8"))
        _check(isinstance(state, dict), f"{_STATE_FILE} is not a JSON object")
        _check(state.get("fingerprint") == self.run_fingerprint, "it belongs to another run")
        epochs_done = state.get("epochs_done")
        _check(
            _is_int(epochs_done) and 1 <= epochs_done <= layout.epochs,
            f"epochs_done is {printable(repr(epochs_done), 160)}, not 1-{layout.epochs}",
        )
        _check(isinstance(state.get("stopped_early"), bool), "stopped_early is not true/false")
        history = _checked_history(state.get("history"), epochs_done)
        callbacks = _checked_callbacks(state.get("callbacks"), layout)
        _check(
            state.get("model_variables") == len(layout.model_variables)
            and state.get("optimizer_variables") == len(layout.optimizer_variables),
            "its variable counts are not this model's",
        )
        specs = {f"model_{i}": spec for i, spec in enumerate(layout.model_variables)}
        specs |= {f"optimizer_{i}": spec for i, spec in enumerate(layout.optimizer_variables)}
        for name, count in callbacks.items():
            specs |= {
                f"callback_{name}_{i}": layout.callbacks[name].arrays[i] for i in range(count)
            }
        most = sum(spec.nbytes + _NPY_HEADER_BYTES for spec in specs.values())
        _check(variables_file.stat().st_size <= most, f"{_VARIABLES_FILE} is too large")
        _check(
            state.get("variables_sha256") == _sha256(variables_file),
            f"{_VARIABLES_FILE} does not match the sha256 recorded with it",
        )
        arrays = _checked_arrays(variables_file, specs)
        return Checkpoint(
            epochs_done,
            state["stopped_early"],
            history,
            [arrays[f"model_{i}"] for i in range(len(layout.model_variables))],
            [arrays[f"optimizer_{i}"] for i in range(len(layout.optimizer_variables))],
            {
                name: (
                    state["callbacks"][name]["values"],
                    [arrays[f"callback_{name}_{i}"] for i in range(count)],
                )
                for name, count in callbacks.items()
            },
        )

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @contextmanager
    def held(self) -> Iterator[bool]:
        """Hold this run's checkpoint for the block; yields False if another process holds
        it (the same experiment running twice at once), which then keeps it alone."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.folder) as held:
            yield held
            if held and not self.folder.exists():  # cleared: the lock file has no more use
                self.folder.with_suffix(".lock").unlink(missing_ok=True)


def _hash_file(digest: Any, path: Path) -> None:
    """Feed the bytes of the file at `path` to `digest`, a MiB at a time."""
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_file(digest, path)
    return digest.hexdigest()


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked_history(history: Any, epochs_done: int) -> list[dict[str, float]]:
    """One entry of finite metrics per finished epoch, each naming the same metrics."""
    _check(
        isinstance(history, list) and len(history) == epochs_done,
        f"its history does not hold one entry for each of its {epochs_done} epochs",
    )
    names = set(history[0]) if isinstance(history[0], dict) else set()
    _check("loss" in names, "its history does not log the loss")
    _check(  # the names become DVCLive's file names: nothing like ../ in them
        all(isinstance(name, str) and _METRIC_NAME.fullmatch(name) for name in names),
        "its history names a metric that is not a plain name",
    )
    for entry in history:
        _check(
            isinstance(entry, dict)
            and set(entry) == names
            and all(_is_number(value) for value in entry.values()),
            "its history holds an entry that is not the same finite metrics as the others",
        )
    return history


def _checked_callbacks(callbacks: Any, layout: Layout) -> dict[str, int]:
    """Each callback's counters and values as `layout` says; returns its array count."""
    _check(
        isinstance(callbacks, dict) and set(callbacks) == set(layout.callbacks),
        f"its callbacks are not this run's ({', '.join(layout.callbacks) or 'none'})",
    )
    counts = {}
    for name, expected in layout.callbacks.items():
        entry = callbacks[name]
        values = entry.get("values") if isinstance(entry, dict) else None
        _check(
            isinstance(values, dict)
            and set(values) == {*expected.counters, *expected.values}
            and all(
                _is_int(values[key]) and 0 <= values[key] <= layout.epochs
                for key in expected.counters
            )
            and all(values[key] is None or _is_number(values[key]) for key in expected.values),
            f"the state of callback {name} is not valid",
        )
        count = entry.get("arrays")
        _check(
            _is_int(count) and count in (0, len(expected.arrays)),
            f"callback {name} holds the wrong number of arrays",
        )
        counts[name] = count
    return counts


def _checked_arrays(path: Path, specs: dict[str, ArraySpec]) -> dict[str, np.ndarray]:
    """The arrays of the .npz at `path`: exactly the names in `specs`, stored uncompressed,
    each one's size, then its .npy header's shape and dtype, checked before its data
    is read."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        _check(
            set(members) == {f"{name}.npy" for name in specs},
            f"{_VARIABLES_FILE} does not hold this model's arrays",
        )
        for name, spec in specs.items():
            info = members[f"{name}.npy"]
            _check(
                info.compress_type == zipfile.ZIP_STORED,
                f"{_VARIABLES_FILE}: {name} is compressed; checkpoints store arrays as they are",
            )
            _check(
                info.file_size <= spec.nbytes + _NPY_HEADER_BYTES,
                f"{_VARIABLES_FILE}: {name} is larger than it can be",
            )
            with archive.open(info) as member:
                arrays[name] = _read_npy(member, name, spec)
    return arrays


def _read_npy(member: Any, name: str, spec: ArraySpec) -> np.ndarray:
    """One .npy array whose header says `spec`'s shape and dtype (C order): the header is
    read first, so no data is allocated for an array of another shape or dtype."""
    version = np.lib.format.read_magic(member)
    _check(version in ((1, 0), (2, 0)), f"{_VARIABLES_FILE}: {name} is not a .npy array")
    read_header = np.lib.format.read_array_header_1_0
    if version == (2, 0):
        read_header = np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(member)
    found = ArraySpec(tuple(shape), dtype.str)
    _check(
        found == spec and not fortran_order,
        f"{_VARIABLES_FILE}: {name} is {dtype} {tuple(shape)}, "
        f"this model's is {np.dtype(spec.dtype)} {spec.shape}",
    )
    data = member.read(spec.nbytes)
    _check(len(data) == spec.nbytes, f"{_VARIABLES_FILE}: {name} is cut short")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


@contextmanager
def _exclusive(folder: Path) -> Iterator[bool]:
    """Lock `folder`'s lock file for the block unless another process holds it; yields
    whether this process got it."""
    with open(folder.with_suffix(".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_stale(root: Path, max_age_days: float = STALE_AFTER_DAYS) -> list[Path]:
    """Remove checkpoints in `root` that no run has written for `max_age_days` and that
    no running process holds; return the folders removed."""
    removed = []
    if not root.is_dir():
        return removed
    cutoff = time.time() - max_age_days * 86400
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            if folder.stat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        with _exclusive(folder) as held:
            if not held:
                continue  # a run is using it right now
            shutil.rmtree(folder, ignore_errors=True)
            folder.with_suffix(".lock").unlink(missing_ok=True)
            removed.append(folder)
    return removed
