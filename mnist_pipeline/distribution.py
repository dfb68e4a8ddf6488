"""Where the model is built and trained: on one device, or data-parallel across every
local accelerator with the backend's own engine (`train.distribution` in params.yaml)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from mnist_pipeline.backend import import_keras
from mnist_pipeline.stage import StageError

log = logging.getLogger(__name__)

keras = import_keras()  # on the backend the train stage chose


@contextmanager
def distribution_scope(kind: str) -> Iterator[None]:
    """Build, compile and restore the model inside this block.

    "data_parallel" replicates the model on every local device and splits each batch
    between them: tf.distribute.MirroredStrategy on TensorFlow, keras.distribution.
    DataParallel on JAX. With one device (a CPU) the same code path runs with one replica.
    """
    if kind == "none":
        yield
        return
    backend = keras.backend.backend()
    if backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        yield
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        log.info(f"data-parallel over {strategy.num_replicas_in_sync} device(s)")
        with strategy.scope():
            yield
    else:
        raise StageError(
            f"train.distribution = {kind!r} is not supported on the {backend} backend; use 'none'"
        )


def device_line(kind: str) -> str:
    """Where training runs, in one line: the devices and the backend."""
    backend = keras.backend.backend()
    if backend == "torch":  # Keras lists no devices for torch; it trains on one
        import torch

        devices = ["cuda:0" if torch.cuda.is_available() else "cpu:0"]
    else:
        devices = keras.distribution.list_devices()
    if kind == "none":
        return f"training on {devices[0]} with {backend}"
    return f"training on {', '.join(devices)} with {backend} (data-parallel)"
