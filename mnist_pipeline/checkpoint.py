"""Per-epoch training checkpoints, so a killed run resumes instead of starting over.

A checkpoint holds every model variable (weights, and the dropout layers' random
generator states), every optimizer variable, the number of finished epochs and their
logged metrics. It lives outside DVC's outputs (DVC deletes those before rerunning a
stage) and carries a fingerprint of the params, code and data it came from: one made
from anything else is reported and ignored, never resumed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.stage import staged_dir

_STATE_FILE = "state.json"
_VARIABLES_FILE = "variables.npz"


def fingerprint(params: dict[str, Any], files: list[Path]) -> str:
    """sha256 over the params (as canonical JSON) and the bytes of every file given."""
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
    history: list[dict[str, float]]  # one entry of logged metrics per finished epoch
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]


def save(folder: Path, run_fingerprint: str, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint in `folder` with this one, atomically."""
    with staged_dir(folder) as staging:
        arrays = {f"model_{i}": v for i, v in enumerate(checkpoint.model_variables)}
        arrays |= {f"optimizer_{i}": v for i, v in enumerate(checkpoint.optimizer_variables)}
        np.savez(staging / _VARIABLES_FILE, **arrays)
        state = {
            "fingerprint": run_fingerprint,
            "epochs_done": checkpoint.epochs_done,
            "history": checkpoint.history,
            "model_variables": len(checkpoint.model_variables),
            "optimizer_variables": len(checkpoint.optimizer_variables),
        }
        (staging / _STATE_FILE).write_text(json.dumps(state, indent=2))


def load(folder: Path, run_fingerprint: str) -> tuple[Checkpoint | None, str]:
    """The checkpoint in `folder` if it was made by this same run, and a line saying why not.

    A checkpoint from other params, code or data, or one that cannot be read, is
    removed so that training starts fresh.
    """
    if not folder.exists():
        return None, ""
    try:
        state = json.loads((folder / _STATE_FILE).read_text())
        if state["fingerprint"] != run_fingerprint:
            reason = "it was made with other params, code or data"
        else:
            with np.load(folder / _VARIABLES_FILE) as arrays:
                model = [arrays[f"model_{i}"] for i in range(state["model_variables"])]
                optimizer = [arrays[f"optimizer_{i}"] for i in range(state["optimizer_variables"])]
            return Checkpoint(state["epochs_done"], state["history"], model, optimizer), ""
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = f"it cannot be read ({type(error).__name__}: {error})"
    clear(folder)
    return None, f"ignoring the checkpoint in {folder}: {reason}; starting fresh"


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
