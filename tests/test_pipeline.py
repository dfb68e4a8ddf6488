"""End to end: the real `dvc repro` in a copy of the project, on a small subset, fetching
over HTTP from a server on 127.0.0.1 that serves the real MNIST files. The run is the
trained project's own build (tests/shared_project.py), which every other test then
reads: this test checks what its commands printed and wrote, and retrains a copy, during
which DVC's lock refuses a second `dvc repro` (which runs no stage), and which writes the
very model and training log that dvc.lock records (training is reproducible to the byte)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from .helpers import (
    PROJECT_ROOT,
    dvc,
    git,
    in_background,
    read_until,
    run_dvc,
    stages_run,
    training_results,
)

pytestmark = pytest.mark.slow


def lock_entry(lock_text: str, stage: str) -> dict:
    return yaml.safe_load(lock_text)["stages"][stage]


def test_dvc_repro_builds_caches_and_reruns_only_what_a_param_change_affects(
    trained_records, first_run, trained_project, trained_copy, checkpoint_store
):
    # The build: SMALL params, one epoch, `dvc repro` with MNIST_MIRROR the loopback URL.
    assert stages_run(trained_records["first"]) == [
        "fetch", "preprocess", "train", "evaluate", "export", "corrupt", "robustness",
    ]  # fmt: skip
    assert len(trained_records["requests"]) == 4  # the real download path, over HTTP

    metrics = json.loads((first_run / "reports/metrics.json").read_text())["test"]
    assert 0.5 < metrics["accuracy"] <= 1 and 0 < metrics["loss"] < 2.3
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert set(metrics["macro_avg"]) == {"precision", "recall", "f1"}
    assert sum(c["support"] for c in metrics["per_class"].values()) == 10_000
    predictions = pd.read_csv(first_run / "reports/predictions.csv")
    assert list(predictions.columns) == ["actual", "predicted"] and len(predictions) == 10_000
    assert (predictions.actual == predictions.predicted).mean() == pytest.approx(
        metrics["accuracy"], abs=1e-6
    )
    stats = json.loads((first_run / "reports/dataset_stats.json").read_text())
    assert [stats[s]["count"] for s in ("train", "val", "test")] == [2000, 1000, 10_000]
    assert (first_run / "reports/figures/samples.png").read_bytes()[:4] == b"\x89PNG"
    training_log = json.loads((first_run / "dvclive/metrics.json").read_text())
    assert set(training_log) >= {"train", "val", "step"}

    # fetch gives the same bytes whatever the source: its lock entry is the committed one.
    committed_lock = (PROJECT_ROOT / "dvc.lock").read_text()
    assert lock_entry((first_run / "dvc.lock").read_text(), "fetch") == lock_entry(
        committed_lock, "fetch"
    )

    # Then a second `dvc repro` and `dvc status`, in the build:
    assert stages_run(trained_records["again"]) == []
    assert trained_records["status"].strip() == "Data and pipelines are up to date."

    # ... and train.epochs set to 2:
    assert stages_run(trained_records["epochs_2"]) == ["train", "evaluate", "export", "robustness"]
    assert json.loads((trained_project / "dvclive/metrics.json").read_text())["step"] == 1

    # Same params and seed: retraining from scratch (in a copy, with a checkpoint store
    # of its own) gives byte-identical metrics. While it runs, a second `dvc repro` in
    # the project is refused by DVC's lock and runs no stage.
    root = trained_copy
    baseline = training_results(root)
    trained_lock = (root / "dvc.lock").read_text()
    forced = ("dvc", "repro", "--force", "--single-item", "train", "evaluate")
    with in_background(root, *forced) as first:
        printed = read_until(first, "> python stages/train.py")
        second = dvc(root, "repro", timeout=120)
        assert second.returncode != 0
        assert "is busy, it is being blocked by" in second.stderr  # DVC's lock on the outputs
        assert "Running stage" not in second.stdout
        printed += first.stdout.read()
        assert first.wait(timeout=300) == 0, printed
    assert stages_run(printed) == ["train", "evaluate"]
    assert training_results(root) == baseline  # reports/metrics.json, dvclive/metrics.json
    # ... and the very models/model.keras and training log dvc.lock records for train
    # (--force bypasses the run-cache: train really ran, as printed above)
    assert (
        lock_entry((root / "dvc.lock").read_text(), "train")["outs"]
        == lock_entry(trained_lock, "train")["outs"]
    )
    assert git(root, "status", "--porcelain", "dvclive") == ""
    assert run_dvc(root, "status").stdout.strip() == "Data and pipelines are up to date."
