"""Stage 3, train: fit the CNN on the training split, validating every epoch.

Reads:  data/processed/{train,val}_{images,labels}.npy; params seed, model.*, train.*.
Writes: models/model.keras (Keras native format; takes raw 0-255 pixels),
        dvclive/ (per-epoch loss and accuracy, training and validation, via DVCLive,
        written as each epoch ends).

After every epoch the whole training state is checkpointed into the checkpoint store
(CHECKPOINT_STORE in mnist_pipeline/paths.py), keyed by a fingerprint of the params,
code and data: a run that is killed, in the workspace or in a queued experiment's
temporary copy, resumes after its last finished epoch when it is run again, with the
same result as an uninterrupted run. The checkpoint is removed once the outputs are written.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Import this project's own mnist_pipeline (the folder above this script), never an
# installed copy: an experiment in a temporary copy runs the copy's code, as DVC records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import importlib.util
import os
import shutil
from typing import TYPE_CHECKING

from mnist_pipeline import checkpoint
from mnist_pipeline.arrays import load_split
from mnist_pipeline.params import Params, load_params
from mnist_pipeline.paths import (
    CHECKPOINT_STORE,
    MODEL_FILE,
    PACKAGE_DIR,
    TRAINING_LOG_DIR,
    split_files,
)
from mnist_pipeline.stage import StageError, run_stage, staged_file

if TYPE_CHECKING:
    import keras

# What the checkpoint fingerprint covers besides the params (paths relative to the root).
CODE = [Path("stages/train.py"), *sorted(PACKAGE_DIR.glob("*.py"))]
DATA = [path for split in ("train", "val") for path in split_files(split)]


def choose_backend(backend: str) -> None:
    """Make `backend` Keras's backend; must run before Keras is first imported."""
    if importlib.util.find_spec(backend) is None:
        raise StageError(
            f"train.backend = {backend!r}, but {backend} is not installed (pip install {backend})"
        )
    os.environ["KERAS_BACKEND"] = backend


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; make TensorFlow's ops deterministic if asked."""
    from mnist_pipeline.model import keras

    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def compiled_model(params: Params, train_count: int) -> keras.Model:
    """The CNN in the run's precision, compiled, its optimizer's variables built."""
    from mnist_pipeline.model import build_model, precision_note, set_precision
    from mnist_pipeline.training import compile_model, steps_per_epoch

    note = precision_note(params.train.precision)
    if note:
        print(f"train: {note}")
    set_precision(params.train.precision)
    model = build_model(params.model, params.seed)
    compile_model(model, params.train, steps_per_epoch(train_count, params.train.batch_size))
    return model


def open_checkpoint_store(params: Params) -> checkpoint.CheckpointStore:
    settings = params.model_dump(include={"seed", "model", "train"})
    for folder in checkpoint.remove_stale(CHECKPOINT_STORE):
        print(
            f"train: removed a checkpoint unused for {checkpoint.STALE_AFTER_DAYS} days: {folder}"
        )
    return checkpoint.CheckpointStore(
        CHECKPOINT_STORE, checkpoint.fingerprint(settings, CODE + DATA)
    )


def main() -> None:
    params = load_params("seed", "model", "train")
    choose_backend(params.train.backend)
    train, val = load_split("train"), load_split("val")
    store = open_checkpoint_store(params)
    with store.held() as held:
        from mnist_pipeline import training  # imports Keras, with the backend chosen above
        from mnist_pipeline.distribution import distribution_scope

        seed_everything(params.seed, params.train.deterministic)
        with distribution_scope(params.train.distribution):
            model = compiled_model(params, len(train[1]))
            layout = training.checkpoint_layout(model, params.train)
            resumed, note = store.load(layout) if held else (None, "")
            if not held:
                note = f"another run of this same experiment holds {store.folder}; this run keeps no checkpoint"
            if note:
                print(f"train: {note}")
            if resumed is None:
                model.summary()
            else:
                print(
                    f"train: resuming after epoch {resumed.epochs_done} of {params.train.epochs} "
                    f"(checkpoint in {store.folder})"
                )
                training.restore(model, resumed)
        shutil.rmtree(TRAINING_LOG_DIR, ignore_errors=True)  # a fresh log, replayed on resume
        try:
            training.fit(
                model, params.train, params.seed, train, val, store if held else None, resumed
            )
        except BaseException:  # failed or interrupted: the checkpoint keeps what was done,
            shutil.rmtree(TRAINING_LOG_DIR, ignore_errors=True)  # and no half log is left
            raise

        with staged_file(MODEL_FILE) as tmp:
            model.save(tmp)
        if held:
            store.clear()
    print(f"train: saved {MODEL_FILE}")


if __name__ == "__main__":
    run_stage(main)
