"""The serving formats of the trained model, and the contract they share.

Both take raw 0-255 pixels, uint8 shaped (N, 28, 28, 1), as the input named `images`,
and return the ten probabilities, float32 (N, 10), as the output named `probabilities`:

- a TensorFlow SavedModel whose `serving_default` signature is that function (what
  TF Serving, TFX and Vertex AI load), in TF Serving's layout: a folder per version;
- an ONNX model (opset ONNX_OPSET) converted from the same function by tf2onnx.

Both are made from the model in float32 (`float32_model`): a mixed-precision model is
rebuilt in float32 with the same weights, as serving runtimes and CPUs compute in
float32 and tf2onnx cannot convert the mixed graph.

TensorFlow and tf2onnx are imported by the functions that need them, so the server's
HTTP side can read the contract without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_pipeline.arrays import IMAGE_SHAPE
from mnist_pipeline.backend import import_keras, native_stderr_silenced
from mnist_pipeline.stage import StageError

if TYPE_CHECKING:
    import keras

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
SIGNATURE_NAME = "serving_default"  # TF Serving's default signature
MODEL_VERSION = 1  # the SavedModel's version folder: git and DVC version the model
ONNX_OPSET = 17
# The largest difference allowed between an exported format's probabilities and the Keras
# model's (measured: 0 for the SavedModel, about 1e-6 for ONNX on the test set).
TOLERANCE = 1e-5
CHECK_BATCH_SIZE = 1000


def float32_model(model: keras.Model) -> keras.Model:
    """`model` computing in float32: `model` itself where every layer already does, else
    its layers rebuilt with the float32 dtype policy, holding its weights (mixed precision
    keeps its variables in float32, so they are the same weights)."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    keras = import_keras("tensorflow")

    def in_float32(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    rebuilt = keras.models.clone_model(model, clone_function=in_float32)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def serving_function(model: keras.Model) -> Any:
    """The model as a tf.function from uint8 `images` to {'probabilities': ...}."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.uint8, INPUT_NAME)])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(images, training=False)}

    return serve


def write_saved_model(model: keras.Model, folder: Path) -> None:
    """Write `model` as a SavedModel into `folder`, its one signature SIGNATURE_NAME."""
    keras = import_keras("tensorflow")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE_NAME, serving_function(model))
    archive.write_out(str(folder), verbose=False)


def write_onnx(model: keras.Model, path: Path) -> None:
    """Write `model` as an ONNX model at `path`."""
    import tf2onnx

    function = serving_function(model)
    with native_stderr_silenced():  # TensorFlow's graph optimiser notes, one per pass
        tf2onnx.convert.from_function(
            function,
            input_signature=function.input_signature,
            opset=ONNX_OPSET,
            output_path=str(path),
        )


def saved_model_predictor(folder: Path) -> Any:
    """The SavedModel in `folder`'s serving function: uint8 images -> probabilities."""
    import tensorflow as tf

    try:
        signature = tf.saved_model.load(str(folder)).signatures[SIGNATURE_NAME]
    except (OSError, ValueError, KeyError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StageError(f"{folder}: not a readable SavedModel ({first_line[:200]})") from None

    def predict(images: np.ndarray) -> np.ndarray:
        return signature(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()

    return predict


def onnx_predictor(path: Path, threads: int = 0) -> Any:
    """The ONNX model at `path`, run by onnxruntime on `threads` cores (0: all of them):
    uint8 images -> probabilities."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(images: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]

    return predict


def in_batches(predict: Any, images: np.ndarray) -> np.ndarray:
    """`predict` over `images`, CHECK_BATCH_SIZE at a time."""
    return np.concatenate(
        [predict(images[i : i + CHECK_BATCH_SIZE]) for i in range(0, len(images), CHECK_BATCH_SIZE)]
    )


def digits_differ(expected: np.ndarray, found: np.ndarray) -> int:
    """On how many images the digits of `found` probabilities are not `expected`'s."""
    return int((expected.argmax(axis=1) != found.argmax(axis=1)).sum())


def disagreement(expected: np.ndarray, found: np.ndarray) -> str | None:
    """Why `found` probabilities are not `expected`'s (another digit, or further apart
    than TOLERANCE), or None where they agree."""
    differ = digits_differ(expected, found)
    largest = float(np.abs(expected - found).max()) if len(found) else 0.0
    if differ:
        return f"a different digit for {differ} of {len(found)} images"
    if largest > TOLERANCE:
        return f"probabilities up to {largest:.2g} apart (allowed: {TOLERANCE:g})"
    return None
