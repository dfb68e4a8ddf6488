"""Fixtures: the real MNIST files (from MNIST_MIRROR) and HTTP mirrors on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import LoopbackMirror


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

    def start(folder: Path, mode: str = "ok", stall_s: float = 3.0) -> LoopbackMirror:
        mirrors.append(LoopbackMirror(folder, mode, stall_s))
        return mirrors[-1]

    yield start
    for mirror in mirrors:
        mirror.close()
