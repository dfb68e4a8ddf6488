"""An experiment runs the code of the copy it runs in, and records exactly that code:
queued (`dvc exp run --queue`, then `dvc queue start`), temporary (`--temp`), or a stage
script started by hand. (A killed queued experiment resuming: test_resume_after_kill.py.)

The experiments edit the training code, which the train stage alone imports, and run that
stage alone (`dvc exp run ... train`): what DVC records of the code is train's entry."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from .helpers import (
    copy_project,
    experiments_shown,
    git,
    queued_names,
    run_dvc,
    run_script,
    start_queue,
    wait_for_queue,
)

pytestmark = pytest.mark.slow

MODULE = "mnist_pipeline/training.py"  # imported by the train stage alone (dvc.yaml)


def edit(root: Path, marker: str) -> str:
    """Append a line that prints `marker` to the training module; return the file's md5."""
    path = root / MODULE
    path.write_text(path.read_text() + f"\nprint({marker!r})\n")
    return hashlib.md5(path.read_bytes()).hexdigest()


def undo_edit(root: Path) -> None:
    git(root, "checkout", "--", MODULE)


def test_queued_grid_runs_the_code_it_was_queued_with_after_the_edit_is_undone(queue_project):
    project = queue_project
    marker = "training.py: the queued edit ran"
    edited_md5 = edit(project, marker)
    queued = run_dvc(
        project,
        "exp",
        "run",
        "--queue",
        "-S",
        "train.learning_rate=0.0015,0.002",
        "-S",
        "train.epochs=1",
        "train",
    ).stdout
    names = queued_names(queued)
    assert len(names) == 2  # DVC's grid syntax: one experiment per value
    undo_edit(project)
    assert marker not in (project / MODULE).read_text()

    start_queue(project)
    status = wait_for_queue(project)
    recorded = experiments_shown(project)
    for name in names:
        assert re.search(rf"\b{name}\b.*Success", status), status
        log = run_dvc(project, "queue", "logs", name).stdout
        assert marker in log  # the queued code ran, not the workspace's
        assert recorded[name]["deps"][MODULE]["hash"] == edited_md5  # and is what DVC recorded
    rates = sorted(
        recorded[n]["params"]["params.yaml"]["data"]["train"]["learning_rate"] for n in names
    )
    assert rates == [0.0015, 0.002]


def test_temp_experiment_runs_and_records_the_code_of_its_copy(trained_copy, checkpoint_store):
    project = trained_copy
    marker = "training.py: the --temp edit ran"
    edited_md5 = edit(project, marker)
    run = run_dvc(
        project, "exp", "run", "--temp", "-n", "temp-edit", "-S", "train.epochs=1", "train"
    )
    assert marker in run.stdout
    assert experiments_shown(project)["temp-edit"]["deps"][MODULE]["hash"] == edited_md5


def test_stage_script_run_by_hand_imports_the_package_beside_it(tmp_path):
    root = copy_project(tmp_path / "project")
    marker = "stage.py: this copy's package"
    path = root / "mnist_pipeline/stage.py"
    path.write_text(path.read_text() + f"print({marker!r})\n")
    result = run_script(root, "preprocess")  # no data/raw here: it stops after importing
    assert marker in result.stdout
    assert result.returncode == 1 and "data/raw" in result.stderr
