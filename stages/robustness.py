"""Stage 6, robustness: score the trained model on the robustness suite.

Its inputs and outputs are its entry in dvc.yaml. The metrics are the accuracy on the
suite's sample of clean test images (for reference), on each set of the suite, their
mean over the whole suite and over MNIST-C's 15 alone, and the worst; the CSV one row
per set (set, accuracy), for DVC's bar chart.

With evaluate.min_robustness set, the stage fails in one line when the suite's mean is
below it (after writing the figures, so the failure can be read).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Import this project's own mnist_pipeline (the folder above this script), never an
# installed copy: an experiment in a temporary copy runs the copy's code, as DVC records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json

import numpy as np
import pandas as pd

from mnist_pipeline.arrays import load_suite_set
from mnist_pipeline.backend import import_keras
from mnist_pipeline.corruptions import CLEAN, MNIST_C, SUITE
from mnist_pipeline.params import load_params
from mnist_pipeline.paths import MODEL_FILE, ROBUSTNESS_FILE, ROBUSTNESS_PLOT_FILE
from mnist_pipeline.stage import (
    StageError,
    log,
    require_file,
    run_stage,
    staged_file,
    write_text_atomic,
)

PREDICT_BATCH_SIZE = 1000
DECIMALS = 6


def summary(accuracy: dict[str, float]) -> dict:
    """The suite's figures: clean, each set's, the means and the worst, rounded."""
    suite = [accuracy[name] for name in SUITE]
    return {
        "robustness": {
            "clean": round(accuracy[CLEAN], DECIMALS),
            "mean": round(float(np.mean(suite)), DECIMALS),
            "mnist_c_mean": round(float(np.mean([accuracy[name] for name in MNIST_C])), DECIMALS),
            "worst": round(min(suite), DECIMALS),
            "accuracy": {name: round(accuracy[name], DECIMALS) for name in SUITE},
        }
    }


def main() -> None:
    minimum = load_params("evaluate").evaluate.min_robustness
    sets = {name: load_suite_set(name) for name in (CLEAN, *SUITE)}
    require_file(MODEL_FILE, made_by="train")
    import_keras()  # TensorFlow, unless KERAS_BACKEND names another backend
    from mnist_pipeline.model import load_model  # builds on the Keras just imported

    model = load_model(MODEL_FILE)
    count = sum(len(labels) for _, labels in sets.values())
    log.info(f"scoring {MODEL_FILE} on {len(sets)} sets, {count:,} images")
    accuracy = {}
    for name, (images, labels) in sets.items():
        predicted = model.predict(images, batch_size=PREDICT_BATCH_SIZE, verbose=0).argmax(axis=1)
        accuracy[name] = float(np.mean(predicted == labels))
        log.info(f"{name:24} {accuracy[name]:.4f}")

    figures = summary(accuracy)
    table = pd.DataFrame({"set": list(SUITE), "accuracy": [accuracy[name] for name in SUITE]})
    with staged_file(ROBUSTNESS_PLOT_FILE) as tmp:
        table.round(DECIMALS).to_csv(tmp, index=False)
    write_text_atomic(ROBUSTNESS_FILE, json.dumps(figures, indent=2) + "\n")
    result = figures["robustness"]
    worst = min(SUITE, key=accuracy.__getitem__)
    log.info(
        f"mean {result['mean']:.4f} over {len(SUITE)} sets, "
        f"worst {result['worst']:.4f} ({worst}), clean {result['clean']:.4f}"
    )
    if minimum is not None and result["mean"] < minimum:
        raise StageError(
            f"the suite's mean accuracy {result['mean']:.4f} is below "
            f"evaluate.min_robustness = {minimum} (worst: {worst} {result['worst']:.4f}; "
            f"see {ROBUSTNESS_FILE})"
        )


if __name__ == "__main__":
    run_stage(main)
