"""Two `dvc repro` at once in one project: while the first runs, DVC's lock refuses the
second, which runs no stage; the first finishes undisturbed, with the same results as
the committed run."""

from __future__ import annotations

import pytest

from .helpers import dvc, in_background, read_until, run_dvc, training_results

pytestmark = pytest.mark.slow


def test_second_dvc_repro_is_refused_while_the_first_runs(trained_copy, checkpoint_store):
    root = trained_copy
    baseline = training_results(root)
    with in_background(root, "dvc", "repro", "--force", "--single-item", "train") as first:
        read_until(first, "> python stages/train.py")
        second = dvc(root, "repro", timeout=120)
        assert second.returncode != 0
        assert "is busy, it is being blocked by" in second.stderr  # DVC's lock on the outputs
        assert "Running stage" not in second.stdout
        first.stdout.read()
        assert first.wait(timeout=300) == 0
    run_dvc(root, "repro")  # evaluate, for the retrained model
    assert training_results(root) == baseline
    assert run_dvc(root, "status").stdout.strip() == "Data and pipelines are up to date."
