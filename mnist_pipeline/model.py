"""The CNN, and loading a saved one.

Importing this module imports Keras, after choosing its backend (TensorFlow unless
KERAS_BACKEND says otherwise): stages take `keras` from here, never import it first.

The model takes raw uint8 pixels (N, 28, 28, 1) and scales them by 1/255 itself,
exactly as the seed tutorial normalises, so predictions need no preprocessing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_pipeline.mnist import IMAGE_SIZE, NUM_CLASSES
from mnist_pipeline.stage import StageError

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextmanager
def _native_stderr_silenced(silence: bool) -> Iterator[None]:
    """Send what native code writes to stderr to /dev/null (Python errors still show)."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# TensorFlow's start-up notes (oneDNN, no CUDA driver) ignore TF_CPP_MIN_LOG_LEVEL;
# they are hidden unless the user set that variable, e.g. TF_CPP_MIN_LOG_LEVEL=0.
with _native_stderr_silenced("TF_CPP_MIN_LOG_LEVEL" not in os.environ):
    import keras
    from keras import layers

    keras.ops.zeros(1)  # the first op probes the devices, which prints more notes

if TYPE_CHECKING:
    from mnist_pipeline.params import ModelParams


def build_model(params: ModelParams) -> keras.Model:
    """The seed's CNN with the defaults: Conv32-Conv64-Pool-Dense128, 1,199,882 weights."""
    model = keras.Sequential(name="mnist_cnn")
    model.add(keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype="uint8"))
    model.add(layers.Rescaling(1 / 255))  # pixel / 255: (28, 28, 1) floats in [0, 1]
    for filters in params.conv_filters:  # each 'valid' 3x3 conv: 28 -> 26 -> 24
        model.add(layers.Conv2D(filters, params.kernel_size, activation="relu"))
        if params.pooling == "after_each":  # the fast preset: 28 -> 26 -> 13 -> 11 -> 5
            model.add(layers.MaxPooling2D(params.pool_size))
    if params.pooling == "after_last":  # the seed: 24 -> 12: (12, 12, 64)
        model.add(layers.MaxPooling2D(params.pool_size))
    model.add(layers.Dropout(params.conv_dropout))
    model.add(layers.Flatten())  # 12 * 12 * 64 = 9216
    model.add(layers.Dense(params.dense_units, activation="relu"))
    model.add(layers.Dropout(params.dense_dropout))
    model.add(layers.Dense(NUM_CLASSES, activation="softmax"))
    return model


def load_model(path: Path) -> keras.Model:
    """Load a model saved by the train stage; a missing or damaged file is a StageError."""
    if not path.is_file():
        raise StageError(f"{path}: missing; run the train stage (dvc repro)")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for a damaged zip or config
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise StageError(f"{path}: not a readable Keras model ({first_line[:200]})") from None
