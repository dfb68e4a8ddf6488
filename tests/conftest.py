"""Fixtures: the real MNIST files (from MNIST_MIRROR), HTTP mirrors on 127.0.0.1, the
trained project (read only) and fresh copies of it to change, and checkpoint stores."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    SMALL,
    LoopbackMirror,
    ModelServer,
    copy_project,
    git,
    project_env,
    run_dvc,
    self_signed_certificate,
    set_params,
)
from .project import serving

CHECKPOINTS = Path("mnist-dvc-pipeline") / "checkpoints"  # in the user's cache folder


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


@pytest.fixture(scope="session")
def mnist_mirror() -> Path:
    """The folder of the four real MNIST .gz files, from MNIST_MIRROR; skips when unset."""
    value = os.environ.get("MNIST_MIRROR", "")
    if not value or value.startswith(("http://", "https://")):
        pytest.skip("needs the real MNIST files: set MNIST_MIRROR to a folder holding them")
    folder = Path(value)
    if not (folder / "train-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"MNIST_MIRROR={value} does not hold the MNIST .gz files")
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


@pytest.fixture(scope="session")
def trained_project(mnist_mirror, tmp_path_factory) -> Path:
    """A project copy with the whole pipeline run (small subset, 2 epochs) and committed.
    Tests only read it (and clone it); a test that changes a project takes trained_copy."""
    root = copy_project(tmp_path_factory.mktemp("trained") / "project")
    set_params(root, {**SMALL, "train": {"epochs": 2}})
    run_dvc(root, "repro", MNIST_MIRROR=str(mnist_mirror))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "trained on a small subset")
    return root


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
