"""Breaking things on purpose: a killed training run resumes, Ctrl-C in any stage leaves
nothing half-written and dvc.lock untouched, a second `dvc repro` is refused while one
runs, corrupt inputs and full or read-only folders give one line naming the file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from .helpers import (
    SMALL,
    copy_project,
    dvc,
    git,
    in_background,
    read_until,
    run_dvc,
    run_script,
    set_params,
    stages_run,
    training_log_files,
)

pytestmark = pytest.mark.slow

EPOCHS = 3


@pytest.fixture(scope="module")
def built(trained_copy) -> Path:
    """The trained project (small subset, 2 epochs, committed, with its DVC cache), copied.
    Each test leaves it up to date again."""
    return trained_copy


def training_results(root: Path) -> tuple[bytes, bytes]:
    return (root / "reports/metrics.json").read_bytes(), (
        root / "dvclive/metrics.json"
    ).read_bytes()


def error_lines(stderr: str, stage: str) -> list[str]:
    """The stage's own lines on stderr (TensorFlow's native notes aside), checking that
    Python printed no traceback."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith(f"{stage}:")]


def leftovers(root: Path) -> list[Path]:
    """Staging files or folders that a stage failed to clean up."""
    return [p for p in root.rglob(".*.tmp*") if ".git" not in p.parts and ".dvc" not in p.parts]


def restore_committed_run(root: Path) -> None:
    git(root, "checkout", "--", "params.yaml", "dvc.lock", "reports/metrics.json", "dvclive")
    run_dvc(root, "checkout", "--force")  # the committed run's outputs, from the cache
    assert run_dvc(root, "status").stdout.strip() == "Data and pipelines are up to date."


def forge(checkpoint: Path) -> None:
    """Make the checkpoint in the folder `checkpoint` claim a finished run, with weights
    of the wrong shape injected (and the arrays file's sha256 to match)."""
    arrays, state_file = checkpoint / "variables.npz", checkpoint / "state.json"
    with np.load(arrays) as saved:
        forged = {name: saved[name] for name in saved.files}
    forged["model_0"] = np.zeros((1, 1, 1, 1), dtype=np.float32)
    np.savez(arrays, **forged)
    state = json.loads(state_file.read_text())
    state.update(epochs_done=EPOCHS, history=state["history"][:1] * EPOCHS)
    state["variables_sha256"] = hashlib.sha256(arrays.read_bytes()).hexdigest()
    state_file.write_text(json.dumps(state))


def test_killed_training_resumes_with_identical_results_and_a_forged_checkpoint_is_not(
    built, checkpoint_store, tmp_path
):
    # a run DVC has not seen yet, one epoch longer than the committed one
    set_params(built, {"train": {"learning_rate": 0.0015, "epochs": EPOCHS}})
    with in_background(built, "dvc", "repro") as process:
        read_until(process, f"train: epoch 2/{EPOCHS}")
        os.killpg(process.pid, signal.SIGKILL)
    (state,) = checkpoint_store.glob("[!.]*/state.json")
    assert json.loads(state.read_text())["epochs_done"] == 2
    assert len((built / "dvclive/plots/metrics/train/loss.tsv").read_text().splitlines()) == 3
    genuine = shutil.copytree(state.parent, tmp_path / "genuine")

    forge(state.parent)  # refused in one line: training starts over, from epoch 1
    fresh = run_dvc(built, "repro")
    assert stages_run(fresh.stdout) == ["train", "evaluate", "export"]
    notes = [line for line in fresh.stdout.splitlines() if "checkpoint" in line]
    assert notes == [
        f"train: ignoring the checkpoint in {state.parent}: variables.npz: model_0 is "
        "float32 (1, 1, 1, 1), this model's is float32 (3, 3, 1, 32)"
    ]
    assert "resuming" not in fresh.stdout and "train: epoch 1/" in fresh.stdout
    assert not state.parent.exists()  # dropped, and no new one left after the run
    uninterrupted = training_results(built), training_log_files(built)

    shutil.copytree(genuine, state.parent)  # the genuine one: resumed after epoch 2
    resumed = run_dvc(built, "repro", "--force", "--single-item", "train", "evaluate")
    assert f"train: resuming after epoch 2 of {EPOCHS}" in resumed.stdout
    assert "train: epoch 1/" not in resumed.stdout and f"train: epoch 3/{EPOCHS}" in resumed.stdout
    assert not state.parent.exists()  # removed after the successful run
    assert (training_results(built), training_log_files(built)) == uninterrupted
    restore_committed_run(built)


