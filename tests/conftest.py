"""Fixtures: the real MNIST files (from MNIST_MIRROR), HTTP mirrors on 127.0.0.1, the
trained project (read only; built once for every worker, in the background from the
session's start: tests/shared_project.py) and fresh copies of it to change, and
checkpoint stores."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import shared_project
from .helpers import (
    LoopbackMirror,
    ModelServer,
    copy_project,
    project_env,
    run_dvc,
    self_signed_certificate,
)
from .project import serving

CHECKPOINTS = Path("mnist-dvc-pipeline") / "checkpoints"  # in the user's cache folder
# The test files that take a minute or more (pytest --durations), longest first: they
# start as soon as the trained project is built, so that none of them starts last and
# keeps one worker busy while the other has nothing left to run.
LONGEST = (
    "test_resume_after_kill.py",
    "test_compiled_epoch.py",
    "test_team_sweep.py",
    "test_resume_state.py",
    "test_experiment_code.py",
    "test_predict.py",
    "test_experiments.py",
)
# Run after every other file: its memory comparison (ONNX server under half the TF
# server's) has held with the worker's TF server (model_server) already grown by other
# tests' requests; with that server fresh the two are within a few MiB of the line
# (592 against 1172 / 2, also at 283c615).
LAST = ("test_serve_runtimes.py",)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order in which the workers take the test files (each whole: pyproject.toml):
    first those that do not read the trained project, while it is built; then those that
    do, LONGEST first, then the others with the fewest tests first (the many quick tests
    of the last files even out the two workers' ends), LAST last. Within a file, its own
    order."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def rank(name: str) -> tuple:
        tests = files[name]
        if not any("trained_project" in getattr(t, "fixturenames", ()) for t in tests):
            return (0, -len(tests))  # xdist's own order: the most tests first
        base = Path(name).name
        if base in LONGEST:
            return (1, LONGEST.index(base))
        return (3 if base in LAST else 2, len(tests))

    items[:] = [item for name in sorted(files, key=rank) for item in files[name]]


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Iterator[Path]:
    """The user cache folder of this session's commands (XDG_CACHE_HOME, which the stages
    and DVC inherit): so no run's checkpoints land in the user's own."""
    cache = tmp_path_factory.mktemp("user-cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield cache
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture
def checkpoint_store(tmp_path, monkeypatch) -> Path:
    """The training checkpoint store of this test's commands, empty and its own (a user
    cache folder for this test alone): no checkpoint another test left behind is found,
    and none this test leaves is found by another."""
    cache = tmp_path / "user-cache"
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / CHECKPOINTS


def mnist_folder() -> tuple[Path | None, str]:
    """(the folder of the four real MNIST .gz files, from MNIST_MIRROR, or None; why not)."""
    value = os.environ.get("MNIST_MIRROR", "")
    if not value or value.startswith(("http://", "https://")):
        return None, "needs the real MNIST files: set MNIST_MIRROR to a folder holding them"
    folder = Path(value)
    if not (folder / "train-labels-idx1-ubyte.gz").is_file():
        return None, f"MNIST_MIRROR={value} does not hold the MNIST .gz files"
    return folder, ""


@pytest.fixture(scope="session")
def mnist_mirror() -> Path:
    """The folder of the four real MNIST .gz files, from MNIST_MIRROR; skips when unset."""
    folder, why_not = mnist_folder()
    if folder is None:
        pytest.skip(why_not)
    return folder


@pytest.fixture
def serve() -> Iterator:
    """serve(folder, mode="ok") starts a LoopbackMirror that is closed after the test."""
    mirrors: list[LoopbackMirror] = []

    def start(
        folder: Path, mode: str = "ok", stall_s: float = 3.0, tls: Path | None = None
    ) -> LoopbackMirror:
        mirrors.append(LoopbackMirror(folder, mode, stall_s, tls))
        return mirrors[-1]

    yield start
    for mirror in mirrors:
        mirror.close()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory) -> Path:
    """A key and self-signed certificate for https://127.0.0.1 (one PEM file); skips
    without the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def shared_folder(tmp_path_factory) -> Path:
    """The folder of the trained project's build, the same for every worker: the
    session's temporary folder (pytest-N/), above the workers' own (pytest-N/popen-gw0/)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return base / "trained-shared"


@pytest.fixture(scope="session", autouse=True)
def trained_project_build(request, tmp_path_factory) -> Iterator[None]:
    """Starts the trained project's build in the background as the session starts, if a
    test of the session needs it (so the workers run other tests meanwhile); at the end,
    waits for the build this worker started."""
    needed = any(
        "trained_project" in getattr(item, "fixturenames", ()) for item in request.session.items
    )
    mirror, _ = mnist_folder()
    if needed and mirror is not None:
        shared_project.start(shared_folder(tmp_path_factory), mirror)
    yield
    shared_project.finish()


@pytest.fixture(scope="session")
def trained_project(mnist_mirror, tmp_path_factory) -> Path:
    """A project copy with the whole pipeline run (small subset, 2 epochs; the run-cache
    also holds its first run, of 1 epoch) and committed: tests/shared_project.py, built
    once for all workers. Tests only read it: no command runs in it that writes there (a
    test that changes a project, or runs DVC, takes trained_copy)."""
    try:
        return shared_project.wait(shared_folder(tmp_path_factory), mnist_mirror)
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def trained_records(trained_project, tmp_path_factory) -> dict:
    """What the trained project's build printed and fetched (shared_project.build)."""
    return shared_project.records(shared_folder(tmp_path_factory))


@pytest.fixture(scope="session")
def first_run(trained_project, tmp_path_factory) -> Path:
    """The folder of the outputs of the trained project's first run (one epoch), by their
    paths in the project (shared_project.FIRST_RUN_FILES)."""
    return shared_folder(tmp_path_factory) / "first-run"


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of the project's source (git-tracked files, no data or outputs, an
    empty experiment queue), for this test alone to change, e.g. its params.yaml."""
    return copy_project(tmp_path / "project")


@pytest.fixture
def trained_copy(trained_project, tmp_path) -> Path:
    """A fresh copy of the trained project (its git history, DVC cache, data and
    outputs) for this test alone to change as it likes."""
    return shutil.copytree(trained_project, tmp_path / "trained-copy", symlinks=True)


@pytest.fixture
def queue_project(trained_copy, checkpoint_store) -> Iterator[Path]:
    """A fresh copy of the trained project, with a checkpoint store of its own; the DVC
    queue worker its experiments run in is stopped at the end."""
    yield trained_copy
    run_dvc(trained_copy, "queue", "stop", "--kill")


@pytest.fixture(scope="session")
def model_server(trained_project) -> Iterator[ModelServer]:
    """`mnist-pipeline serve --port 0` running in the trained project (on a free port),
    with everything it prints collected; stopped at the end of the session."""
    with serving(trained_project, env=project_env(trained_project)) as served:
        yield ModelServer(served.url, served.output, served.process.pid)
