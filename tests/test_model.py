"""The CNN: the seed's architecture by default, the family the params describe (blocks,
strided convs, batch norm, augmentation, precision), raw pixels in, probabilities out;
and loading a damaged model file."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mnist_pipeline.model import (
    _cpu_has_native_bf16,
    build_model,
    keras,
    load_model,
    precision_note,
    save_model,
)
from mnist_pipeline.params import read_params_file, validate_params
from mnist_pipeline.paths import PARAMS_FILE
from mnist_pipeline.stage import StageError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# params.yaml's model section: the defaults, which give the seed tutorial's CNN.
DEFAULT_MODEL = validate_params(read_params_file(PROJECT_ROOT / PARAMS_FILE), ("model",)).model
# Chris Deotte's single CNN (presets/accurate.yaml's architecture).
DEOTTE_MODEL = DEFAULT_MODEL.model_copy(
    update={
        "conv_blocks": [[32, 32], [64, 64]],
        "downsample": "strided_conv",
        "block_dropout": [0.4, 0.4],
        "batch_norm": True,
        "dense_dropout": 0.4,
    }
)

# The seed tutorial's Conv32-Conv64-Pool-Dense128 as data, layer by layer (after our
# Rescaling, which scales the raw pixels as the tutorial scaled its arrays): the layer,
# its output shape, its weights (1,199,882 in all), its activation or dropout rate.
SEED_CNN = [
    ("Rescaling", (28, 28, 1), 0, None),
    ("Conv2D", (26, 26, 32), 3 * 3 * 1 * 32 + 32, "relu"),
    ("Conv2D", (24, 24, 64), 3 * 3 * 32 * 64 + 64, "relu"),
    ("MaxPooling2D", (12, 12, 64), 0, None),
    ("Dropout", (12, 12, 64), 0, 0.25),
    ("Flatten", (9216,), 0, None),
    ("Dense", (128,), 9216 * 128 + 128, "relu"),
    ("Dropout", (128,), 0, 0.5),
    ("Dense", (10,), 128 * 10 + 10, "softmax"),
]


def described(layer: keras.layers.Layer) -> tuple:
    """A layer as SEED_CNN states one."""
    activation = getattr(layer, "activation", None)
    setting = activation.__name__ if activation else getattr(layer, "rate", None)
    return type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params(), setting


def test_default_model_is_the_seed_cnn_with_1199882_parameters():
    model = build_model(DEFAULT_MODEL)
    assert [described(layer) for layer in model.layers] == SEED_CNN
    assert sum(weights for _, _, weights, _ in SEED_CNN) == model.count_params() == 1_199_882
    assert model.input_shape == (None, 28, 28, 1)
    assert model.layers[0].input.dtype == "uint8"  # raw pixels in


def test_model_params_change_the_architecture():
    params = DEFAULT_MODEL.model_copy(
        update={"conv_blocks": [[16, 32, 32]], "kernel_size": 5, "dense_units": 64}
    )
    model = build_model(params)
    conv_shapes = [
        layer.output.shape[1:] for layer in model.layers if type(layer).__name__ == "Conv2D"
    ]
    assert conv_shapes == [(24, 24, 16), (20, 20, 32), (16, 16, 32)]
    assert model.layers[-3].units == 64


def test_model_takes_raw_uint8_pixels_and_returns_probabilities():
    model = build_model(DEFAULT_MODEL)
    images = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28, 1), dtype=np.uint8)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # The 1/255 scaling is inside the model: feeding pre-scaled floats gives another answer.
    scaled = model.predict(images.astype("float32") / 255, verbose=0)
    assert not np.allclose(probabilities, scaled)


def test_saved_model_round_trips_and_a_truncated_one_is_a_one_line_error(tmp_path):
    model = build_model(DEFAULT_MODEL)
    path = tmp_path / "model.keras"
    save_model(model, path)
    images = np.zeros((2, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(
        load_model(path).predict(images, verbose=0), model.predict(images, verbose=0)
    )

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StageError) as error:
        load_model(path)
    assert str(error.value).startswith(f"{path}: not a readable Keras model")
    assert "\n" not in str(error.value)


# Builds the seeded default model in each precision and saves it (arguments: path,
# precision, path, precision...), in a process of its own; Keras's session cleared before
# each, so each model is named as the first of a fresh process.
SAVE_IN_A_NEW_PROCESS = """
import sys
from pathlib import Path
from mnist_pipeline.model import build_model, keras, save_model
from mnist_pipeline.params import read_params_file, validate_params
params = validate_params(read_params_file(Path("params.yaml")), ("model",)).model
for path, precision in zip(sys.argv[1::2], sys.argv[2::2]):
    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    save_model(build_model(params, precision=precision), Path(path))
