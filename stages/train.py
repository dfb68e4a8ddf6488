"""Stage 3, train: fit the CNN on the training split, validating every epoch.

Reads:  data/processed/{train,val}_{images,labels}.npy; params seed, model.*, train.*.
Writes: models/model.keras (Keras native format; takes raw 0-255 pixels),
        dvclive/ (per-epoch loss and accuracy, training and validation, via DVCLive).

After every epoch the full training state is checkpointed to .checkpoints/train/, so a
run that is killed resumes after its last finished epoch, with the same result as an
uninterrupted run. The checkpoint is removed once the outputs are written.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from dvclive import Live

from mnist_pipeline import checkpoint
from mnist_pipeline.arrays import load_split
from mnist_pipeline.params import Params, load_params
from mnist_pipeline.paths import CHECKPOINT_DIR, MODEL_FILE, TRAINING_LOG_DIR, split_files
from mnist_pipeline.stage import StageError, run_stage, staged_dir, staged_file

if TYPE_CHECKING:
    import keras

CODE = [Path(__file__), *sorted(Path(checkpoint.__file__).parent.glob("*.py"))]
DATA = [path for split in ("train", "val") for path in split_files(split)]


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; make TensorFlow's ops deterministic if asked."""
    from mnist_pipeline.model import keras

    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The shuffle of one epoch: a function of seed and epoch alone, so a resumed run
    sees the same batches as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def write_training_log(history: list[dict[str, float]]) -> None:
    """DVCLive files: train/<metric> and val/<metric> per epoch, and the last epoch's summary."""
    with staged_dir(TRAINING_LOG_DIR) as log_dir:
        live = Live(str(log_dir), dvcyaml=False, save_dvc_exp=False)
        for logs in history:
            for name, value in logs.items():
                split = "val" if name.startswith("val_") else "train"
                live.log_metric(f"{split}/{name.removeprefix('val_')}", value)
            live.next_step()
        live.end()


def compiled_model(params: Params, state: checkpoint.Checkpoint | None) -> keras.Model:
    """The CNN and its optimizer: fresh, or with every variable restored from a checkpoint."""
    from mnist_pipeline.model import build_model, keras

    model = build_model(params.model)
    optimizer = keras.optimizers.get(
        {
            "class_name": params.train.optimizer,
            "config": {"learning_rate": params.train.learning_rate},
        }
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if state is None:
        model.summary()
        return model
    optimizer.build(model.trainable_variables)
    for variable, value in zip(model.variables, state.model_variables, strict=True):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, state.optimizer_variables, strict=True):
        variable.assign(value)
    return model


def main() -> None:
    params = load_params("seed", "model", "train")
    backend = params.train.backend
    if importlib.util.find_spec(backend) is None:
        raise StageError(
            f"train.backend = {backend!r}, but {backend} is not installed (pip install {backend})"
        )
    os.environ["KERAS_BACKEND"] = backend  # before Keras is first imported
    x_train, y_train = load_split("train")
    x_val, y_val = load_split("val")
    settings = params.model_dump(include={"seed", "model", "train"})
    run_fingerprint = checkpoint.fingerprint(settings, CODE + DATA)
    state, note = checkpoint.load(CHECKPOINT_DIR, run_fingerprint)
    if note:
        print(f"train: {note}")

    from mnist_pipeline.distribution import distribution_scope  # imports keras

    seed_everything(params.seed, params.train.deterministic)
    with distribution_scope(params.train.distribution):
        model = compiled_model(params, state)
    history = state.history if state is not None else []
    if state is not None:
        print(
            f"train: resuming after epoch {state.epochs_done} of {params.train.epochs} (checkpoint in {CHECKPOINT_DIR})"
        )

    epochs = params.train.epochs
    for epoch in range(len(history), epochs):
        started = time.perf_counter()
        order = epoch_order(params.seed, epoch, len(y_train))
        result = model.fit(
            x_train[order],
            y_train[order],
            batch_size=params.train.batch_size,
            validation_data=(x_val, y_val),
            shuffle=False,
            verbose=1 if sys.stdout.isatty() else 0,
        )
        history.append({name: float(values[-1]) for name, values in result.history.items()})
        if not math.isfinite(history[-1]["loss"]):
            raise StageError(
                f"training diverged: loss {history[-1]['loss']} in epoch {epoch + 1}; "
                f"try a smaller train.learning_rate than {params.train.learning_rate}"
            )
        to_save = (
            [v.numpy() for v in model.variables],
            [v.numpy() for v in model.optimizer.variables],
        )
        checkpoint.save(
            CHECKPOINT_DIR, run_fingerprint, checkpoint.Checkpoint(epoch + 1, history, *to_save)
        )
        logged = " - ".join(f"{name} {value:.4f}" for name, value in history[-1].items())
        print(
            f"train: epoch {epoch + 1}/{epochs} - {time.perf_counter() - started:.1f} s - {logged}",
            flush=True,
        )

    write_training_log(history)
    with staged_file(MODEL_FILE) as tmp:
        model.save(tmp)
    checkpoint.clear(CHECKPOINT_DIR)
    print(f"train: saved {MODEL_FILE}")


if __name__ == "__main__":
    run_stage(main)
