"""DVC's run-cache covers every stage, train included: going back to params that were
run before gets their outputs back without running a stage."""

from __future__ import annotations

import pytest

from .helpers import run_dvc, set_params, stages_run

pytestmark = pytest.mark.slow


def test_params_run_before_come_back_from_the_run_cache_without_training(trained_copy):
    committed = (trained_copy / "dvc.lock").read_text()
    set_params(trained_copy, {"train": {"epochs": 1}})
    assert stages_run(run_dvc(trained_copy, "repro").stdout) == [
        "train", "evaluate", "export", "robustness",
    ]  # fmt: skip

    set_params(trained_copy, {"train": {"epochs": 2}})  # the committed run's
    restored = run_dvc(trained_copy, "repro").stdout
    assert stages_run(restored) == []
    for stage in ("train", "evaluate", "export", "robustness"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in restored
    assert (trained_copy / "dvc.lock").read_text() == committed
