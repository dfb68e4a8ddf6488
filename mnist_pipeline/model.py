"""The CNN family (the seed's CNN by default, the presets' by params), the precision
it computes in, and saving and loading a trained model.

The model takes raw uint8 pixels (N, 28, 28, 1) and scales them by 1/255 itself,
exactly as the seed tutorial normalises, so predictions need no preprocessing.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_pipeline import augmentations, background
from mnist_pipeline.backend import import_keras
from mnist_pipeline.mnist import IMAGE_SIZE, NUM_CLASSES
from mnist_pipeline.stage import StageError, require_file

keras = import_keras()  # on the backend the stage chose
layers = keras.layers

if TYPE_CHECKING:
    from mnist_pipeline.params import AugmentParams, ModelParams

STRIDED_KERNEL = 5  # a strided_conv downsampling step: 5x5, stride 2, 'same' (Deotte's)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPU flags for bfloat16 arithmetic
#   (Arm's is bf16)


def build_model(params: ModelParams, seed: int = 0, precision: str = "float32") -> keras.Model:
    """The CNN that `params` describes; the defaults give the seed's Conv32-Conv64-Pool-
    Dense128, 1,199,882 weights. `seed` seeds the augmentation layers, if any.

    `precision` is the Keras dtype policy its layers compute in (float32, mixed_bfloat16,
    mixed_float16: train.precision); the softmax always computes in float32. Keras's
    global policy is the one it was before, once the model is built."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # one policy object, shared by the layers
    try:
        return _layers(params, seed)
    finally:
        keras.config.set_dtype_policy(before)


