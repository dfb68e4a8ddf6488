"""An experiment runs the code of the copy it runs in, and records exactly that code:
queued (`dvc exp run --queue`, then `dvc queue start`), temporary (`--temp`), or a stage
script started by hand. A killed queued experiment resumes when it is queued again."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import copy_project, dvc, experiments_shown, git, project_env, run_dvc, run_script

pytestmark = pytest.mark.slow

MODULE = "mnist_pipeline/model.py"


@pytest.fixture(scope="module")
def project(trained_copy) -> Iterator[Path]:
    """The trained project, copied for this module; its DVC queue worker is stopped at
    the end."""
    yield trained_copy
    run_dvc(trained_copy, "queue", "stop", "--kill")


def edit(root: Path, marker: str) -> str:
    """Append a line that prints `marker` to the model module; return the file's md5."""
    path = root / MODULE
    path.write_text(path.read_text() + f"print({marker!r})\n")
    return hashlib.md5(path.read_bytes()).hexdigest()


def undo_edit(root: Path) -> None:
    git(root, "checkout", "--", MODULE)


def start_queue(root: Path) -> None:
    """`dvc queue start`. Its worker runs on in the background (until the queue is
    empty), holding on to the output it inherited: so none is captured here."""
    subprocess.run(
        ["dvc", "queue", "start"],
        cwd=root,
        env=project_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )


def queued_names(output: str) -> list[str]:
    return re.findall(r"Queued experiment '([\w-]+)'", output)


def wait_for_queue(root: Path, timeout: float = 600) -> str:
    """Wait until no queued experiment is queued or running; return `dvc queue status`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run_dvc(root, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        time.sleep(2)
    raise AssertionError(f"the queue did not finish in {timeout} s:\n{status}")


def test_queued_grid_runs_the_code_it_was_queued_with_after_the_edit_is_undone(project):
    marker = "model.py: the queued edit ran"
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


def test_temp_experiment_runs_and_records_the_code_of_its_copy(project):
    marker = "model.py: the --temp edit ran"
    edited_md5 = edit(project, marker)
    run = run_dvc(project, "exp", "run", "--temp", "-n", "temp-edit", "-S", "train.epochs=1")
    undo_edit(project)
    assert marker in run.stdout
    assert experiments_shown(project)["temp-edit"]["deps"][MODULE]["hash"] == edited_md5


def kill_when_running(root: Path, name: str, timeout: float = 60) -> None:
    """`dvc queue kill name`, again until DVC takes it: DVC counts a queued experiment as
    running only once its worker has filed the task as taken, a moment after it starts."""
    deadline = time.monotonic() + timeout
    while True:
        killed = dvc(root, "queue", "kill", name, timeout=120)
        if killed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert killed.returncode == 0, killed.stderr


def test_killed_queued_experiment_resumes_when_queued_again(project, checkpoint_store):
    """Other tests of this session may have left checkpoints in the store (a run stopped
    by Ctrl-C keeps one): only the folder this experiment makes counts."""
    earlier = set(checkpoint_store.glob("*")) if checkpoint_store.exists() else set()

    def this_runs_state() -> list[Path]:
        found = checkpoint_store.glob("[!.]*/state.json")  # not a staging copy
        return [state for state in found if state.parent not in earlier]

    args = ("exp", "run", "--queue", "-S", "train.epochs=8", "-S", "train.learning_rate=0.0012")
    (first,) = queued_names(run_dvc(project, *args).stdout)
    start_queue(project)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until its checkpoint holds an epoch
        states = this_runs_state()
        if states and json.loads(states[0].read_text())["epochs_done"] >= 1:
            break
        time.sleep(0.2)
    kill_when_running(project, first)
    wait_for_queue(project)
    assert not list((project / ".dvc/tmp/exps").glob("tmp*/dvclive"))  # its copy is gone
    (state,) = this_runs_state()
    done = json.loads(state.read_text())["epochs_done"]
    assert 1 <= done < 8

    (second,) = queued_names(run_dvc(project, *args).stdout)
    start_queue(project)
    assert re.search(rf"\b{second}\b.*Success", wait_for_queue(project))
    log = run_dvc(project, "queue", "logs", second).stdout
    assert f"train: resuming after epoch {done} of 8" in log
    assert "train: epoch 1/8" not in log and "train: epoch 8/8" in log
    assert not state.parent.exists()  # removed once it finished


def test_stage_script_run_by_hand_imports_the_package_beside_it(tmp_path):
    root = copy_project(tmp_path / "project")
    marker = "stage.py: this copy's package"
    path = root / "mnist_pipeline/stage.py"
    path.write_text(path.read_text() + f"print({marker!r})\n")
    result = run_script(root, "preprocess")  # no data/raw here: it stops after importing
    assert marker in result.stdout
    assert result.returncode == 1 and "data/raw" in result.stderr
