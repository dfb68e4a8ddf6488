"""The model registry: dvc.yaml's `artifacts:` declare the model (and its SavedModel);
`gto register` (GTO comes with DVC) gives a version a git tag, and `dvc artifacts get`
fetches it from the team's git remote and DVC remote into any folder: the latest
version, a version by number, or the one assigned to a stage (prod)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .helpers import PROJECT_ROOT, git, project_env, run_dvc

GTO = str(Path(sys.executable).parent / "gto")  # GTO, the registry's git-tag tool, comes with DVC


def test_dvc_yaml_declares_the_models_in_the_registry():
    artifacts = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["artifacts"]
    assert {name: (a["path"], a["type"]) for name, a in artifacts.items()} == {
        "mnist-cnn": ("models/model.keras", "model"),
        "mnist-cnn-savedmodel": ("models/saved_model", "model"),
    }
    assert all(a["desc"] and "mnist" in a["labels"] for a in artifacts.values())


@pytest.mark.slow
def test_artifacts_get_fetches_each_model_from_the_remotes(trained_project, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(trained_project, project, symlinks=True)
    run_dvc(project, "remote", "add", "--default", "storage", str(tmp_path / "dvc-storage"))
    git(project, "commit", "-qam", "a DVC remote for the team")
    for command in (
        ["register", "mnist-cnn", "--version", "v1.0.0"],  # the git tag mnist-cnn@v1.0.0
        ["register", "mnist-cnn-savedmodel", "--version", "v1.0.0"],
        ["assign", "mnist-cnn", "--version", "v1.0.0", "--stage", "prod"],
    ):
        subprocess.run([GTO, *command], cwd=project, env=project_env(project), check=True)
    shown = subprocess.run([GTO, "show", "--json"], cwd=project, capture_output=True, check=True)
    assert {"mnist-cnn", "mnist-cnn-savedmodel"} <= set(json.loads(shown.stdout))
    run_dvc(project, "push")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(origin)], check=True)

    elsewhere = tmp_path / "elsewhere"  # not a clone: just a folder
    elsewhere.mkdir()
    for options in (
        ["mnist-cnn", "-o", "latest.keras"],
        ["mnist-cnn", "--rev", "v1.0.0", "-o", "v1.keras"],
        ["mnist-cnn", "--stage", "prod", "-o", "prod.keras"],
        ["mnist-cnn-savedmodel", "-o", "saved_model"],
    ):
        run_dvc(elsewhere, "artifacts", "get", str(origin), *options)

    model = (project / "models/model.keras").read_bytes()
    assert (elsewhere / "latest.keras").read_bytes() == model
    assert (elsewhere / "v1.keras").read_bytes() == model
    assert (elsewhere / "prod.keras").read_bytes() == model
    for name in ("1/saved_model.pb", "1/variables/variables.index"):
        assert (elsewhere / "saved_model" / name).read_bytes() == (
            project / "models/saved_model" / name
        ).read_bytes()
