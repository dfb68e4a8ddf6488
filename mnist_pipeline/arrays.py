"""The preprocessed splits on disk: .npy arrays that np.load can memory-map.

Images are stored as raw uint8 pixels, shaped (N, 28, 28, 1); the model itself
scales them by 1/255, so a saved model takes raw 0-255 images directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_pipeline.mnist import IMAGE_SIZE, NUM_CLASSES
from mnist_pipeline.paths import split_files, suite_files
from mnist_pipeline.stage import StageError

IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def save_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write one split's arrays into `folder` (a staging copy of data/processed)."""
    _save(folder, split_files(split), images, labels)


def save_suite_set(folder: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write one set of the robustness suite into `folder` (a staging copy of its folder)."""
    _save(folder, suite_files(name), images, labels)


def _save(folder: Path, files: tuple[Path, Path], images: np.ndarray, labels: np.ndarray) -> None:
    images_file, labels_file = files
    np.save(folder / images_file.name, images.reshape(-1, *IMAGE_SHAPE).astype(np.uint8))
    np.save(folder / labels_file.name, labels.astype(np.uint8))


def _load(path: Path, stage: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise StageError(f"{path}: missing; run the {stage} stage (dvc repro)") from None
    except (ValueError, EOFError, OSError) as error:
        raise StageError(f"{path}: not a readable .npy array ({error})") from None


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load and check one split: uint8 images (N, 28, 28, 1) and uint8 labels (N,) in 0-9.

    Raises StageError naming the file if a shape, dtype or label is wrong.
    """
    return _load_checked(split_files(split), "preprocess")


def load_suite_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load and check one set of the robustness suite, as `load_split` does a split."""
    return _load_checked(suite_files(name), "corrupt")


def _load_checked(files: tuple[Path, Path], stage: str) -> tuple[np.ndarray, np.ndarray]:
    images_file, labels_file = files
    images, labels = _load(images_file, stage), _load(labels_file, stage)
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        raise StageError(
            f"{images_file}: expected uint8 images shaped (N, 28, 28, 1), "
            f"found {images.dtype} {images.shape}; re-run {stage} (dvc repro -f {stage})"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise StageError(
            f"{labels_file}: expected {len(images)} uint8 labels shaped (N,), "
            f"found {labels.dtype} {labels.shape}; re-run {stage} (dvc repro -f {stage})"
        )
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise StageError(f"{labels_file}: labels must be 0-{NUM_CLASSES - 1}, found {labels.max()}")
    return np.asarray(images), np.asarray(labels)
