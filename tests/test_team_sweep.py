"""A sweep shared across machines, DVC's way: two clones each run an experiment and
`dvc exp push` it to a shared git remote and DVC remote; a third clone lists both,
compares them, applies the best, and `dvc pull` gives it that experiment's model
without running a stage.

And the sweep workflow's own shell steps (.github/workflows/sweep.yml), run as GitHub's
runner runs them, each job in a clone of its own, on a small DVC project: the experiment
jobs hand their experiments over (a git bundle, DVC cache files) to the push job, which
pushes what it checked, and refuses what was tampered with."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .helpers import (
    PROJECT_ROOT,
    clone_with_remote,
    dvc,
    experiments_shown,
    git,
    project_env,
    run_dvc,
)

LEARNING_RATES = {"alice": 0.0015, "bob": 0.003}  # one experiment per teammate


@pytest.mark.slow
def test_experiments_pushed_from_two_clones_are_compared_and_pulled_in_a_third(
    trained_copy, tmp_path
):
    """Over a minute (about two on 2 cores): two clones each run a real experiment (train,
    evaluate, export and robustness: what a teammate's sweep runs), and some 20 DVC
    commands push, pull, list and apply them through the remotes."""
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


# --- The sweep workflow's steps --------------------------------------------------------

WORKFLOW = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "sweep.yml").read_text())
RUN_ID = "4242"
# A project with one stage that reads two of params.yaml's settings and writes a file
# and a folder (DVC caches a folder as a .dir listing and its files) and a metric.
MAKE = """\
import json, pathlib, yaml
params = yaml.safe_load(open("params.yaml"))
units, epochs = params["model"]["dense_units"], params["train"]["epochs"]
pathlib.Path("out/parts").mkdir(parents=True, exist_ok=True)
pathlib.Path("out/model.txt").write_text(f"dense_units={units} epochs={epochs}\\n")
pathlib.Path("out/parts/units.txt").write_text(str(units))
pathlib.Path("out/parts/same.txt").write_text("the same in every run\\n")
json.dump({"score": units / 1000}, open("metrics.json", "w"))
"""
DVC_YAML = {
    "stages": {
        "make": {
            "cmd": "python make.py",
            "deps": ["make.py"],
            "params": ["model.dense_units", "train.epochs"],
            "outs": ["out/model.txt", "out/parts"],
            "metrics": [{"metrics.json": {"cache": False}}],
        }
    }
}


def run_step(
    job: str, name: str, root: Path, runner: Path, **env: str
) -> subprocess.CompletedProcess:
    """The workflow's step `name` of `job`, run in `root` as GitHub's runner runs it
    (`shell: bash`: bash -eo pipefail), with `runner` as the runner's temporary folder."""
    assert WORKFLOW["defaults"]["run"]["shell"] == "bash"
    (step,) = [step for step in WORKFLOW["jobs"][job]["steps"] if step.get("name") == name]
    runner.mkdir(parents=True, exist_ok=True)
    script = runner / "step.sh"
    script.write_text(step["run"])
    github = {
        "GITHUB_RUN_ID": RUN_ID,
        "GITHUB_OUTPUT": str(runner / "output"),
        "GITHUB_STEP_SUMMARY": str(runner / "summary.md"),
        "RUNNER_TEMP": str(runner),
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=root,
        env=project_env(root, **github, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def checkout(origin: Path, destination: Path) -> Path:
    """What actions/checkout leaves: a clone of the branch, no token kept."""
    subprocess.run(["git", "clone", "-q", str(origin), str(destination)], check=True)
    return destination


def exp_refs(origin: Path) -> list[str]:
    return git(origin, "for-each-ref", "--format=%(refname)", "refs/exps/").split()


@dataclass
class Sweep:
    origin: Path  # this repository
    dvc_remote: Path  # the project's default DVC remote (in its committed .dvc/config)
    runs: list[dict]  # what the inputs job handed on
    handoffs: dict[str, Path]  # each experiment job's artifact, by run name
    made: dict[str, bytes]  # each experiment's out/model.txt, by experiment name

    def push(
        self, tmp_path: Path, handoffs: dict[str, Path] | None = None, runs: list | None = None
    ) -> tuple[Path, Path, subprocess.CompletedProcess]:
        """The push job on a fresh runner, to a copy of the repository (returned first):
        its checkout, the artifacts downloaded (a folder each, named as download-artifact
        names them), then its push step, given the inputs job's `runs`."""
        origin = shutil.copytree(self.origin, tmp_path / "origin.git")
        runner = tmp_path / "push-runner"
        for name, handoff in (self.handoffs if handoffs is None else handoffs).items():
            shutil.copytree(handoff, runner / "handoff" / f"experiment-{name}")
        clone = checkout(origin, tmp_path / "push")
        handed = json.dumps(self.runs if runs is None else runs)
        pushed = run_step("push", "Push them", clone, runner, RUNS=handed, TOKEN="t0ken")
        return origin, clone, pushed


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Sweep:
    """A sweep of model.dense_units over [64, 128] with train.epochs=3, run up to the
    push job: the inputs job's check, then each experiment job in a clone of its own."""
    tmp = tmp_path_factory.mktemp("sweep")
    project, dvc_remote = tmp / "project", tmp / "dvc-remote"
    project.mkdir()
    shutil.copy(PROJECT_ROOT / "params.yaml", project)
    (project / "make.py").write_text(MAKE)
    (project / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    git(project, "init", "-q")
    run_dvc(project, "init", "-q")
    run_dvc(project, "remote", "add", "--default", "team", str(dvc_remote))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "a small DVC project")
    origin = tmp / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(origin)], check=True)

    inputs = dict(PARAM="model.dense_units", VALUES="[64, 128]", OVERRIDES="train.epochs=3")
    checked = run_step("inputs", "Check the inputs", PROJECT_ROOT, tmp / "inputs", **inputs)
    assert checked.returncode == 0, checked.stderr
    (line,) = (tmp / "inputs" / "output").read_text().splitlines()
    runs = json.loads(line.removeprefix("runs="))

    handoffs, made = {}, {}
    for run in runs:
        experiment = f"sweep-{RUN_ID}-{run['name']}"
        clone, runner = checkout(origin, tmp / run["name"]), tmp / f"{run['name']}-runner"
        env = {"EXPERIMENT": experiment, "SETTINGS": json.dumps(run["set"])}
        for step in ("Run one experiment", "Hand the experiment over"):
            result = run_step("experiment", step, clone, runner, **env)
            assert result.returncode == 0, f"{step}:\n{result.stdout}\n{result.stderr}"
        handoffs[run["name"]] = runner / "handoff"
        made[experiment] = (clone / "out/model.txt").read_bytes()
    assert not dvc_remote.exists()  # the experiment jobs never reach the DVC remote
    return Sweep(origin, dvc_remote, runs, handoffs, made)


def test_the_inputs_job_hands_on_one_run_per_value_with_the_overrides(sweep):
    assert sweep.runs == [
        {"name": "1-model-dense-units-64", "set": ["model.dense_units=64", "train.epochs=3"]},
        {"name": "2-model-dense-units-128", "set": ["model.dense_units=128", "train.epochs=3"]},
    ]
    assert sweep.made == {
        f"sweep-{RUN_ID}-1-model-dense-units-64": b"dense_units=64 epochs=3\n",
        f"sweep-{RUN_ID}-2-model-dense-units-128": b"dense_units=128 epochs=3\n",
    }


def test_the_push_job_pushes_each_experiment_handed_over_with_its_outputs(sweep, tmp_path):
    origin, clone, pushed = sweep.push(tmp_path)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert len(exp_refs(origin)) == 2
    assert "extraheader" not in (clone / ".git" / "config").read_text()  # the token is gone
    for experiment, model in sweep.made.items():
        # Anyone: the experiment's git ref from this repository, its outputs from the remote
        reader = checkout(origin, tmp_path / f"reader-{experiment}")
        run_dvc(reader, "exp", "pull", "origin", experiment)
        run_dvc(reader, "exp", "apply", experiment)
        assert (reader / "out/model.txt").read_bytes() == model
        units = model.split()[0].removeprefix(b"dense_units=")
        assert (reader / "out/parts/units.txt").read_bytes() == units  # a folder's file too


def test_the_push_job_refuses_a_run_name_that_is_not_one_the_check_makes(sweep, tmp_path):
    name = next(iter(sweep.handoffs))
    hostile = [{"name": "x/../../refs/heads/main", "set": []}, *sweep.runs]
    origin, _, pushed = sweep.push(tmp_path, {name: sweep.handoffs[name]}, hostile)
    assert pushed.returncode == 1
    assert "::error::not an experiment name: x/../../refs/heads/main" in pushed.stdout
    assert exp_refs(origin) == []


def test_the_push_job_pushes_the_experiments_that_ran_and_fails_for_the_others(sweep, tmp_path):
    first, second = sweep.handoffs
    origin, _, pushed = sweep.push(tmp_path, {first: sweep.handoffs[first]})
    assert pushed.returncode == 1
    assert f"::warning::sweep-{RUN_ID}-{second}: nothing handed over" in pushed.stdout
    assert [ref.rsplit("/", 1)[1] for ref in exp_refs(origin)] == [f"sweep-{RUN_ID}-{first}"]


def _tamper_with_a_cache_file(handoff: Path, project: Path) -> None:
    files = [path for path in (handoff / "cache").rglob("*") if path.is_file()]
    (cached,) = [path for path in files if path.read_bytes() == b"64"]
    cached.write_bytes(b"65")


def _add_a_branch_to_the_bundle(handoff: Path, project: Path) -> None:
    git(project, "fetch", "-q", str(handoff / "experiment.bundle"), "refs/exps/*:refs/exps/*")
    (ref,) = exp_refs(project)
    bundle = str(handoff / "experiment.bundle")
    git(project, "branch", "main-too", ref)
    git(project, "bundle", "create", "-q", bundle, ref, "refs/heads/main-too", "^HEAD")


def _experiment_checked_out(handoff: Path, project: Path) -> str:
    git(project, "fetch", "-q", str(handoff / "experiment.bundle"), "refs/exps/*:refs/exps/*")
    (ref,) = exp_refs(project)
    git(project, "checkout", "-q", ref)
    return ref


def _change_the_dvc_config(handoff: Path, project: Path) -> None:
    ref = _experiment_checked_out(handoff, project)
    run_dvc(project, "remote", "add", "elsewhere", "s3://someone-elses/bucket")
    git(project, "commit", "-q", "--amend", "-a", "--no-edit")  # still one commit on the base
    git(project, "update-ref", ref, "HEAD")
    git(project, "bundle", "create", "-q", str(handoff / "experiment.bundle"), ref, "^HEAD~1")


def _add_a_commit(handoff: Path, project: Path) -> None:
    ref = _experiment_checked_out(handoff, project)
    (project / "make.py").write_text("print('something else')\n")
    git(project, "commit", "-qam", "something else")
    git(project, "update-ref", ref, "HEAD")
    git(project, "bundle", "create", "-q", str(handoff / "experiment.bundle"), ref, "^HEAD~2")


@pytest.mark.parametrize(
    ("tamper", "refused"),
    [
        (_tamper_with_a_cache_file, "does not hold what its name says"),
        (_add_a_branch_to_the_bundle, "the bundle holds other refs than"),
        (_change_the_dvc_config, "it changes .dvc/"),
        (_add_a_commit, "not one commit on"),
    ],
)
def test_the_push_job_refuses_a_tampered_handoff_and_pushes_nothing(
    sweep, tmp_path, tamper, refused
):
    name = next(iter(sweep.handoffs))
    handoff = shutil.copytree(sweep.handoffs[name], tmp_path / "handoff")
    tamper(handoff, checkout(sweep.origin, tmp_path / "tamperer"))
    remote_files = sorted(sweep.dvc_remote.rglob("*")) if sweep.dvc_remote.exists() else []
    origin, _, pushed = sweep.push(tmp_path, {name: handoff})
    assert pushed.returncode == 1
    (error,) = [line for line in pushed.stdout.splitlines() if line.startswith("::error::")]
    assert refused in error
    assert exp_refs(origin) == []
    assert sorted(sweep.dvc_remote.rglob("*")) == remote_files
