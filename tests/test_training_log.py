"""The training log is live: DVCLive's files grow by one row as each epoch ends, and
`dvc exp show` reports them while the run trains. The experiment runs the train stage
alone (`dvc exp run ... train`), which writes the log. (A killed run resuming into an
identical log: test_resume_after_kill.py.)"""

from __future__ import annotations

import json
import os
import signal

import pytest

from .helpers import in_background, read_until, run_dvc

pytestmark = pytest.mark.slow

LOSS_LOG = "dvclive/plots/metrics/train/loss.tsv"


def test_dvclive_files_grow_as_each_epoch_ends_and_exp_show_follows(trained_copy, checkpoint_store):
    project, epochs = trained_copy, 3
    run = ("exp", "run", "-S", f"train.epochs={epochs}", "-S", "train.learning_rate=0.0021")
    with in_background(project, "dvc", *run, "train") as process:  # train alone
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
