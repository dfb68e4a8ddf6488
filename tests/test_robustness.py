"""The robustness stages, run as users run them (`dvc repro`, `dvc exp show`) in a copy
of the trained project (its suite built from 100 test images): the suite rebuilt is the
same bytes, the figures add up, appear beside the other metrics, and the gate refuses a
model below it in one line."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mnist_pipeline.corruptions import CLEAN, MNIST_C, SUITE

from .helpers import assert_one_line, dvc, run_dvc, set_params, stage_errors

pytestmark = pytest.mark.slow


def suite_digests(root) -> dict[str, str]:
    folder = root / "data/robustness"
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def test_the_suite_is_the_same_bytes_when_built_again(trained_copy):
    first = suite_digests(trained_copy)
    assert set(first) == {
        f"{name}_{kind}.npy" for name in (CLEAN, *SUITE) for kind in ("images", "labels")
    }
    picture = (trained_copy / "reports/figures/robustness_suite.png").read_bytes()

    rebuilt = run_dvc(trained_copy, "repro", "--force", "--single-item", "corrupt")
    assert "Running stage 'corrupt'" in rebuilt.stdout
    assert suite_digests(trained_copy) == first
    assert (trained_copy / "reports/figures/robustness_suite.png").read_bytes() == picture
    assert run_dvc(trained_copy, "status").stdout.strip() == "Data and pipelines are up to date."


def test_the_figures_are_each_sets_accuracy_their_mean_and_the_worst(trained_project):
    figures = json.loads((trained_project / "reports/robustness.json").read_text())["robustness"]
    accuracy = figures["accuracy"]
    assert list(accuracy) == list(SUITE)
    assert all(0 <= value <= 1 for value in accuracy.values())
    assert figures["mean"] == pytest.approx(np.mean(list(accuracy.values())), abs=1e-6)
    assert figures["mnist_c_mean"] == pytest.approx(
        np.mean([accuracy[name] for name in MNIST_C]), abs=1e-6
    )
    assert figures["worst"] == min(accuracy.values())
    assert 0.5 < figures["clean"] <= 1  # two epochs on 2,000 images
    labels = np.load(trained_project / "data/robustness/shot_noise_labels.npy")
    assert len(labels) == 100 and np.bincount(labels, minlength=10).min() >= 9  # stratified
    rendered = np.load(trained_project / "data/robustness/rendered_labels.npy")
    assert list(np.bincount(rendered, minlength=10)) == [10] * 10  # as many, 10 pairs' 0-9
    rows = (trained_project / "reports/robustness.csv").read_text().splitlines()
    assert rows[0] == "set,accuracy" and len(rows) == 1 + len(SUITE)


def test_the_figures_show_in_dvc_metrics_and_dvc_exp_show(trained_project):
    shown = run_dvc(trained_project, "metrics", "show", "--json").stdout
    metrics = json.loads(shown)
    (revision,) = metrics.values()
    robustness = revision["data"]["reports/robustness.json"]["data"]["robustness"]
    assert set(robustness) == {"clean", "mean", "mnist_c_mean", "worst", "accuracy"}
    table = run_dvc(trained_project, "exp", "show", "--csv", "--no-pager").stdout
    columns = table.splitlines()[0].split(",")
    assert {"robustness.mean", "robustness.worst", "robustness.accuracy.fog"} <= set(columns)


def test_a_model_below_min_robustness_fails_in_one_line(trained_copy):
    mean = json.loads((trained_copy / "reports/robustness.json").read_text())["robustness"]["mean"]
    set_params(trained_copy, {"evaluate": {"min_robustness": 1.0}})
    refused = dvc(trained_copy, "repro", "robustness")
    assert refused.returncode != 0
    (line,) = stage_errors(refused.stderr, "robustness")
    assert_one_line(line)
    assert line.startswith(f"robustness: error: the suite's mean accuracy {mean:.4f} is below ")
    assert "evaluate.min_robustness = 1.0 (worst: " in line

    set_params(trained_copy, {"evaluate": {"min_robustness": round(mean - 0.01, 2)}})
    assert "robustness: mean" in run_dvc(trained_copy, "repro", "robustness").stdout
