"""Training is reproducible to the byte: running the train stage again on the same data,
params and code writes the same models/model.keras and training log, so what dvc.lock
records for train does not change."""

from __future__ import annotations

import json
import zipfile

import pytest
import yaml

from .helpers import git, run_dvc, stages_run

pytestmark = pytest.mark.slow


def train_outputs(lock_text: str) -> list[dict]:
    return yaml.safe_load(lock_text)["stages"]["train"]["outs"]


def test_rerunning_train_writes_the_outputs_dvc_lock_already_records(trained_copy):
    committed = (trained_copy / "dvc.lock").read_text()
    result = run_dvc(trained_copy, "repro", "--force", "--single-item", "--no-run-cache", "train")
    assert stages_run(result.stdout) == ["train"]
    assert train_outputs((trained_copy / "dvc.lock").read_text()) == train_outputs(committed)
    assert git(trained_copy, "status", "--porcelain", "dvclive") == ""


def test_the_saved_model_holds_no_save_time(trained_project):
    with zipfile.ZipFile(trained_project / "models/model.keras") as saved:
        assert {entry.date_time for entry in saved.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "date_saved" not in json.loads(saved.read("metadata.json"))
