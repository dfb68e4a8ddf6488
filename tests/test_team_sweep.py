"""A sweep shared across machines, DVC's way: two clones each run an experiment and
`dvc exp push` it to a shared git remote and DVC remote; a third clone lists both,
compares them, applies the best, and `dvc pull` gives it that experiment's model
without running a stage."""

from __future__ import annotations

import json
import subprocess

import pytest

from .helpers import clone_with_remote, dvc, experiments_shown, run_dvc

pytestmark = pytest.mark.slow

LEARNING_RATES = {"alice": 0.0015, "bob": 0.003}  # one experiment per teammate


def test_experiments_pushed_from_two_clones_are_compared_and_pulled_in_a_third(
    trained_copy, tmp_path
):
    baseline = trained_copy  # where the team's trained commit and its outputs come from
    origin, dvc_remote = tmp_path / "origin.git", tmp_path / "dvc-remote"
    subprocess.run(["git", "clone", "-q", "--bare", str(baseline), str(origin)], check=True)
    run_dvc(baseline, "remote", "add", "--local", "--force", "team", str(dvc_remote))
    run_dvc(baseline, "push", "--remote", "team")  # the baseline's outputs

    models = {}
    for name, rate in LEARNING_RATES.items():
        teammate = clone_with_remote(origin, tmp_path / name, dvc_remote, "team")
        run_dvc(teammate, "pull")
        experiment = f"{name}-lr"
        run_dvc(teammate, "exp", "run", "-n", experiment, "-S", f"train.learning_rate={rate}")
        run_dvc(teammate, "exp", "push", "origin", experiment)
        models[experiment] = (teammate / "models/model.keras").read_bytes()

    carol = clone_with_remote(origin, tmp_path / "carol", dvc_remote, "team")
    listed = run_dvc(carol, "exp", "list", "origin").stdout
    assert all(name in listed for name in models)
    run_dvc(carol, "exp", "pull", "--no-cache", "origin", *models)  # git refs only
    found = experiments_shown(carol)
    assert set(found) == set(models)
    for name, data in found.items():
        rate = data["params"]["params.yaml"]["data"]["train"]["learning_rate"]
        assert rate == LEARNING_RATES[name.removesuffix("-lr")]
    accuracy = {
        name: data["metrics"]["reports/metrics.json"]["data"]["test"]["accuracy"]
        for name, data in found.items()
    }
    best = max(accuracy, key=accuracy.get)

    # The experiment's params, dvc.lock and metrics come from git; its outputs are not in
    # this clone's cache yet, which apply reports (and exits non-zero), and dvc pull fetches.
    applied = dvc(carol, "exp", "apply", best)
    assert "models/model.keras" in applied.stderr
    assert (
        f"learning_rate: {LEARNING_RATES[best.removesuffix('-lr')]}"
        in (carol / "params.yaml").read_text()
    )
    pulled = run_dvc(carol, "pull")
    assert "Running stage" not in pulled.stdout
    assert (carol / "models/model.keras").read_bytes() == models[best]
    status = run_dvc(carol, "status").stdout.strip()
    assert status == "Data and pipelines are up to date."  # nothing to train
    recorded = json.loads((carol / "reports/metrics.json").read_text())["test"]["accuracy"]
    assert recorded == accuracy[best]
