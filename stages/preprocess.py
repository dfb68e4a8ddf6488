"""Stage 2, preprocess: parse the IDX files into train / validation / test arrays.

Its inputs and outputs are its entry in dvc.yaml. The raw files are checked (magic
number, dimensions, counts, labels, sha256); the arrays are uint8, images (N, 28, 28,
1); the stats are counts per class and the pixels' mean and std after /255; the picture
the first training digits with their labels.

The validation split is a stratified, seeded hold-out from the 60,000 training images;
the test set is passed through untouched, for evaluate alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Import this project's own mnist_pipeline (the folder above this script), never an
# installed copy: an experiment in a temporary copy runs the copy's code, as DVC records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json

import numpy as np
from sklearn.model_selection import train_test_split

from mnist_pipeline.arrays import save_split
from mnist_pipeline.figures import save_digit_grid
from mnist_pipeline.mnist import (
    NUM_CLASSES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    read_idx,
)
from mnist_pipeline.params import load_params
from mnist_pipeline.paths import (
    DATASET_STATS_FILE,
    PROCESSED_DIR,
    RAW_DIR,
    SAMPLE_GRID_FILE,
)
from mnist_pipeline.stage import log, run_stage, staged_dir, write_text_atomic

SAMPLE_COUNT = 32


def split_indices(
    labels: np.ndarray, val_size: int, max_train: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (train, validation) indices; the train part capped at max_train."""
    train, val = train_test_split(
        np.arange(len(labels)), test_size=val_size, stratify=labels, random_state=seed
    )
    if max_train is not None and max_train < len(train):
        train, _ = train_test_split(
            train, train_size=max_train, stratify=labels[train], random_state=seed
        )
    return train, val


def split_stats(images: np.ndarray, labels: np.ndarray) -> dict:
    """Counts per class and the pixel mean/std after /255, in exact integer sums."""
    pixels = images.reshape(-1)
    total = float(pixels.sum(dtype=np.uint64))
    squares = float(np.square(pixels, dtype=np.uint32).sum(dtype=np.uint64))
    mean = total / pixels.size / 255
    std = float(np.sqrt(max(squares / pixels.size / 255**2 - mean**2, 0.0)))
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    return {
        "count": len(labels),
        "class_counts": {str(digit): int(n) for digit, n in enumerate(counts)},
        "pixel_mean": round(mean, 6),
        "pixel_std": round(std, 6),
    }


def main() -> None:
    params = load_params("seed", "preprocess")
    log.info(f"checking the MNIST files in {RAW_DIR}")
    images = read_idx(RAW_DIR / TRAIN_IMAGES.name, TRAIN_IMAGES)
    labels = read_idx(RAW_DIR / TRAIN_LABELS.name, TRAIN_LABELS)
    test_images = read_idx(RAW_DIR / TEST_IMAGES.name, TEST_IMAGES)
    test_labels = read_idx(RAW_DIR / TEST_LABELS.name, TEST_LABELS)

    train, val = split_indices(
        labels, params.preprocess.val_size, params.preprocess.max_train, params.seed
    )
    splits = {
        "train": (images[train], labels[train]),
        "val": (images[val], labels[val]),
        "test": (test_images, test_labels),
    }
    with staged_dir(PROCESSED_DIR) as staging:
        for split, (split_images, split_labels) in splits.items():
            save_split(staging, split, split_images, split_labels)

    stats = {split: split_stats(*arrays) for split, arrays in splits.items()}
    write_text_atomic(DATASET_STATS_FILE, json.dumps(stats, indent=2) + "\n")
    train_images, train_labels = splits["train"]
    save_digit_grid(
        train_images[:SAMPLE_COUNT],
        [f"label {label}" for label in train_labels[:SAMPLE_COUNT]],
        SAMPLE_GRID_FILE,
    )
    for split, (_, split_labels) in splits.items():
        log.info(f"{split}: {len(split_labels):,} images")


if __name__ == "__main__":
    run_stage(main)
