"""Keras, on the backend the run chose, imported quietly: the one place the project
imports Keras.

A process picks its backend once, where it starts: the train stage from the param
train.backend (`choose_backend`, a cheap check that imports nothing, with the params),
export TensorFlow, the others KERAS_BACKEND (TensorFlow by default). Each then checks its
inputs and imports Keras through `import_keras`. The modules that build, train or load
models take Keras from `import_keras()`, the one already imported, so they are imported
after it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from mnist_pipeline.paths import JAX_COMPILATION_CACHE
from mnist_pipeline.stage import StageError

DEFAULT_BACKEND = "tensorflow"  # unless KERAS_BACKEND or the caller says otherwise
JAX_CACHE_MAX_BYTES = 2 << 30  # then JAX drops the least recently used programs
XLA_DETERMINISTIC = "--xla_gpu_deterministic_ops=true"

# Whether the user asked to see all of TensorFlow's native logging (its level 0); any
# other level, or none, keeps it quiet. Read before Keras is imported, as importing it
# sets TF_CPP_MIN_LOG_LEVEL itself.
_NATIVE_LOGS_WANTED = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"


def choose_backend(
    backend: str, chosen_by: str = "KERAS_BACKEND", deterministic: bool = False
) -> None:
    """Make `backend` the one Keras will run on, before anything imports it (a cheap
    check: nothing is imported). A backend that is not installed, or another than the
    one Keras already runs on, is a StageError naming `chosen_by` (what set it).

    On JAX, also set what JAX reads as it loads: its persistent compilation cache
    (JAX_COMPILATION_CACHE), and with `deterministic`, XLA's deterministic GPU kernels
    (`--xla_gpu_deterministic_ops`, no effect on a CPU); a value the user set wins."""
    imported = sys.modules.get("keras")
    if imported is not None and imported.backend.backend() != backend:
        raise StageError(
            f"{chosen_by} = {backend!r}, but Keras already runs on {imported.backend.backend()}"
        )
    if importlib.util.find_spec(backend) is None:
        raise StageError(
            f"{chosen_by} = {backend!r}, but {backend} is not installed (pip install {backend})"
        )
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax" and "jax" not in sys.modules:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(JAX_COMPILATION_CACHE))
        os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(JAX_CACHE_MAX_BYTES))
        flags = os.environ.get("XLA_FLAGS", "")
        if deterministic and "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {XLA_DETERMINISTIC}".strip()


def import_keras(backend: str | None = None, chosen_by: str = "KERAS_BACKEND") -> ModuleType:
    """Keras, on `backend` (None: the one already imported or chosen, else KERAS_BACKEND,
    else TensorFlow), with TensorFlow's start-up notes hidden; errors as `choose_backend`."""
    imported = sys.modules.get("keras")
    if imported is not None and backend is None:
        return imported
    choose_backend(backend or os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND), chosen_by)
    # TensorFlow's start-up notes (oneDNN, no CUDA driver) ignore TF_CPP_MIN_LOG_LEVEL;
    # they are hidden unless the user asks for them with TF_CPP_MIN_LOG_LEVEL=0.
    if not _NATIVE_LOGS_WANTED:  # nor what it logs while it runs (its notes and spurious
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # errors); Python's exceptions still show
    with native_stderr_silenced():
        import keras

        keras.ops.zeros(1)  # the first op probes the devices, which prints more notes
    return keras


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code (TensorFlow's start-up and graph notes) writes to stderr to
    /dev/null, unless the user set TF_CPP_MIN_LOG_LEVEL=0 to see it. Python's own
    errors still show."""
    if _NATIVE_LOGS_WANTED:
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
