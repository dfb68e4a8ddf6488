"""Tooling for whole copies of the project, shared by the tests and the benchmark (bench/):
copy its source into a fresh git repository, and change params.yaml there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dvc.utils.serialize import modify_yaml

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "mnist-dvc-pipeline",
    "GIT_AUTHOR_EMAIL": "tools@localhost",
    "GIT_COMMITTER_NAME": "mnist-dvc-pipeline",
    "GIT_COMMITTER_EMAIL": "tools@localhost",
}


def copy_project(source: Path, destination: Path, untracked: bool = False) -> Path:
    """Copy the files git tracks in `source` (with `untracked`, also those it would track)
    to `destination`, as a new git repository with one commit. Data, models and caches
    stay behind."""
    extra = ["--others", "--exclude-standard"] if untracked else []
    listing = subprocess.run(
        ["git", "ls-files", "--cached", *extra, "-z"], cwd=source, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        if (source / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, destination / name)
    env = dict(os.environ, **GIT_IDENTITY)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run(["git", *command], cwd=destination, env=env, check=True)
    return destination


def set_params(root: Path, changes: dict) -> None:
    """Update params.yaml in the project at `root`, e.g. {"train": {"epochs": 1}, "seed": 7},
    as `dvc exp run -S` does: DVC's own round-trip YAML, comments kept."""
    with modify_yaml(root / "params.yaml") as params:
        for key, value in changes.items():
            if isinstance(value, dict):
                params[key].update(value)
            else:
                params[key] = value
