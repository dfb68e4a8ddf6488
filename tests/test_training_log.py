"""The training log is live and resumable: DVCLive's files grow as each epoch ends (and
`dvc exp show` follows them while the run trains); a killed run, with early stopping and
a plateau schedule on, or with the model family's augmentation, batch norm, one-cycle
schedule, label smoothing and bfloat16, resumes into a log and a model identical to an
uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from .helpers import (
    in_background,
    read_until,
    run_dvc,
    run_script,
    set_params,
    training_log_files,
)

pytestmark = pytest.mark.slow

LOSS_LOG = "dvclive/plots/metrics/train/loss.tsv"
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
def project(trained_copy) -> Path:
    """The trained project, copied for this module (its outputs and DVC cache)."""
    return trained_copy


def weights(root: Path) -> list[np.ndarray]:
    from mnist_pipeline.model import keras

    return keras.saving.load_model(root / "models/model.keras").get_weights()


def test_dvclive_files_grow_as_each_epoch_ends_and_exp_show_follows(project):
    epochs = 3
    run = ("exp", "run", "-S", f"train.epochs={epochs}", "-S", "train.learning_rate=0.0021")
    with in_background(project, "dvc", *run) as process:
        for epoch in range(1, epochs + 1):
            read_until(process, f"train: epoch {epoch}/{epochs}")
            os.killpg(process.pid, signal.SIGSTOP)  # hold the run between two epochs
            rows = (project / LOSS_LOG).read_text().splitlines()
            assert len(rows) == 1 + epoch  # a header, then one row per finished epoch
            summary = json.loads((project / "dvclive/metrics.json").read_text())
            assert summary["step"] == epoch - 1
            shown = json.loads(run_dvc(project, "exp", "show", "--json").stdout)
            workspace = next(entry for entry in shown if entry["rev"] == "workspace")
            assert workspace["data"]["metrics"]["dvclive/metrics.json"]["data"] == summary
            os.killpg(process.pid, signal.SIGCONT)
        process.stdout.read()
        assert process.wait(timeout=300) == 0
    assert len((project / LOSS_LOG).read_text().splitlines()) == 1 + epochs


@pytest.fixture(scope="module")
def uninterrupted(project) -> tuple[dict[str, bytes], list[np.ndarray]]:
    """The CALLBACKS run trained without a break: its DVCLive files and its weights."""
    set_params(project, CALLBACKS)
    run = run_script(project, "train")
    assert run.returncode == 0, run.stderr
    assert "train: stopped early after epoch 6" in run.stdout  # see CALLBACKS
    log = training_log_files(project)
    assert b"learning_rate" in log["metrics.json"]  # the schedule's rate is logged
    return log, weights(project)


@pytest.mark.parametrize(
    "killed_after",
    [5, 6],  # 5: the rate was cut, the stop still to come; 6: stopped, the model unsaved
)
def test_killed_run_with_early_stopping_and_a_schedule_resumes_byte_identical(
    project, uninterrupted, killed_after
):
    expected_log, expected_weights = uninterrupted
    with in_background(project, sys.executable, "stages/train.py") as process:
        read_until(process, f"train: epoch {killed_after}/8")
        os.killpg(process.pid, signal.SIGKILL)
    resumed = run_script(project, "train")
    assert resumed.returncode == 0, resumed.stderr
    assert f"train: resuming after epoch {killed_after} of 8" in resumed.stdout
    assert ("train: epoch 6/8" in resumed.stdout) == (killed_after < 6)
    assert "train: epoch 7/8" not in resumed.stdout
    assert "train: stopped early after epoch 6" in resumed.stdout
    assert training_log_files(project) == expected_log
    for resumed_weights, uninterrupted_weights in zip(
        weights(project), expected_weights, strict=True
    ):
        assert np.array_equal(resumed_weights, uninterrupted_weights)


# Every new part of the model family whose state a resume must carry: the augmentation
# layers' seed state, batch norm's moving statistics, the one-cycle schedule's step
# (the optimizer's iterations), bfloat16 compute and label smoothing.
MODEL_FAMILY = {
    "model": {
        "conv_blocks": [[8, 8], [16]],
        "downsample": "strided_conv",
        "block_dropout": [0.2, 0.2],
        "batch_norm": True,
        "dense_units": 32,
        "augment": {"rotation": 10.0, "zoom": 0.1, "shift": 0.1},
    },
    "train": {
        "epochs": 3,
        "lr_schedule": "one_cycle",
        "early_stopping_patience": 0,
        "label_smoothing": 0.1,
        "precision": "mixed_bfloat16",
    },
}


def test_killed_run_with_augmentation_batch_norm_and_one_cycle_resumes_byte_identical(project):
    set_params(project, MODEL_FAMILY)
    whole = run_script(project, "train")
    assert whole.returncode == 0, whole.stderr
    expected_log, expected_weights = training_log_files(project), weights(project)
    assert b"learning_rate" in expected_log["metrics.json"]  # one_cycle's rate is logged too
    with in_background(project, sys.executable, "stages/train.py") as process:
        read_until(process, "train: epoch 1/3")
        os.killpg(process.pid, signal.SIGKILL)
    resumed = run_script(project, "train")
    assert resumed.returncode == 0, resumed.stderr
    assert "train: resuming after epoch 1 of 3" in resumed.stdout
    assert training_log_files(project) == expected_log
    for resumed_weights, uninterrupted_weights in zip(
        weights(project), expected_weights, strict=True
    ):
        assert np.array_equal(resumed_weights, uninterrupted_weights)
