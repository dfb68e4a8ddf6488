"""The trained project every test reads (conftest.py's trained_project), built once a
session for all of pytest's worker processes, in the background from the session's
start: the first worker to ask starts `python -m tests.shared_project FOLDER MIRROR`,
and every worker waits for its result when a test first needs the project.

The build is tests/test_pipeline.py's end-to-end run, recorded for that test to check: a
copy of the project (SMALL, one epoch) runs the whole `dvc repro`, fetching the real
MNIST files over HTTP from a LoopbackMirror on 127.0.0.1; a second `dvc repro` and
`dvc status`; train.epochs set to 2 and `dvc repro` again; then a git commit. The
project is then SMALL with 2 epochs, its run-cache holding the one-epoch run too.

FOLDER (shared by the workers: pytest-N/trained-shared) holds:
    project/     the trained project (only read; tests that change it take a copy)
    first-run/   the outputs of the first `dvc repro` (one epoch), copied before the next
    records.json what each command printed, and the files the mirror was asked for
    user-cache/  the build's XDG_CACHE_HOME (training checkpoints; none is left behind)
    build.log    the builder's own output
    done         written last, when the project is complete; or `failed`, saying why
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from filelock import FileLock

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The outputs of the first run that test_pipeline.py checks, copied into first-run/
FIRST_RUN_FILES = (
    "dvc.lock",
    "reports/metrics.json",
    "reports/predictions.csv",
    "reports/dataset_stats.json",
    "reports/figures/samples.png",
    "dvclive/metrics.json",
)
WAIT_S = 1800  # the longest a worker waits for the build

_builder: subprocess.Popen | None = None  # this process's, if it started the build


def start(folder: Path, mirror: Path) -> subprocess.Popen | None:
    """Start the build in `folder` from the MNIST files in `mirror`, unless a process
    (this one or another worker) already has: the build, if this call started it."""
    global _builder
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / "start.lock"):
        if (folder / "started").exists():
            return None
        env = dict(os.environ, XDG_CACHE_HOME=str(folder / "user-cache"))
        with open(folder / "build.log", "wb") as log:
            _builder = subprocess.Popen(
                [sys.executable, "-m", "tests.shared_project", str(folder), str(mirror)],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        (folder / "started").write_text(str(_builder.pid))
        return _builder


def wait(folder: Path, mirror: Path) -> Path:
    """The trained project in `folder`, once built (started here if no process has);
    raises RuntimeError, with the reason, when the build failed."""
    start(folder, mirror)
    pid = int((folder / "started").read_text())
    deadline = time.monotonic() + WAIT_S
    while not (folder / "done").exists():
        if (folder / "failed").exists():
            raise RuntimeError(f"the trained project's build failed:\n{_failure(folder)}")
        if not _running(pid):
            if (folder / "done").exists() or (folder / "failed").exists():
                continue  # it finished just now
            raise RuntimeError(
                f"the trained project's build ended without a result:\n{_log(folder)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"the trained project's build took over {WAIT_S} s:\n{_log(folder)}")
        time.sleep(0.5)
    return folder / "project"


def records(folder: Path) -> dict:
    """What the build's commands printed (see build)."""
    return json.loads((folder / "records.json").read_text())


def finish() -> None:
    """At the end of a worker's session: wait for the build it started (another worker
    may still be waiting for it)."""
    if _builder is not None:
        _builder.wait()


def _running(pid: int) -> bool:
    if _builder is not None and _builder.pid == pid:
        return _builder.poll() is None
    try:  # another worker's child: gone, or a zombie its parent has not reaped yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _failure(folder: Path) -> str:
    return (folder / "failed").read_text()


def _log(folder: Path) -> str:
    return (folder / "build.log").read_text(errors="replace")[-5000:]


def build(folder: Path, mirror: Path) -> None:
    """The build itself (see the module's docstring), in `folder`."""
    from .helpers import SMALL, LoopbackMirror, copy_project, git, run_dvc, set_params

    root = copy_project(folder / "project")
    set_params(root, SMALL)
    served = LoopbackMirror(mirror)
    try:
        printed = {"first": run_dvc(root, "repro", MNIST_MIRROR=served.url).stdout}
        printed["requests"] = list(served.requests)
        for name in FIRST_RUN_FILES:
            (folder / "first-run" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / name, folder / "first-run" / name)
        printed["again"] = run_dvc(root, "repro", MNIST_MIRROR=served.url).stdout
        printed["status"] = run_dvc(root, "status", MNIST_MIRROR=served.url).stdout
        set_params(root, {"train": {"epochs": 2}})
        printed["epochs_2"] = run_dvc(root, "repro", MNIST_MIRROR=served.url).stdout
    finally:
        served.close()
    git(root, "add", "-A")
    git(root, "commit", "-qm", "trained on a small subset")
    (folder / "records.json").write_text(json.dumps(printed, indent=1))


if __name__ == "__main__":
    folder, mirror = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        build(folder, mirror)
    except BaseException:
        (folder / "failed.tmp").write_text(traceback.format_exc())
        (folder / "failed.tmp").rename(folder / "failed")  # whole, for the waiters to read
        raise
    (folder / "done").write_text("")
