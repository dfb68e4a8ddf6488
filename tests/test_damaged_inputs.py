"""Damaged or missing inputs stop a stage with one line naming the file (and, for a
missing one, how to make it), no traceback, and nothing written: raw IDX files cut short
or with a flipped bit, processed .npy arrays of the wrong dtype, shape or labels, or not
arrays at all, and a half-written model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_pipeline.arrays import load_split, save_split
from mnist_pipeline.paths import PROCESSED_DIR, split_files
from mnist_pipeline.stage import StageError

from .helpers import copy_project, project_with_outputs, run_script, stage_errors

# ---------------------------------------------------------------- a stage's inputs, damaged


def flip_a_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def cut_train_labels_short(root: Path) -> None:
    path = root / "data/raw/train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[: 8 + 29992])


def flip_a_train_image_pixel(root: Path) -> None:
    flip_a_bit(root / "data/raw/train-images-idx3-ubyte", 16 + 28 * 14 + 14)


def flip_a_bit_of_the_test_labels_magic(root: Path) -> None:
    flip_a_bit(root / "data/raw/t10k-labels-idx1-ubyte", 2)


def make_val_images_float(root: Path) -> None:
    np.save(root / "data/processed/val_images.npy", np.zeros((10, 28, 28, 1), dtype=np.float32))


def make_train_labels_a_column(root: Path) -> None:
    labels = np.load(root / "data/processed/train_labels.npy")
    np.save(root / "data/processed/train_labels.npy", labels.reshape(-1, 1))


def cut_the_model_in_half(root: Path) -> None:
    path = root / "models/model.keras"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# (stage, the damage done to its inputs in a fresh project copy, its error line's start)
CORRUPTIONS = [
    (
        "preprocess",
        cut_train_labels_short,
        "data/raw/train-labels-idx1-ubyte: truncated: 29992 data bytes, the header says 60000",
    ),
    (
        "preprocess",
        flip_a_train_image_pixel,
        "data/raw/train-images-idx3-ubyte: contents differ from the published MNIST file (sha256 mismatch)",
    ),
    (
        "preprocess",
        flip_a_bit_of_the_test_labels_magic,
        "data/raw/t10k-labels-idx1-ubyte: bad magic number 0x00000901",
    ),
    (
        "train",
        make_val_images_float,
        "data/processed/val_images.npy: expected uint8 images shaped (N, 28, 28, 1), found float32",
    ),
    (
        "train",
        make_train_labels_a_column,
        "data/processed/train_labels.npy: expected 2000 uint8 labels shaped (N,), found uint8 (2000, 1)",
    ),
    ("evaluate", cut_the_model_in_half, "models/model.keras: not a readable Keras model"),
]


@pytest.mark.slow  # the trained project: a small pipeline run
@pytest.mark.parametrize(
    ("stage", "damage", "message"),
    CORRUPTIONS,
    ids=[f"{stage}-{damage.__name__}" for stage, damage, _ in CORRUPTIONS],
)
def test_corrupt_input_to_a_stage_is_one_line_naming_the_file_and_nothing_is_written(
    trained_project, tmp_path, stage, damage, message
):
    root = project_with_outputs(
        trained_project, tmp_path / "project", "data/raw", "data/processed", "models/model.keras"
    )
    damage(root)
    before = {
        p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    result = run_script(root, stage)
    assert result.returncode == 1
    (error,) = stage_errors(result.stderr, stage)
    assert error.startswith(f"{stage}: error: {message}")
    after = {
        p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    assert after == before  # nothing written, nothing removed


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (
            "preprocess",
            "data/raw/train-images-idx3-ubyte: missing; run the fetch stage (dvc repro fetch)",
        ),
        ("train", "data/processed/train_images.npy: missing; run the preprocess stage (dvc repro)"),
        (
            "evaluate",
            "data/processed/test_images.npy: missing; run the preprocess stage (dvc repro)",
        ),
    ],
)
def test_stage_run_without_its_inputs_says_which_and_how_to_make_them(tmp_path, stage, message):
    root = copy_project(tmp_path / "project")
    result = run_script(root, stage)
    assert result.returncode == 1
    assert result.stderr.strip() == f"{stage}: error: {message}"


# ---------------------------------------------------------------- one split's arrays, damaged


def write_split(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    (folder / PROCESSED_DIR).mkdir(parents=True)
    save_split(folder / PROCESSED_DIR, "val", images, labels)


def test_load_split_returns_what_save_split_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = np.arange(3 * 784).reshape(3, 28, 28) % 256
    write_split(tmp_path, images, np.array([1, 2, 3]))
    loaded_images, loaded_labels = load_split("val")
    assert loaded_images.shape == (3, 28, 28, 1) and loaded_images.dtype == np.uint8
    np.testing.assert_array_equal(loaded_images[..., 0], images)
    assert loaded_labels.tolist() == [1, 2, 3]


# Each damage takes the split's (images file, labels file), 3 images labelled 1, 2, 3.
SPLIT_DAMAGES = {
    "float_images": (
        lambda images, labels: np.save(images, np.zeros((3, 28, 28, 1))),
        "val_images.npy: expected uint8 images shaped (N, 28, 28, 1), found float64 (3, 28, 28, 1)",
    ),
    "flat_images": (
        lambda images, labels: np.save(images, np.zeros((3, 784), dtype=np.uint8)),
        "val_images.npy: expected uint8 images shaped (N, 28, 28, 1), found uint8 (3, 784)",
    ),
    "short_labels": (
        lambda images, labels: np.save(labels, np.array([1, 2], dtype=np.uint8)),
        "val_labels.npy: expected 3 uint8 labels shaped (N,), found uint8 (2,)",
    ),
    "bad_label": (
        lambda images, labels: np.save(labels, np.array([1, 11, 2], dtype=np.uint8)),
        "val_labels.npy: labels must be 0-9, found 11",
    ),
    "truncated": (
        lambda images, labels: images.write_bytes(images.read_bytes()[:1000]),
        "val_images.npy: not a readable .npy array",
    ),
    "not_npy": (
        lambda images, labels: images.write_text("hello"),
        "val_images.npy: not a readable .npy array",
    ),
    "missing": (
        lambda images, labels: images.unlink(),
        "val_images.npy: missing; run the preprocess stage",
    ),
}


@pytest.mark.parametrize("name", SPLIT_DAMAGES)
def test_damaged_split_is_a_one_line_error_naming_the_file(tmp_path, monkeypatch, name):
    damage, message = SPLIT_DAMAGES[name]
    monkeypatch.chdir(tmp_path)
    write_split(tmp_path, np.zeros((3, 28, 28)), np.array([1, 2, 3]))
    damage(*split_files("val"))
    with pytest.raises(StageError) as error:
        load_split("val")
    assert message in str(error.value)
    assert "\n" not in str(error.value)
