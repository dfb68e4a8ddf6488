"""The CNN: the seed's architecture by default, raw pixels in, probabilities out; and
loading a damaged model file."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_pipeline.model import build_model, load_model
from mnist_pipeline.params import ModelParams
from mnist_pipeline.stage import StageError

SEED_MODEL = ModelParams(
    conv_filters=[32, 64],
    kernel_size=3,
    pool_size=2,
    pooling="after_last",
    conv_dropout=0.25,
    dense_units=128,
    dense_dropout=0.5,
)


def test_default_model_is_the_seed_cnn_with_1199882_parameters():
    model = build_model(SEED_MODEL)
    assert model.count_params() == 1_199_882
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Rescaling", "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense",
    ]  # fmt: skip
    assert [layer.output.shape[1:] for layer in model.layers[1:4]] == [
        (26, 26, 32),
        (24, 24, 64),
        (12, 12, 64),
    ]


def test_model_params_change_the_architecture():
    params = SEED_MODEL.model_copy(
        update={"conv_filters": [16, 32, 32], "kernel_size": 5, "dense_units": 64}
    )
    model = build_model(params)
    conv_shapes = [
        layer.output.shape[1:] for layer in model.layers if type(layer).__name__ == "Conv2D"
    ]
    assert conv_shapes == [(24, 24, 16), (20, 20, 32), (16, 16, 32)]
    assert model.layers[-3].units == 64


def test_model_takes_raw_uint8_pixels_and_returns_probabilities():
    model = build_model(SEED_MODEL)
    images = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28, 1), dtype=np.uint8)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # The 1/255 scaling is inside the model: feeding pre-scaled floats gives another answer.
    scaled = model.predict(images.astype("float32") / 255, verbose=0)
    assert not np.allclose(probabilities, scaled)


def test_saved_model_round_trips_and_a_truncated_one_is_a_one_line_error(tmp_path):
    model = build_model(SEED_MODEL)
    path = tmp_path / "model.keras"
    model.save(path)
    images = np.zeros((2, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(
        load_model(path).predict(images, verbose=0), model.predict(images, verbose=0)
    )

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StageError) as error:
        load_model(path)
    assert str(error.value).startswith(f"{path}: not a readable Keras model")
    assert "\n" not in str(error.value)


def test_missing_model_says_to_run_train(tmp_path):
    with pytest.raises(StageError, match=r"model\.keras: missing; run the train stage"):
        load_model(tmp_path / "model.keras")


def test_pooling_after_each_conv_shrinks_the_maps_as_it_goes():
    model = build_model(SEED_MODEL.model_copy(update={"pooling": "after_each"}))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:5] == ["Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D"]
    assert [layer.output.shape[1:] for layer in model.layers[1:5]] == [
        (26, 26, 32),
        (13, 13, 32),
        (11, 11, 64),
        (5, 5, 64),
    ]
    assert model.count_params() == 320 + 18_496 + (5 * 5 * 64 * 128 + 128) + 1_290
