"""DVC's run-cache covers every stage, train included: going back to params that were
run before gets their outputs back without running a stage."""

from __future__ import annotations

import pytest

from .helpers import run_dvc, set_params, stages_run

pytestmark = pytest.mark.slow

RERUN = ["train", "evaluate", "export", "robustness"]  # what a change of train.epochs runs


def test_params_run_before_come_back_from_the_run_cache_without_training(
    trained_copy, trained_records, first_run
):
    committed = (trained_copy / "dvc.lock").read_text()
    # The trained project's build ran train.epochs 1, then 2 (rerunning those stages):
    # its run-cache holds both runs.
    assert "train: epoch 1/1" in trained_records["first"]
    assert stages_run(trained_records["epochs_2"]) == RERUN

    for epochs, lock in ((1, (first_run / "dvc.lock").read_text()), (2, committed)):
        set_params(trained_copy, {"train": {"epochs": epochs}})
        restored = run_dvc(trained_copy, "repro").stdout
        assert stages_run(restored) == [], epochs
        for stage in RERUN:
            assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in restored
        assert (trained_copy / "dvc.lock").read_text() == lock, epochs
