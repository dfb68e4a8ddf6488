"""`train.distribution: data_parallel` runs the backend's own data-parallel engine; on
one device (this CPU) it is the same training, with one replica."""

from __future__ import annotations

import json
import shutil

import pytest

from .helpers import copy_project, run_script, set_params

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["tensorflow"])
def test_data_parallel_on_one_device_trains_like_a_single_device_run(
    trained_project, tmp_path, backend
):
    logs = {}
    for kind in ("none", "data_parallel"):
        root = copy_project(tmp_path / kind)
        shutil.copytree(trained_project / "data/processed", root / "data/processed")
        set_params(
            root, {"preprocess": {"max_train": 2000}, "train": {"epochs": 1, "distribution": kind}}
        )
        result = run_script(root, "train", KERAS_BACKEND=backend)
        assert result.returncode == 0, result.stderr
        assert ("data-parallel over 1 device(s)" in result.stdout) == (kind == "data_parallel")
        logs[kind] = json.loads((root / "dvclive/metrics.json").read_text())
    for split in ("train", "val"):
        for metric in ("loss", "accuracy"):
            assert logs["data_parallel"][split][metric] == pytest.approx(
                logs["none"][split][metric], abs=1e-4
            )
