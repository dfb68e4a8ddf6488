"""End to end: the real `dvc repro` in a copy of the project, on a small subset, fetching
over HTTP from a server on 127.0.0.1 that serves the real MNIST files."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from .helpers import PROJECT_ROOT, SMALL, copy_project, run_dvc, set_params, stages_run

pytestmark = pytest.mark.slow


def lock_entry(lock_text: str, stage: str) -> dict:
    return yaml.safe_load(lock_text)["stages"][stage]


def test_dvc_repro_builds_caches_and_reruns_only_what_a_param_change_affects(
    mnist_mirror, serve, tmp_path
):
    root = copy_project(tmp_path / "project")
    set_params(root, SMALL)
    mirror = serve(mnist_mirror)
    url = mirror.url

    first = run_dvc(root, "repro", MNIST_MIRROR=url)
    assert stages_run(first.stdout) == [
        "fetch", "preprocess", "train", "evaluate", "export", "corrupt", "robustness",
    ]  # fmt: skip
    assert len(mirror.requests) == 4  # the real download path, over HTTP

    metrics = json.loads((root / "reports/metrics.json").read_text())["test"]
    assert 0.5 < metrics["accuracy"] <= 1 and 0 < metrics["loss"] < 2.3
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert set(metrics["macro_avg"]) == {"precision", "recall", "f1"}
    assert sum(c["support"] for c in metrics["per_class"].values()) == 10_000
    predictions = pd.read_csv(root / "reports/predictions.csv")
    assert list(predictions.columns) == ["actual", "predicted"] and len(predictions) == 10_000
    assert (predictions.actual == predictions.predicted).mean() == pytest.approx(
        metrics["accuracy"], abs=1e-6
    )
    stats = json.loads((root / "reports/dataset_stats.json").read_text())
    assert [stats[s]["count"] for s in ("train", "val", "test")] == [2000, 1000, 10_000]
    assert (root / "reports/figures/samples.png").read_bytes()[:4] == b"\x89PNG"
    training_log = json.loads((root / "dvclive/metrics.json").read_text())
    assert set(training_log) >= {"train", "val", "step"}

    # fetch gives the same bytes whatever the source: its lock entry is the committed one.
    committed_lock = (PROJECT_ROOT / "dvc.lock").read_text()
    assert lock_entry((root / "dvc.lock").read_text(), "fetch") == lock_entry(
        committed_lock, "fetch"
    )

    again = run_dvc(root, "repro", MNIST_MIRROR=url)
    assert stages_run(again.stdout) == []
    assert (
        run_dvc(root, "status", MNIST_MIRROR=url).stdout.strip()
        == "Data and pipelines are up to date."
    )

    set_params(root, {"train": {"epochs": 2}})
    changed = run_dvc(root, "repro", MNIST_MIRROR=url)
    assert stages_run(changed.stdout) == ["train", "evaluate", "export", "robustness"]
    assert json.loads((root / "dvclive/metrics.json").read_text())["step"] == 1

    # Same params and seed: retraining from scratch gives byte-identical metrics.
    metrics_before = (root / "reports/metrics.json").read_bytes()
    log_before = (root / "dvclive/metrics.json").read_bytes()
    rerun = run_dvc(
        root, "repro", "--force", "--single-item", "train", "evaluate", MNIST_MIRROR=url
    )
    assert stages_run(rerun.stdout) == ["train", "evaluate"]
    assert (root / "reports/metrics.json").read_bytes() == metrics_before
    assert (root / "dvclive/metrics.json").read_bytes() == log_before
