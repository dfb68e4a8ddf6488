"""Ctrl-C in any stage of `dvc repro` (SIGINT to its process group, as a terminal sends
it): the stage says in one line that it was interrupted and wrote nothing, with no
traceback; no staging file or folder is left; dvc.lock is untouched; and what DVC
removed before running the stage comes back from git, DVC's cache or its run-cache."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from .helpers import LoopbackMirror, git, in_background, read_until, run_dvc

pytestmark = pytest.mark.slow


def leftovers(root: Path) -> list[Path]:
    """Staging files or folders that a stage failed to clean up."""
    return [p for p in root.rglob(".*.tmp*") if ".git" not in p.parts and ".dvc" not in p.parts]


def printed(marker: str):
    """Busy once the stage has printed a line holding `marker`."""

    def wait(process: subprocess.Popen, mirror: LoopbackMirror) -> None:
        read_until(process, marker)

    return wait


def downloading_from_the_stalled_mirror(process: subprocess.Popen, mirror: LoopbackMirror) -> None:
    """Busy once fetch has asked the mirror, which never finishes sending, for a file."""
    read_until(process, "Running stage 'fetch'")
    mirror.wait_for_requests(1, timeout=60)


BUSY = {  # stage: how to wait until it is in the middle of its work
    "fetch": downloading_from_the_stalled_mirror,
    "preprocess": printed("preprocess: checking the MNIST files"),
    "train": printed("train: epoch 1/"),
    "evaluate": printed("evaluate: scoring"),
}


@pytest.mark.parametrize("stage", BUSY)
def test_ctrl_c_in_a_stage_is_one_line_no_partial_output_and_no_lock_change(
    trained_copy, checkpoint_store, serve, mnist_mirror, stage
):
    root = trained_copy
    lock_before = (root / "dvc.lock").read_bytes()
    metrics_before = (root / "reports/metrics.json").read_bytes()
    stalling = serve(mnist_mirror, mode="stall", stall_s=30)
    env = {"MNIST_MIRROR": stalling.url, "MNIST_TIMEOUT": "60"}
    with in_background(root, "dvc", "repro", "--force", "--single-item", stage, **env) as process:
        BUSY[stage](process, stalling)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest = process.stdout.read()
        assert process.wait(timeout=60) != 0
    assert f"{stage}: interrupted, no output written" in rest, rest
    assert "Traceback" not in rest
    assert (root / "dvc.lock").read_bytes() == lock_before
    assert leftovers(root) == []

    # DVC removed the stage's outputs before running it: git has the training log, DVC's
    # cache the others
    git(root, "checkout", "--", "dvclive")
    run_dvc(root, "checkout")
    if stage == "evaluate":  # DVC removed metrics.json too: the run-cache has it
        assert "Stage 'evaluate' is cached" in run_dvc(root, "repro").stdout
    assert (root / "reports/metrics.json").read_bytes() == metrics_before
    assert run_dvc(root, "status").stdout.strip() == "Data and pipelines are up to date."
