"""One training run in its own process, timing its steady-state epochs: the building
block of bench/run.py and bench/levers.py (TensorFlow's settings are per process).

    python bench/epoch_worker.py '{"path": "seed", "epochs": 2}'

path "seed": the seed tutorial's code as written: float64 arrays (pixels / 255) straight
into model.fit with Keras's own shuffling ("input": "float32" for the float32 lever).
path "ours": the train stage's way: uint8 arrays, the 1/255 inside the model, one fit()
over EpochBatches (a seeded permutation per epoch). Other levers: batch_size, bf16, deterministic, threads.
Prints one JSON line: per-epoch wall and CPU seconds after the first epoch, and the
test accuracy at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this project's package

config = {"path": "ours", "epochs": 2, "batch_size": 128, "input": "uint8", "bf16": False}
config |= {"deterministic": True, "threads": 0, "seed": 42}
config |= json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
if config["threads"]:
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(config["threads"])
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"

from mnist_pipeline.arrays import load_split  # noqa: E402
from mnist_pipeline.model import build_model, keras, set_precision  # noqa: E402
from mnist_pipeline.params import load_params  # noqa: E402
from mnist_pipeline.training import EpochBatches  # noqa: E402

keras.utils.set_random_seed(config["seed"])
if config["deterministic"]:
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
if config["bf16"]:  # train.precision: mixed_bfloat16, as the train stage sets it
    set_precision("mixed_bfloat16")

x_train, y_train = load_split("train")
x_test, y_test = load_split("test")
layers = keras.layers
if config["path"] == "seed":  # the tutorial's model and data, verbatim in spirit
    dtype = "float64" if config["input"] == "uint8" else config["input"]  # NumPy's default
    x_train, x_test = (x_train / 255.0).astype(dtype), (x_test / 255.0).astype(dtype)
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
else:
    params = load_params("seed", "model")
    model = build_model(params.model, params.seed)  # uint8 in, 1/255 inside the model
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

times = []


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        wall, cpu = self.started
        times.append((time.perf_counter() - wall, time.process_time() - cpu))


if config["path"] == "seed":
    model.fit(
        x_train,
        y_train,
        batch_size=config["batch_size"],
        epochs=config["epochs"],
        verbose=0,
        callbacks=[EpochTimer()],
    )
else:
    batches = EpochBatches(
        x_train, y_train, config["batch_size"], config["seed"], 0, config["epochs"]
    )
    model.fit(
        batches,
        epochs=config["epochs"],
        steps_per_epoch=batches.batches_per_epoch,
        shuffle=False,
        verbose=0,
        callbacks=[EpochTimer()],
    )
start = time.perf_counter()
probabilities = model.predict(x_test, batch_size=1000, verbose=0)
predict_s = time.perf_counter() - start
accuracy = float((probabilities.argmax(axis=1) == y_test).mean())
print(
    json.dumps(
        {
            "config": config,
            "epochs": times[1:],
            "first_epoch": times[0],
            "test_accuracy": accuracy,
            "train_images": len(y_train),
            "predict_s": predict_s,
            "test_images": len(y_test),
        }
    )
)