"""
PRECISIONS = ("float32", "mixed_bfloat16")


def test_the_same_model_saved_by_two_processes_is_the_same_bytes(tmp_path):
    """Each of the two processes saves the model in every precision of PRECISIONS."""
    saved = {p: (tmp_path / f"first-{p}.keras", tmp_path / f"second-{p}.keras") for p in PRECISIONS}
    for run in (0, 1):
        arguments = [str(part) for p in PRECISIONS for part in (saved[p][run], p)]
        subprocess.run(
            [sys.executable, "-c", SAVE_IN_A_NEW_PROCESS, *arguments],
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
        )
    for precision, (first, second) in saved.items():
        assert first.read_bytes() == second.read_bytes(), precision
        with zipfile.ZipFile(first) as archive:
            assert "date_saved" not in json.loads(archive.read("metadata.json")), precision
        assert load_model(first).count_params() == 1_199_882, precision


def test_missing_model_says_to_run_train(tmp_path):
    with pytest.raises(StageError, match=r"model\.keras: missing; run the train stage"):
        load_model(tmp_path / "model.keras")


def test_a_block_each_pools_its_own_maps():
    params = DEFAULT_MODEL.model_copy(
        update={"conv_blocks": [[32], [64]], "block_dropout": [0.1, 0.2]}
    )
    model = build_model(params)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:7] == [
        "Rescaling", "Conv2D", "MaxPooling2D", "Dropout", "Conv2D", "MaxPooling2D", "Dropout",
    ]  # fmt: skip
    assert [layer.output.shape[1:] for layer in model.layers[1:6]] == [
        (26, 26, 32),
        (13, 13, 32),
        (13, 13, 32),
        (11, 11, 64),
        (5, 5, 64),
    ]
    assert [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"] == [
        0.1,
        0.2,
        0.5,
    ]
    assert model.count_params() == 320 + 18_496 + (5 * 5 * 64 * 128 + 128) + 1_290


def test_strided_convs_and_batch_norm_build_deottes_cnn():
    model = build_model(DEOTTE_MODEL)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.output.shape[1:] for c in convs] == [
        (26, 26, 32), (24, 24, 32), (12, 12, 32), (10, 10, 64), (8, 8, 64), (4, 4, 64),
    ]  # fmt: skip
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3), (5, 5), (3, 3), (3, 3), (5, 5)]
    assert [c.strides for c in convs].count((2, 2)) == 2
    assert sum(type(layer).__name__ == "BatchNormalization" for layer in model.layers) == 7
    assert model.count_params() == 327_242


def test_augmentation_changes_training_images_only_and_is_seeded():
    augment = DEFAULT_MODEL.augment.model_copy(update={"rotation": 10.0, "zoom": 0.1, "shift": 0.1})
    params = DEFAULT_MODEL.model_copy(update={"augment": augment})
    images = np.random.default_rng(0).integers(0, 256, size=(8, 28, 28, 1), dtype=np.uint8)

    def augmented(seed: int) -> np.ndarray:
        keras.utils.set_random_seed(0)  # the same weights: only the augmentation's seed varies
        model = build_model(params, seed)
        augment = keras.Sequential(model.layers[:4])  # Rescaling, then the three layers
        return keras.ops.convert_to_numpy(augment(images, training=True))

    kinds = [type(layer).__name__ for layer in build_model(params).layers[1:4]]
    assert kinds == ["RandomRotation", "RandomZoom", "RandomTranslation"]
    np.testing.assert_array_equal(augmented(1), augmented(1))
    assert not np.array_equal(augmented(1), augmented(2))
    assert not np.allclose(augmented(1), images / 255)
    model = build_model(params)
    plain = build_model(DEFAULT_MODEL)
    weights = zip(model.weights, model.get_weights(), strict=True)
    plain.set_weights([value for v, value in weights if "seed_generator" not in v.path])
    np.testing.assert_allclose(
        model.predict(images, verbose=0), plain.predict(images, verbose=0), rtol=1e-6
    )


def _digits(count: int = 32) -> np.ndarray:
    """`count` digit-like images in [0, 1]: rings and bars of 2-3 pixel strokes."""
    rows, cols = np.mgrid[:28, :28]
    images = np.zeros((count, 28, 28, 1), dtype=np.float32)
    for number in range(count):
        radius = 5 + number % 5
        ring = np.abs(np.hypot(rows - 14, cols - 14) - radius) < 1.3
        bar = (np.abs(cols - 8 - number % 12) < 1.5) & (rows > 4) & (rows < 24)
        images[number, ..., 0] = np.where(ring if number % 2 else bar, 1.0, 0.0)
    return images


# Each pen-and-scanner layer at its strongest, and what it must do to a batch of digits.
PENS_AND_SCANNERS = {
    "elastic": (1.5, "RandomElastic"),  # Simard's alpha 34, sigma 4 move pixels ~1.4 RMS
    "stroke": (1.0, "RandomStrokeWidth"),
    "blur": (1.5, "RandomBlur"),
    "noise": (0.3, "RandomNoise"),
    "erasing": (1.0, "RandomErasing"),
}


@pytest.mark.parametrize("name", list(PENS_AND_SCANNERS))
def test_pen_and_scanner_augmentations_are_seeded_and_change_training_images_only(name):
    strength, kind = PENS_AND_SCANNERS[name]
    augment = DEFAULT_MODEL.augment.model_copy(update={name: strength})
    params = DEFAULT_MODEL.model_copy(update={"augment": augment})
    digits = _digits()

    def layer(seed: int) -> keras.layers.Layer:
        (found,) = [one for one in build_model(params, seed).layers if type(one).__name__ == kind]
        return found

    def augmented(seed: int) -> np.ndarray:
        return keras.ops.convert_to_numpy(layer(seed)(digits, training=True))

    changed = augmented(1)
    np.testing.assert_array_equal(changed, augmented(1))
    assert not np.array_equal(changed, augmented(2))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(1)(digits)), digits)
    assert changed.dtype == np.float32 and changed.min() >= 0 and changed.max() <= 1
    ink, changed_ink = digits.sum(axis=(1, 2, 3)), changed.sum(axis=(1, 2, 3))
    if name == "elastic":  # the strokes move and bend, the digit stays in place
        assert np.mean(np.abs(changed - digits)) > 0.02
        np.testing.assert_allclose(changed_ink, ink, rtol=0.5)
        rows = np.arange(28)[None, :, None, None]
        centre, moved = (
            np.sum(x * rows, axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3)) for x in (digits, changed)
        )
        assert np.max(np.abs(moved - centre)) < 3
    elif name == "stroke":  # some digits thinner, some bolder
        assert (changed_ink < 0.8 * ink).any() and (changed_ink > 1.2 * ink).any()
    elif name == "blur":  # edges soften: grey levels appear, the brightest dims
        assert np.mean((changed > 0.05) & (changed < 0.95)) > 2 * np.mean(
            (digits > 0) & (digits < 1)
        )
        assert (changed.max(axis=(1, 2, 3)) < 0.99).any()
    elif name == "noise":  # the black background gets speckled
        assert np.mean(changed[digits == 0] > 0.05) > 0.1
    else:  # a patch of each digit erased, nothing added
        assert (changed <= digits).all() and (changed_ink < ink).mean() > 0.5


def test_mixed_bfloat16_computes_in_bfloat16_with_a_float32_softmax():
    model = build_model(DEFAULT_MODEL, precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left alone
    assert model.layers[1].compute_dtype == "bfloat16"
    assert model.layers[1].variable_dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32"
    images = np.zeros((2, 28, 28, 1), dtype=np.uint8)
    assert model.predict(images, verbose=0).dtype == np.float32


def test_a_cpu_without_native_bfloat16_is_named(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not _cpu_has_native_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert _cpu_has_native_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16\n")  # Arm
    assert _cpu_has_native_bf16(cpuinfo)
    assert precision_note("float32") is None
    note = precision_note("mixed_float16")  # this machine has no GPU
    assert note is not None and note.startswith(
        "train.precision = 'mixed_float16' is meant for GPUs"
    )


def test_each_pen_and_scanner_change_applies_to_its_chance_of_the_images():
    augment = DEFAULT_MODEL.augment.model_copy(update={"blur": 1.5, "chance": 0.5})
    model = build_model(DEFAULT_MODEL.model_copy(update={"augment": augment}), 1)
    (blur,) = [layer for layer in model.layers if type(layer).__name__ == "RandomBlur"]
    digits = np.repeat(_digits(8), 32, axis=0)
    changed = keras.ops.convert_to_numpy(blur(digits, training=True))
    untouched = np.all(changed == digits, axis=(1, 2, 3))
    assert 0.35 < untouched.mean() < 0.65
