"""A run killed mid-way and resumed carries every part of its training state: killed
after any epoch, the stage script resumes into a DVCLive log and weights identical to
an uninterrupted run's, with early stopping and a plateau schedule (their counters and
best weights), and with the model family's stateful parts (augmentation's seeds, batch
norm's statistics, one-cycle's step, bfloat16, label smoothing). (Resuming through
`dvc repro` and DVC's queue: test_resume_after_kill.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from .helpers import (
    assert_same_weights,
    in_background,
    read_until,
    run_script,
    set_params,
    trained_weights,
    training_log_files,
)

pytestmark = pytest.mark.slow


def kill_train_at(root: Path, line: str) -> None:
    """Run the train stage's script in `root`; kill it (SIGKILL) once it prints `line`."""
    with in_background(root, sys.executable, "stages/train.py") as process:
        read_until(process, line)
        os.killpg(process.pid, signal.SIGKILL)


# On the small subset this run improves val_loss until epoch 4, is cut back by the
# plateau schedule after epoch 5 and stopped early after epoch 6 (weights of epoch 4).
CALLBACKS = {
    "train": {
        "epochs": 8,
        "learning_rate": 0.01,
        "lr_schedule": "plateau",
        "lr_patience": 1,
        "early_stopping_patience": 2,
    }
}


@pytest.fixture(scope="module")
def uninterrupted(trained_project, tmp_path_factory) -> tuple[dict[str, bytes], list[np.ndarray]]:
    """The CALLBACKS run trained without a break, in a copy of the trained project of its
    own (with a checkpoint store of its own): its DVCLive files and its weights."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    root = shutil.copytree(trained_project, folder / "project", symlinks=True)
    set_params(root, CALLBACKS)
    run = run_script(root, "train", XDG_CACHE_HOME=str(folder / "user-cache"))
    assert run.returncode == 0, run.stderr
    assert "train: stopped early after epoch 6" in run.stdout  # see CALLBACKS
    log = training_log_files(root)
    assert b"learning_rate" in log["metrics.json"]  # the schedule's rate is logged
    return log, trained_weights(root)


@pytest.mark.parametrize(
    "killed_after",
    [5, 6],  # 5: the rate was cut, the stop still to come; 6: stopped, the model unsaved
)
def test_killed_run_with_early_stopping_and_a_schedule_resumes_byte_identical(
    trained_copy, checkpoint_store, uninterrupted, killed_after
):
    expected_log, expected_weights = uninterrupted
    set_params(trained_copy, CALLBACKS)
    kill_train_at(trained_copy, f"train: epoch {killed_after}/8")
    resumed = run_script(trained_copy, "train")
    assert resumed.returncode == 0, resumed.stderr
    assert f"train: resuming after epoch {killed_after} of 8" in resumed.stdout
    assert ("train: epoch 6/8" in resumed.stdout) == (killed_after < 6)
    assert "train: epoch 7/8" not in resumed.stdout
    assert "train: stopped early after epoch 6" in resumed.stdout
    assert training_log_files(trained_copy) == expected_log
    assert_same_weights(trained_copy, expected_weights)


# Every new part of the model family whose state a resume must carry: the augmentation
# layers' seed state (pens and scanners' too), batch norm's moving statistics, the one-cycle schedule's step
# (the optimizer's iterations), bfloat16 compute and label smoothing.
PENS_AND_SCANNERS = {
    "elastic": 1.5, "stroke": 0.7, "blur": 1.0, "noise": 0.1, "erasing": 0.5, "chance": 0.5,
}  # fmt: skip
MODEL_FAMILY = {
    "model": {
        "conv_blocks": [[8, 8], [16]],
        "downsample": "strided_conv",
        "block_dropout": [0.2, 0.2],
        "batch_norm": True,
        "dense_units": 32,
        "augment": {"rotation": 10.0, "zoom": 0.1, "shift": 0.1, **PENS_AND_SCANNERS},
    },
    "train": {
        "epochs": 3,
        "learning_rate": 0.01,  # one-cycle's peak
        "lr_schedule": "one_cycle",
        "early_stopping_patience": 0,
        "label_smoothing": 0.1,
        "precision": "mixed_bfloat16",
    },
}


def test_killed_run_with_augmentation_batch_norm_and_one_cycle_resumes_byte_identical(
    trained_copy, checkpoint_store
):
    set_params(trained_copy, MODEL_FAMILY)
    whole = run_script(trained_copy, "train")
    assert whole.returncode == 0, whole.stderr
    expected_log, expected_weights = training_log_files(trained_copy), trained_weights(trained_copy)
    assert b"learning_rate" in expected_log["metrics.json"]  # one_cycle's rate is logged too
    kill_train_at(trained_copy, "train: epoch 1/3")
    resumed = run_script(trained_copy, "train")
    assert resumed.returncode == 0, resumed.stderr
    assert "train: resuming after epoch 1 of 3" in resumed.stdout
    assert training_log_files(trained_copy) == expected_log
    assert_same_weights(trained_copy, expected_weights)
