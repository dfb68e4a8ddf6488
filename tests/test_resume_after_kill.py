"""A training run killed mid-way resumes from its checkpoint when DVC runs it again:
`dvc repro` killed with SIGKILL after its second epoch ends with test metrics and every
DVCLive file byte-identical to an uninterrupted run's, while a checkpoint forged to claim
a finished run is refused in one line and training starts over; a queued experiment
killed by `dvc queue kill` resumes when queued again, though DVC deleted its copy.
(Every part of the training state a resume carries: test_resume_state.py.)

The runs reproduce train, and evaluate where its metrics are compared, not export and
robustness (that a change of train's params reruns those too: test_pipeline.py)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest

from .helpers import (
    in_background,
    kill_when_running,
    queued_names,
    read_until,
    run_dvc,
    set_params,
    stages_run,
    start_queue,
    training_log_files,
    training_results,
    wait_for_queue,
    wait_until,
)

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- through `dvc repro`

EPOCHS = 3


def saved_state(checkpoint: Path) -> dict:
    with zipfile.ZipFile(checkpoint) as archive:
        return json.loads(archive.read("state.json"))


def forge(checkpoint: Path) -> None:
    """Make the checkpoint file `checkpoint` claim a finished run, with weights of the
    wrong shape injected (a well-formed zip, its checksums right)."""
    with zipfile.ZipFile(checkpoint) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = io.BytesIO()
    np.lib.format.write_array(weights, np.zeros((1, 1, 1, 1), dtype=np.float32))
    members["model_0.npy"] = weights.getvalue()
    state = json.loads(members["state.json"])
    state["history"] = state["history"][:1] * EPOCHS
    members["state.json"] = json.dumps(state).encode()
    with zipfile.ZipFile(checkpoint, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_killed_dvc_repro_resumes_with_identical_results_and_a_forged_checkpoint_is_refused(
    trained_copy, checkpoint_store, tmp_path
):
    root = trained_copy
    # a run DVC has not seen yet, one epoch longer than the committed one
    set_params(root, {"train": {"learning_rate": 0.0015, "epochs": EPOCHS}})
    with in_background(root, "dvc", "repro") as process:
        read_until(process, f"train: epoch 2/{EPOCHS}")
        os.killpg(process.pid, signal.SIGKILL)
    (checkpoint,) = checkpoint_store.glob("*.ckpt")  # not one being written
    assert len(saved_state(checkpoint)["history"]) == 2
    assert len((root / "dvclive/plots/metrics/train/loss.tsv").read_text().splitlines()) == 3
    genuine = shutil.copy(checkpoint, tmp_path / "genuine.ckpt")

    forge(checkpoint)  # refused in one line: training starts over, from epoch 1
    fresh = run_dvc(root, "repro", "train", "evaluate")  # what the results below read
    assert stages_run(fresh.stdout) == ["train", "evaluate"]
    notes = [line for line in fresh.stderr.splitlines() if "checkpoint" in line]
    assert notes == [
        f"train: ignoring the checkpoint in {checkpoint}: model_0 is "
        "float32 (1, 1, 1, 1), this model's is float32 (3, 3, 1, 32)"
    ]
    assert not [line for line in fresh.stdout.splitlines() if "checkpoint" in line]  # stderr
    assert "resuming" not in fresh.stdout and "train: epoch 1/" in fresh.stdout
    assert list(checkpoint_store.iterdir()) == []  # dropped, and none left after the run
    uninterrupted = training_results(root), training_log_files(root)

    shutil.copy(genuine, checkpoint)  # the genuine one: resumed after epoch 2
    resumed = run_dvc(root, "repro", "--force", "--single-item", "train", "evaluate")
    assert f"train: resuming after epoch 2 of {EPOCHS}" in resumed.stdout
    assert "train: epoch 1/" not in resumed.stdout and f"train: epoch 3/{EPOCHS}" in resumed.stdout
    assert list(checkpoint_store.iterdir()) == []  # removed after the successful run
    assert (training_results(root), training_log_files(root)) == uninterrupted


# ---------------------------------------------------------------- as a queued experiment


def epochs_saved(store: Path) -> int:
    """Epochs done in the one checkpoint in `store` (0 while there is none)."""
    checkpoints = list(store.glob("*.ckpt"))  # not one being written
    return len(saved_state(checkpoints[0])["history"]) if checkpoints else 0


def test_killed_queued_experiment_resumes_when_queued_again(queue_project, checkpoint_store):
    project = queue_project
    args = ("exp", "run", "--queue", "-S", "train.epochs=8", "-S", "train.learning_rate=0.0012")
    args += ("train",)  # the stage that checkpoints and resumes, alone
    (first,) = queued_names(run_dvc(project, *args).stdout)
    start_queue(project)
    wait_until(lambda: epochs_saved(checkpoint_store) >= 1, 300, "a checkpoint of one epoch")
    kill_when_running(project, first)
    wait_for_queue(project)
    assert not list((project / ".dvc/tmp/exps").glob("tmp*/dvclive"))  # its copy is gone
    (checkpoint,) = checkpoint_store.glob("*.ckpt")
    done = len(saved_state(checkpoint)["history"])
    assert 1 <= done < 8

    (second,) = queued_names(run_dvc(project, *args).stdout)
    start_queue(project)
    assert re.search(rf"\b{second}\b.*Success", wait_for_queue(project))
    log = run_dvc(project, "queue", "logs", second).stdout
    assert f"train: resuming after epoch {done} of 8" in log
    assert "train: epoch 1/8" not in log and "train: epoch 8/8" in log
    assert list(checkpoint_store.iterdir()) == []  # removed once it finished
