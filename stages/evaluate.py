"""Stage 4, evaluate: score the trained model on the held-back test set.

Its inputs and outputs are its entry in dvc.yaml. The metrics are test accuracy and
loss, per-class precision / recall / F1 and their macro averages; the predictions one
row per test image (actual, predicted: DVC's confusion matrix); the picture the test
digits the model got wrong with the most confidence, each with its true and predicted
label.
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
from sklearn.metrics import precision_recall_fscore_support

from mnist_pipeline.arrays import load_split
from mnist_pipeline.backend import import_keras
from mnist_pipeline.figures import save_digit_grid
from mnist_pipeline.mnist import NUM_CLASSES
from mnist_pipeline.paths import (
    METRICS_FILE,
    MISCLASSIFIED_GRID_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
)
from mnist_pipeline.stage import log, require_file, run_stage, staged_file, write_text_atomic

PREDICT_BATCH_SIZE = 1000
DECIMALS = 6
MISCLASSIFIED_SHOWN = 32


def rounded(values: dict[str, float]) -> dict[str, float]:
    return {name: round(float(value), DECIMALS) for name, value in values.items()}


def score(labels: np.ndarray, predicted: np.ndarray, loss: float) -> dict:
    """Accuracy, loss, per-class and macro-averaged precision / recall / F1."""
    classes = list(range(NUM_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    per_class = {
        str(digit): {
            **rounded({"precision": precision[digit], "recall": recall[digit], "f1": f1[digit]}),
            "support": int(support[digit]),
        }
        for digit in classes
    }
    macro = rounded({"precision": precision.mean(), "recall": recall.mean(), "f1": f1.mean()})
    test = rounded({"accuracy": (predicted == labels).mean(), "loss": loss})
    return {"test": {**test, "macro_avg": macro, "per_class": per_class}}


def save_misclassified_grid(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray
) -> None:
    """The most confidently wrong test digits, captioned with true and predicted labels."""
    wrong = np.flatnonzero(predicted != labels)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISCLASSIFIED_SHOWN]
    captions = [f"true {labels[i]}, pred {predicted[i]}" for i in shown]
    save_digit_grid(images[shown], captions, MISCLASSIFIED_GRID_FILE)


def main() -> None:
    images, labels = load_split("test")
    require_file(MODEL_FILE, made_by="train")
    keras = import_keras()  # TensorFlow, unless KERAS_BACKEND names another backend
    from mnist_pipeline.model import load_model  # builds on the Keras just imported

    model = load_model(MODEL_FILE)
    log.info(f"scoring {MODEL_FILE} on {len(labels):,} test images")
    probabilities = model.predict(images, batch_size=PREDICT_BATCH_SIZE, verbose=0)
    predicted = probabilities.argmax(axis=1)
    loss = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    metrics = score(labels, predicted, float(keras.ops.mean(loss)))

    predictions = pd.DataFrame({"actual": labels, "predicted": predicted})
    with staged_file(PREDICTIONS_FILE) as tmp:
        predictions.to_csv(tmp, index=False)
    save_misclassified_grid(images, labels, predicted, probabilities.max(axis=1))
    write_text_atomic(METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    test = metrics["test"]
    log.info(f"test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}")


if __name__ == "__main__":
    run_stage(main)
