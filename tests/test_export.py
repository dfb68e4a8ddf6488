"""The export stage: the SavedModel (TF Serving's layout and signature) and the ONNX
model, each loaded with its own runtime, give the Keras model's answers on the whole
test set; without a model, the stage is one line."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_pipeline.backend import import_keras
from mnist_pipeline.export import in_batches

from .helpers import copy_project, run_script

# The largest difference between an exported format's probabilities and the Keras
# model's allowed here (measured on the default model: 0 for the SavedModel, 1.1e-6 for ONNX).
MAX_DIFFERENCE = 1e-5


@pytest.fixture(scope="module")
def keras_answers(trained_project) -> tuple[np.ndarray, np.ndarray]:
    """(the whole test set, the .keras model's probabilities for it)."""
    keras = import_keras()
    images = np.load(trained_project / "data/processed/test_images.npy")
    model = keras.saving.load_model(trained_project / "models/model.keras")
    return images, in_batches(lambda batch: model.predict(batch, verbose=0), images)


def assert_same_answers(found: np.ndarray, expected: np.ndarray) -> None:
    assert found.shape == expected.shape == (10_000, 10)
    assert (found.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.abs(found - expected).max() <= MAX_DIFFERENCE


@pytest.mark.slow
def test_the_saved_model_serves_raw_uint8_images_as_the_keras_model(trained_project, keras_answers):
    import tensorflow as tf

    images, expected = keras_answers
    assert (
        trained_project / "models/saved_model/1/saved_model.pb"
    ).is_file()  # TF Serving's layout
    serving = tf.saved_model.load(str(trained_project / "models/saved_model/1")).signatures[
        "serving_default"
    ]
    (spec,) = serving.structured_input_signature[1].values()
    assert (spec.name, spec.dtype, spec.shape.as_list()) == ("images", tf.uint8, [None, 28, 28, 1])
    found = in_batches(
        lambda batch: serving(images=tf.constant(batch))["probabilities"].numpy(), images
    )
    assert_same_answers(found, expected)


@pytest.mark.slow
def test_the_onnx_model_runs_in_onnxruntime_as_the_keras_model(trained_project, keras_answers):
    import onnxruntime

    images, expected = keras_answers
    session = onnxruntime.InferenceSession(str(trained_project / "models/model.onnx"))
    (given,) = session.get_inputs()
    assert (given.name, given.type, given.shape[1:]) == ("images", "tensor(uint8)", [28, 28, 1])
    found = in_batches(lambda batch: session.run(["probabilities"], {"images": batch})[0], images)
    assert_same_answers(found, expected)


def test_export_without_a_model_is_one_line_and_writes_nothing(tmp_path):
    project = copy_project(tmp_path / "project")
    result = run_script(project, "export")
    assert result.returncode == 1
    assert (
        result.stderr
        == "export: error: models/model.keras: missing; run the train stage (dvc repro)\n"
    )
    assert (
        not (project / "models/saved_model").exists()
        and not (project / "models/model.onnx").exists()
    )
