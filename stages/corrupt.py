"""Stage 5, corrupt: build the robustness suite, the digits the robustness stage scores
the model on besides MNIST's own test set.

Its inputs and outputs are its entry in dvc.yaml. The suite holds, as uint8 arrays,
the sampled test images under each of MNIST-C's 15 corruptions and what pens and
scanners do, digits rendered from fonts (read as `mnist-pipeline predict` reads an
image file; all 1,520 of the fonts and layouts, or as many as the sampled test images
where those are fewer), and the set `clean`, the sampled test images themselves; the
picture shows one example of each set.

The suite is data, built once: seeded, byte for byte the same on every rebuild, so that
every experiment is scored on the same digits, in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Import this project's own mnist_pipeline (the folder above this script), never an
# installed copy: an experiment in a temporary copy runs the copy's code, as DVC records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.model_selection import train_test_split

from mnist_pipeline.arrays import load_split, save_suite_set
from mnist_pipeline.corruptions import CLEAN, build_suite, save_examples
from mnist_pipeline.params import load_params
from mnist_pipeline.paths import SUITE_DIR, SUITE_EXAMPLES_FILE
from mnist_pipeline.renderings import GRID_SIZE
from mnist_pipeline.stage import log, run_stage, staged_dir


def sample(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A stratified, seeded sample of `count` test images' indices, in the test set's
    order; all of them when `count` is the whole set."""
    if count >= len(labels):
        return np.arange(len(labels))
    chosen, _ = train_test_split(
        np.arange(len(labels)), train_size=count, stratify=labels, random_state=seed
    )
    return np.sort(chosen)


def main() -> None:
    params = load_params("robustness").robustness
    images, labels = load_split("test")
    chosen = sample(labels, params.test_images, params.seed)
    rendered = min(len(chosen), GRID_SIZE)  # a small suite renders fewer digits too
    log.info(f"building the suite from {len(chosen):,} test images, {rendered:,} rendered digits")
    suite = build_suite(images[chosen, ..., 0], labels[chosen], params.seed, rendered)
    with staged_dir(SUITE_DIR) as staging:
        save_suite_set(staging, CLEAN, images[chosen], labels[chosen])  # for reference
        for name, (set_images, set_labels) in suite.items():
            save_suite_set(staging, name, set_images, set_labels)
    save_examples(suite, SUITE_EXAMPLES_FILE)
    log.info(f"{len(suite)} sets, {sum(len(y) for _, y in suite.values()):,} images")


if __name__ == "__main__":
    run_stage(main)