def _layers(params: ModelParams, seed: int) -> keras.Model:
    model = keras.Sequential(name="mnist_cnn")
    model.add(keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype="uint8"))
    model.add(layers.Rescaling(1 / 255))  # pixel / 255: (28, 28, 1) floats in [0, 1]
    for layer in augmentation(params.augment, seed):  # identity outside training
        model.add(layer)
    if params.background_window:  # a black background, as MNIST's (background.py)
        model.add(background.RemoveBackground(params.background_window))
    if params.stretch_contrast:  # from black to white, as MNIST's
        model.add(background.StretchContrast())

    def add(layer: keras.layers.Layer) -> None:
        """A conv or the hidden Dense (ReLU), then batch norm if the params ask for it."""
        model.add(layer)
        if params.batch_norm:
            model.add(layers.BatchNormalization())

    for filters, dropout in zip(params.conv_blocks, params.block_dropout, strict=True):
        for count in filters:  # each 'valid' 3x3 conv: 28 -> 26 -> 24
            add(layers.Conv2D(count, params.kernel_size, activation="relu"))
        if params.downsample == "max_pool":  # the seed: 24 -> 12: (12, 12, 64)
            model.add(layers.MaxPooling2D(params.pool_size))
        else:  # a learned downsampling: 24 -> 12
            add(
                layers.Conv2D(
                    filters[-1], STRIDED_KERNEL, strides=2, padding="same", activation="relu"
                )
            )
        model.add(layers.Dropout(dropout))
    model.add(layers.Flatten())  # 12 * 12 * 64 = 9216
    add(layers.Dense(params.dense_units, activation="relu"))
    model.add(layers.Dropout(params.dense_dropout))
    model.add(layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"))
    return model


def augmentation(params: AugmentParams, seed: int) -> list[keras.layers.Layer]:
    """Random rotation, zoom and shift of the scaled image, then what pens and scanners
    do (augmentations.py): elastic distortion, stroke width, blur, noise and erasing.
    Each is seeded (so a rerun sees the same images; the layers' seed state is a model
    variable, so a resumed run continues the same stream), each active only in training.
    A zero turns its layer off."""
    blank = {"fill_mode": "constant", "fill_value": 0.0}  # MNIST's black background
    chosen: list[keras.layers.Layer] = []
    seeds = [(seed + offset) % 2**32 for offset in range(8)]  # one stream per layer
    if params.rotation:
        chosen.append(layers.RandomRotation(params.rotation / 360, seed=seeds[0], **blank))
    if params.zoom:
        zoom = (-params.zoom, params.zoom)
        chosen.append(layers.RandomZoom(zoom, seed=seeds[1], **blank))
    if params.shift:
        shift = (-params.shift, params.shift)
        chosen.append(layers.RandomTranslation(shift, shift, seed=seeds[2], **blank))
    pens_and_scanners = (
        (augmentations.RandomElastic, params.elastic),
        (augmentations.RandomStrokeWidth, params.stroke),
        (augmentations.RandomBlur, params.blur),
        (augmentations.RandomNoise, params.noise),
        (augmentations.RandomErasing, params.erasing),
    )
    for (kind, strength), layer_seed in zip(pens_and_scanners, seeds[3:], strict=True):
        if strength:
            chance = 1.0 if kind is augmentations.RandomErasing else params.chance
            chosen.append(kind(strength, chance=chance, seed=layer_seed))
    return chosen


def precision_note(policy: str) -> str | None:
    """One line saying that this machine would emulate the policy's 16-bit arithmetic
    slowly (a CPU without native bfloat16, float16 on a CPU), or None."""
    if policy == "float32" or _has_accelerator():
        return None
    if policy == "mixed_float16":
        return (
            "train.precision = 'mixed_float16' is meant for GPUs; on this CPU float16 is "
            "emulated and slower than float32 (mixed_bfloat16 may not be)"
        )
    if not _cpu_has_native_bf16():
        return (
            "train.precision = 'mixed_bfloat16', but this CPU has no native bfloat16 "
            f"({' or '.join(NATIVE_BF16_FLAGS)}): it is emulated and likely slower than float32"
        )
    return None


def _has_accelerator() -> bool:
    if keras.backend.backend() == "torch":  # Keras has no device listing for torch
        import torch

        return torch.cuda.is_available()
    return any(not device.startswith("cpu") for device in keras.distribution.list_devices())


def _cpu_has_native_bf16(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU's flags (x86: `flags`, Arm: `Features`) name bfloat16 arithmetic."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as cpuinfo:
            lines = [line for line in cpuinfo if line.startswith(("flags", "Features"))]
    except OSError:  # not Linux: cannot tell, so no note
        return True
    flags = {flag for line in lines[:1] for flag in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in (*NATIVE_BF16_FLAGS, "bf16"))


# What a saved model's zip entries are dated: zip's earliest date, as Keras already
# dates its config (so the same model always gives the same bytes, and DVC's hash).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
METADATA_ENTRY = "metadata.json"  # Keras's version, and the save time
CONFIG_ENTRY = "config.json"  # the architecture; objects shared by layers carry an id


def save_model(model: keras.Model, path: Path) -> None:
    """Save `model` in Keras's format at `path`, byte for byte the same for the same
    model: Keras's save, with the save time (metadata.json's date_saved, the weights
    entry's date) left out, and the ids of shared objects (the dtype policy), which
    Keras takes from memory addresses, numbered in order instead."""
    model.save(path)
    with zipfile.ZipFile(path) as saved:
        entries = [(entry, saved.read(entry)) for entry in saved.infolist()]
    repacked = io.BytesIO()
    with zipfile.ZipFile(repacked, "w") as archive:
        for entry, data in entries:
            if entry.filename == METADATA_ENTRY:
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif entry.filename == CONFIG_ENTRY:
                data = json.dumps(_numbered_shared_objects(json.loads(data))).encode()
            dated = zipfile.ZipInfo(entry.filename, date_time=ZIP_DATE)
            dated.compress_type, dated.external_attr = entry.compress_type, entry.external_attr
            archive.writestr(dated, data)
    path.write_bytes(repacked.getvalue())


def _numbered_shared_objects(config: object, numbers: dict | None = None) -> object:
    """`config` with each distinct `shared_object_id` replaced by 1, 2, ... in the order
    they first appear (equal ids stay equal, so the objects are still shared on load)."""
    numbers = {} if numbers is None else numbers
    if isinstance(config, list):
        return [_numbered_shared_objects(item, numbers) for item in config]
    if not isinstance(config, dict):
        return config
    renumbered = {}
    for key, value in config.items():
        if key == "shared_object_id":
            renumbered[key] = numbers.setdefault(value, len(numbers) + 1)
        else:
            renumbered[key] = _numbered_shared_objects(value, numbers)
    return renumbered


def load_model(path: Path) -> keras.Model:
    """Load a model saved by the train stage; a missing or damaged file is a StageError."""
    require_file(path, made_by="train")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for a damaged zip or config
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise StageError(f"{path}: not a readable Keras model ({first_line[:200]})") from None
