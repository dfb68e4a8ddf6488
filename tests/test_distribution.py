"""Where training runs: `train.distribution: data_parallel` runs the backend's own
data-parallel engine (on one device, this CPU, the same training with one replica), and
`train.backend` trains on each installed Keras backend a model that evaluate reads; a
backend that is not installed is a one-line error."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from .helpers import copy_project, run_script, set_params

pytestmark = pytest.mark.slow

TINY_MODEL = {"conv_blocks": [[8]], "block_dropout": [0.25], "dense_units": 32}


def test_data_parallel_on_one_device_trains_like_a_single_device_run(
    trained_project, trained_records, first_run, tmp_path
):
    # The single-device run: the trained project's first (its params but one epoch, on
    # the same data, train.distribution none).
    assert "train: epoch 1/1" in trained_records["first"]
    assert "data-parallel over 1 device(s)" not in trained_records["first"]
    logs = {"none": json.loads((first_run / "dvclive/metrics.json").read_text())}

    root = copy_project(tmp_path / "data_parallel")
    shutil.copytree(trained_project / "data/processed", root / "data/processed")
    set_params(
        root,
        {
            "preprocess": {"max_train": 2000},
            "train": {"epochs": 1, "distribution": "data_parallel"},
        },
    )
    result = run_script(root, "train")
    assert result.returncode == 0, result.stderr
    assert "data-parallel over 1 device(s)" in result.stdout
    logs["data_parallel"] = json.loads((root / "dvclive/metrics.json").read_text())
    for split in ("train", "val"):
        for metric in ("loss", "accuracy"):
            assert logs["data_parallel"][split][metric] == pytest.approx(
                logs["none"][split][metric], abs=1e-4
            )


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_train_runs_on_each_installed_keras_backend_and_evaluate_reads_its_model(
    trained_project, tmp_path, backend
):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"the {backend} package is not installed")
    root = copy_project(tmp_path / backend)
    shutil.copytree(trained_project / "data/processed", root / "data/processed")
    set_params(
        root,
        {
            "preprocess": {"max_train": 2000},
            "model": TINY_MODEL,  # what takes time here is compiling: keep the model small
            "train": {"epochs": 1, "backend": backend, "learning_rate": 0.01},
        },
    )
    trained = run_script(root, "train")
    assert trained.returncode == 0, trained.stderr
    evaluated = run_script(root, "evaluate")  # always TensorFlow: the .keras file is portable
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((root / "reports/metrics.json").read_text())["test"]["accuracy"] > 0.5


def test_a_backend_that_is_not_installed_is_a_one_line_error(tmp_path, monkeypatch):
    missing = next((b for b in ("jax", "torch") if importlib.util.find_spec(b) is None), None)
    if missing is None:
        pytest.skip("every backend is installed here")
    root = copy_project(tmp_path / "project")
    set_params(root, {"train": {"backend": missing}})
    (root / "data/processed").mkdir(parents=True)
    result = run_script(root, "train")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"train: error: train.backend = {missing!r}, but {missing} is not installed (pip install {missing})"
    )
