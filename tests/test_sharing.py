"""Sharing a project through a DVC remote on a shared folder: `dvc push` (with the
run-cache), then `dvc pull` in a fresh clone restores every output byte for byte, and
`dvc repro --pull` in another runs no stage."""

from __future__ import annotations

import pytest

from .helpers import clone_with_remote, git, run_dvc, stages_run

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


@pytest.mark.slow
def test_push_then_pull_in_a_fresh_clone_restores_every_output_without_running(
    trained_copy, tmp_path
):
    shared = trained_copy  # the teammate who pushes: their copy gets the remote's config
    remote = tmp_path / "dvc-remote"
    run_dvc(shared, "remote", "add", "--local", "--force", "shared", str(remote))
    run_dvc(shared, "push", "--run-cache", "--remote", "shared")

    pulled = clone_with_remote(shared, tmp_path / "pulled", remote)
    run_dvc(pulled, "pull")
    for output in OUTPUTS:
        assert (pulled / output).read_bytes() == (shared / output).read_bytes(), output
    assert run_dvc(pulled, "status").stdout.strip() == "Data and pipelines are up to date."

    repro = clone_with_remote(shared, tmp_path / "repro", remote)
    assert not (repro / ".dvc" / "cache").exists()  # a fresh clone has no cache
    result = run_dvc(repro, "repro", "--pull")
    assert stages_run(result.stdout) == []  # nothing trained: everything came from the remote
    assert (repro / "models/model.keras").read_bytes() == (
        shared / "models/model.keras"
    ).read_bytes()
    assert git(repro, "status", "--porcelain").strip() == ""
