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
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.stage import staged_dir

STALE_AFTER_DAYS = 7
_STATE_FILE = "state.json"
_VARIABLES_FILE = "variables.npz"

# A callback's state: JSON values, and arrays (e.g. the best weights so far).
CallbackState = tuple[dict[str, Any], list[np.ndarray]]


def fingerprint(params: dict[str, Any], files: list[Path]) -> str:
    """sha256 over the params (as canonical JSON) and the paths and bytes of the files."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for path in sorted(files):
        digest.update(str(path).encode())
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Checkpoint:
    epochs_done: int
    stopped_early: bool  # a callback ended training after epochs_done
    history: list[dict[str, float]]  # one entry of logged metrics per finished epoch
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    callbacks: dict[str, CallbackState] = field(default_factory=dict)


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

    def load(self) -> tuple[Checkpoint | None, str]:
        """This run's checkpoint, if there is one, and a line saying why it cannot be used.

        One that cannot be read is removed, so that training starts fresh.
        """
        if not self.folder.exists():
            return None, ""
        try:
            state = json.loads((self.folder / _STATE_FILE).read_text())
            if state["fingerprint"] != self.run_fingerprint:
                raise ValueError("its fingerprint does not match its folder")
            with np.load(self.folder / _VARIABLES_FILE, allow_pickle=False) as arrays:
                model = [arrays[f"model_{i}"] for i in range(state["model_variables"])]
                optimizer = [arrays[f"optimizer_{i}"] for i in range(state["optimizer_variables"])]
                callbacks = {
                    name: (
                        entry["values"],
                        [arrays[f"callback_{name}_{i}"] for i in range(entry["arrays"])],
                    )
                    for name, entry in state["callbacks"].items()
                }
            checkpoint = Checkpoint(
                state["epochs_done"],
                state["stopped_early"],
                state["history"],
                model,
                optimizer,
                callbacks,
            )
            return checkpoint, ""
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            self.clear()
            return None, f"ignoring the checkpoint in {self.folder}: it cannot be read ({error})"

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
