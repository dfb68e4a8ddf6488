"""An output folder that is full, or mounted read-only: the stage writing there stops with
one line naming the problem, and leaves no half-written file in it. A checkpoint store
that is full or read-only is one warning line: a checkpoint is a convenience, and
training goes on without it. (1 MiB tmpfs mounts: skipped where mounting is not
allowed.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .helpers import project_with_outputs, run_script, set_params, stage_errors

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux"
    ),
]


@contextmanager
def small_tmpfs(folder: Path, read_only: bool = False, mode: str = "") -> Iterator[None]:
    """Mount a 1 MiB tmpfs on `folder` (needs root), its root folder's `mode` as given
    (else tmpfs's 1777); skips the test where that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    options = "size=1m" + (",ro" if read_only else "") + (f",mode={mode}" if mode else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize(
    ("stage", "inputs", "folder", "read_only", "message"),
    [
        # train writes models/model.keras: into a folder too small for it
        ("train", ["data/processed"], "models", False, "No space left on device"),
        # evaluate writes reports/metrics.json and more: into a read-only folder
        (
            "evaluate",
            ["data/processed", "models/model.keras"],
            "reports",
            True,
            "Read-only file system",
        ),
    ],
    ids=["train-full", "evaluate-read-only"],
)
def test_full_or_read_only_output_folder_is_one_line_and_leaves_no_half_file(
    trained_project, tmp_path, stage, inputs, folder, read_only, message
):
    root = project_with_outputs(trained_project, tmp_path / "project", *inputs)
    with small_tmpfs(root / folder, read_only):
        result = run_script(root, stage)
        assert result.returncode == 1
        (error,) = stage_errors(result.stderr, stage)
        assert error.startswith(f"{stage}: error: ") and message in error
        assert list((root / folder).iterdir()) == []  # no half-written file


@pytest.mark.parametrize(
    ("read_only", "warning"),
    [
        (False, "cannot save the checkpoint in {store}: No space left on device; "),
        (True, "not using the checkpoint store {store}: Read-only file system; "),
    ],
    ids=["full", "read-only"],
)
def test_full_or_read_only_checkpoint_store_is_one_warning_and_training_goes_on(
    trained_project, tmp_path, checkpoint_store, read_only, warning
):
    root = project_with_outputs(trained_project, tmp_path / "project", "data/processed")
    set_params(root, {"train": {"epochs": 2}})  # the second epoch trains after the failure
    with small_tmpfs(checkpoint_store, read_only, mode="0700"):  # 1 MiB: less than one
        result = run_script(root, "train")
        assert result.returncode == 0, result.stderr
        (line,) = stage_errors(result.stderr, "train")
        assert line.startswith("train: " + warning.format(store=checkpoint_store))
        assert "train: epoch 2/2" in result.stdout
        assert list(checkpoint_store.iterdir()) == []  # nothing left behind
    assert (root / "models/model.keras").stat().st_size > 0
