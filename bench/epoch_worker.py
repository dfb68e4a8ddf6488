"""One training run in its own process, timing its steady-state epochs: the building
block of bench/run.py and bench/levers.py (TensorFlow's settings are per process).

    python bench/epoch_worker.py '{"path": "seed", "epochs": 2}'

Run from a project root: it trains on that project's data/processed with its params.yaml.

path "ours": the train stage's own code, called (bench/measure.py's
`train_as_the_stage_does`): its seeding, its model compiled in its precision, one fit()
over its EpochBatches, with params.yaml's settings but for the levers below.
path "seed": the seed tutorial's code as written (`seed_tutorial_reference`), the
reference ours is measured against: float64 arrays (pixels / 255) straight into
model.fit with Keras's own shuffling, in the same process settings (seed, op
determinism, precision) as ours.

The levers, each defaulting to params.yaml's value: batch_size, bf16 (train.precision
mixed_bfloat16), deterministic, seed; and epochs (default 2), threads (TensorFlow's
intra-op threads, with 1 inter-op; default 0: TensorFlow's choice), input (the seed
path's array dtype: "uint8" leaves NumPy's float64, "float32" converts).
Prints one JSON line: the config, per-epoch wall and CPU seconds after the first epoch,
the first epoch's apart, and the test accuracy and inference time at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this project's package

from mnist_pipeline.params import Params, read_params_file, validate_params

if TYPE_CHECKING:
    import numpy as np

STAGE_SECTIONS = ("seed", "model", "train")  # what the train stage reads


def configured(given: dict) -> tuple[dict, Params]:
    """The full config (`given` over the defaults) and the params it trains with:
    params.yaml's, with the config's levers put in."""
    raw = read_params_file()
    train = raw["train"]
    config = {
        "path": "ours",
        "epochs": 2,
        "batch_size": train["batch_size"],
        "input": "uint8",
        "bf16": train["precision"] == "mixed_bfloat16",
        "deterministic": train["deterministic"],
        "threads": 0,
        "seed": raw["seed"],
    }
    unknown = sorted(set(given) - set(config))
    if unknown:
        raise SystemExit(f"epoch_worker: unknown keys {unknown}; known: {list(config)}")
    if given.get("path", "ours") not in ("ours", "seed"):
        raise SystemExit(f'epoch_worker: path {given["path"]!r}: use "ours" or "seed"')
    config |= given
    raw["seed"] = config["seed"]
    train |= {"epochs": config["epochs"], "batch_size": config["batch_size"]}
    train["deterministic"] = config["deterministic"]
    if config["bf16"] != (train["precision"] == "mixed_bfloat16"):
        train["precision"] = "mixed_bfloat16" if config["bf16"] else "float32"
    return config, validate_params(raw, STAGE_SECTIONS, "params.yaml with the worker's levers")


config, params = configured(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
if config["threads"]:  # read when TensorFlow starts
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(config["threads"])
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"

from mnist_pipeline.backend import import_keras  # noqa: E402

keras = import_keras(params.train.backend, chosen_by="train.backend")

from bench.measure import EpochTimes, epoch_timer, train_as_the_stage_does  # noqa: E402
from mnist_pipeline.arrays import load_split  # noqa: E402
from mnist_pipeline.training import seed_everything  # noqa: E402


def seed_tutorial_reference(
    train: tuple[np.ndarray, np.ndarray],
    test_images: np.ndarray,
    batch_size: int,
    epochs: int,
    input_dtype: str,
    callbacks: list[keras.callbacks.Callback],
) -> tuple[keras.Model, np.ndarray]:
    """THE SEED TUTORIAL'S CODE, AS WRITTEN: the reference that our code path is measured
    against, and so deliberately not the product's code. Pixels / 255 in NumPy's float64
    (or `input_dtype` float32), its Conv32-Conv64-Pool-Dense128 CNN, Adam, and
    `model.fit` on the arrays with Keras's own shuffling.

    Returns the trained model and the test images as it takes them."""
    dtype = "float64" if input_dtype == "uint8" else input_dtype  # NumPy's default
    x_train, y_train = train
    x_train, x_test = (x_train / 255.0).astype(dtype), (test_images / 255.0).astype(dtype)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks
    )
    return model, x_test


def main() -> None:
    train, (test_images, test_labels) = load_split("train"), load_split("test")
    if config["path"] == "seed":
        # The process set up as the train stage sets it up: only the code paths differ.
        seed_everything(params.seed, params.train.deterministic)
        keras.config.set_dtype_policy(params.train.precision)  # the reference's layers
        times: EpochTimes = []
        model, test_images = seed_tutorial_reference(
            train,
            test_images,
            config["batch_size"],
            config["epochs"],
            config["input"],
            [epoch_timer(times)],
        )
    else:
        model, times = train_as_the_stage_does(params, train)
    start = time.perf_counter()
    probabilities = model.predict(test_images, batch_size=1000, verbose=0)
    predict_s = time.perf_counter() - start
    accuracy = float((probabilities.argmax(axis=1) == test_labels).mean())
    print(
        json.dumps(
            {
                "config": config,
                "epochs": times[1:],
                "first_epoch": times[0],
                "test_accuracy": accuracy,
                "train_images": len(train[1]),
                "predict_s": predict_s,
                "test_images": len(test_labels),
            }
        )
    )


if __name__ == "__main__":
    main()