@pytest.mark.parametrize(
    ("stage", "marker"),
    [
        ("fetch", None),  # stalls on a mirror that never finishes sending
        ("preprocess", "preprocess: checking the MNIST files"),
        ("train", "train: epoch 1/"),
        ("evaluate", "evaluate: scoring"),
    ],
)
def test_ctrl_c_in_a_stage_is_one_line_no_partial_output_and_no_lock_change(
    built, serve, mnist_mirror, checkpoint_store, stage, marker
):
    checkpoints_before = set(checkpoint_store.glob("*")) if checkpoint_store.exists() else set()
    lock_before = (built / "dvc.lock").read_bytes()
    metrics_before = (built / "reports/metrics.json").read_bytes()
    stalling = serve(mnist_mirror, mode="stall", stall_s=30)
    env = {"MNIST_MIRROR": stalling.url, "MNIST_TIMEOUT": "60"}
    with in_background(built, "dvc", "repro", "--force", "--single-item", stage, **env) as process:
        if marker is None:
            read_until(process, "Running stage 'fetch'")
            while not stalling.requests:
                pass
        else:
            read_until(process, marker)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest = process.stdout.read()
        assert process.wait(timeout=60) != 0
    assert f"{stage}: interrupted, no output written" in rest, rest
    assert "Traceback" not in rest
    assert (built / "dvc.lock").read_bytes() == lock_before
    assert leftovers(built) == []
    # DVC removed the stage's outputs before running it: git has the training log, DVC's
    # cache the others
    git(built, "checkout", "--", "dvclive")
    run_dvc(built, "checkout")
    if stage == "evaluate":  # DVC removed metrics.json too: the run-cache has it
        assert "Stage 'evaluate' is cached" in run_dvc(built, "repro").stdout
    assert (built / "reports/metrics.json").read_bytes() == metrics_before
    assert run_dvc(built, "status").stdout.strip() == "Data and pipelines are up to date."
    # An interrupted train keeps its checkpoint and lock file: not for later tests to find.
    for kept in set(checkpoint_store.glob("*")) - checkpoints_before:
        shutil.rmtree(kept) if kept.is_dir() else kept.unlink()


def test_second_dvc_repro_is_refused_while_the_first_runs(built):
    baseline = training_results(built)
    with in_background(built, "dvc", "repro", "--force", "--single-item", "train") as first:
        read_until(first, "> python stages/train.py")
        second = dvc(built, "repro", timeout=120)
        assert second.returncode != 0
        assert "is busy, it is being blocked by" in second.stderr  # DVC's lock on the outputs
        assert "Running stage" not in second.stdout
        first.stdout.read()
        assert first.wait(timeout=300) == 0
    run_dvc(built, "repro")  # evaluate, for the retrained model
    assert training_results(built) == baseline
    assert run_dvc(built, "status").stdout.strip() == "Data and pipelines are up to date."


def fresh_copy_with(built: Path, tmp_path: Path, *paths: str) -> Path:
    """A new project copy holding the given outputs of `built`."""
    root = copy_project(tmp_path / "project")
    set_params(root, {**SMALL, "train": {"epochs": 1}})
    for path in paths:
        source, target = built / path, root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    return root


def flip_a_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("stage", "damage", "message"),
    [
        (
            "preprocess",
            "truncate_idx",
            "data/raw/train-labels-idx1-ubyte: truncated: 29992 data bytes, the header says 60000",
        ),
        (
            "preprocess",
            "flip_idx_pixel",
            "data/raw/train-images-idx3-ubyte: contents differ from the published MNIST file (sha256 mismatch)",
        ),
        (
            "preprocess",
            "flip_idx_magic",
            "data/raw/t10k-labels-idx1-ubyte: bad magic number 0x00000901",
        ),
        (
            "train",
            "npy_dtype",
            "data/processed/val_images.npy: expected uint8 images shaped (N, 28, 28, 1), found float32",
        ),
        (
            "train",
            "npy_shape",
            "data/processed/train_labels.npy: expected 2000 uint8 labels shaped (N,), found uint8 (2000, 1)",
        ),
        ("evaluate", "half_model", "models/model.keras: not a readable Keras model"),
    ],
)
def test_corrupt_input_to_a_stage_is_one_line_naming_the_file(
    built, tmp_path, stage, damage, message
):
    root = fresh_copy_with(built, tmp_path, "data/raw", "data/processed", "models/model.keras")
    if damage == "truncate_idx":
        path = root / "data/raw/train-labels-idx1-ubyte"
        path.write_bytes(path.read_bytes()[: 8 + 29992])
    elif damage == "flip_idx_pixel":
        flip_a_bit(root / "data/raw/train-images-idx3-ubyte", 16 + 28 * 14 + 14)
    elif damage == "flip_idx_magic":
        flip_a_bit(root / "data/raw/t10k-labels-idx1-ubyte", 2)
    elif damage == "npy_dtype":
        np.save(root / "data/processed/val_images.npy", np.zeros((10, 28, 28, 1), dtype=np.float32))
    elif damage == "npy_shape":
        labels = np.load(root / "data/processed/train_labels.npy")
        np.save(root / "data/processed/train_labels.npy", labels.reshape(-1, 1))
    elif damage == "half_model":
        path = root / "models/model.keras"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = {
        p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    result = run_script(root, stage)
    assert result.returncode == 1
    (error,) = error_lines(result.stderr, stage)
    assert error.startswith(f"{stage}: error: {message}")
    after = {
        p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    assert after == before  # nothing written, nothing removed


@contextmanager
def small_tmpfs(folder: Path, read_only: bool = False) -> Iterator[None]:
    """Mount a 1 MiB tmpfs on `folder` (needs root); skips the test where that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    options = "size=1m" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux"
)
@pytest.mark.parametrize(
    ("stage", "folder", "read_only", "message"),
    [
        ("train", "models", False, "No space left on device"),
        ("evaluate", "reports", True, "Read-only file system"),
    ],
)
def test_full_or_read_only_output_folder_is_one_line_and_leaves_no_half_file(
    built, tmp_path, stage, folder, read_only, message
):
    root = fresh_copy_with(built, tmp_path, "data/processed", "models/model.keras")
    if folder == "models":
        (root / "models/model.keras").unlink()
    with small_tmpfs(root / folder, read_only):
        result = run_script(root, stage)
        assert result.returncode == 1
        (error,) = error_lines(result.stderr, stage)
        assert error.startswith(f"{stage}: error: ") and message in error
        assert list((root / folder).iterdir()) == []  # no half-written file
