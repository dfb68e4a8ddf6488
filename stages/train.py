"""Stage 3, train: fit the CNN on the training split, validating every epoch.

Reads:  data/processed/{train,val}_{images,labels}.npy; params seed, model.*, train.*.
Writes: models/model.keras (Keras native format; takes raw 0-255 pixels),
        dvclive/ (per-epoch loss and accuracy, training and validation, via DVCLive).
"""

from __future__ import annotations

import sys

from dvclive import Live

from mnist_pipeline.arrays import load_split
from mnist_pipeline.params import load_params
from mnist_pipeline.paths import MODEL_FILE, TRAINING_LOG_DIR
from mnist_pipeline.stage import run_stage, staged_dir, staged_file


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; make TensorFlow's ops deterministic if asked."""
    from mnist_pipeline.model import keras

    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def log_epoch(live: Live, logs: dict[str, float]) -> None:
    """Log one epoch's Keras metrics to DVCLive as train/<name> and val/<name>."""
    for name, value in logs.items():
        split = "val" if name.startswith("val_") else "train"
        live.log_metric(f"{split}/{name.removeprefix('val_')}", float(value))
    live.next_step()


def main() -> None:
    params = load_params("seed", "model", "train")
    x_train, y_train = load_split("train")
    x_val, y_val = load_split("val")

    from mnist_pipeline.model import build_model, keras  # keras with its backend chosen

    seed_everything(params.seed, params.train.deterministic)
    model = build_model(params.model)
    model.compile(
        optimizer=keras.optimizers.get(
            {
                "class_name": params.train.optimizer,
                "config": {"learning_rate": params.train.learning_rate},
            }
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.summary()

    with staged_dir(TRAINING_LOG_DIR) as log_dir:
        live = Live(str(log_dir), dvcyaml=False, save_dvc_exp=False)
        model.fit(
            x_train,
            y_train,
            batch_size=params.train.batch_size,
            epochs=params.train.epochs,
            validation_data=(x_val, y_val),
            shuffle=True,
            callbacks=[
                keras.callbacks.LambdaCallback(on_epoch_end=lambda _, logs: log_epoch(live, logs))
            ],
            verbose=1 if sys.stdout.isatty() else 2,
        )
        live.end()
        with staged_file(MODEL_FILE) as tmp:
            model.save(tmp)
    print(f"train: saved {MODEL_FILE}")


if __name__ == "__main__":
    run_stage(main)
