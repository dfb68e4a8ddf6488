"""GPU figures: the train stage's own model, compile and batch stream on an accelerator.

    python bench/gpu.py DATA.npz [--backend jax] [--runs NAME[:SEED][+KEY=VALUE...] ...]

For machines without TensorFlow or DVC (a lent GPU machine has JAX): it trains the models
of params.yaml and the presets as the train stage does, its own code called (bench/
measure.py's `train_as_the_stage_does`: `seed_everything`, `compiled_model`, one fit()
over `EpochBatches`; validation in batches of 2,000), on the same splits the preprocess
stage writes (DATA.npz holds them:
train_images, train_labels, val_images, val_labels, test_images, test_labels), and prints
one JSON line per run: each epoch's seconds (the first, which compiles, apart), the
validation accuracy after each epoch, the test accuracy at the end, and the training
seconds until the test accuracy first reached 0.990 (checked after each epoch).

A run is a preset's name (`default` for params.yaml alone), an optional `:SEED`, and
optional `+section.key=value` overrides (the value in YAML), for example
`accurate:1+train.epochs=20`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from ruamel.yaml import YAML

from mnist_pipeline.params import SECTIONS, Params, validate_params
from mnist_pipeline.paths import PARAMS_FILE
from mnist_pipeline.presets import applied

if TYPE_CHECKING:
    import keras

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.990


def run_params(spec: str) -> Params:
    """The validated params of one run spec (see the module's docstring)."""
    yaml = YAML(typ="safe")
    name, *overrides = spec.split("+")
    preset_name, _, seed = name.partition(":")
    params = yaml.load((ROOT / PARAMS_FILE).read_text())
    if preset_name != "default":
        path = ROOT / "presets" / f"{preset_name}.yaml"
        params = applied(params, yaml.load(path.read_text()), path)
    if seed:
        params["seed"] = int(seed)
    for override in overrides:
        key, _, value = override.partition("=")
        nested: dict = {}
        *parents, leaf = key.split(".")
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = yaml.load(value)
        params = applied(params, nested, Path(spec))
    return validate_params(params, SECTIONS, spec)


def fit_once(spec: str, data: dict[str, np.ndarray]) -> dict:
    from bench.measure import train_as_the_stage_does

    params = run_params(spec)
    record: dict = {"run": spec, "epoch_s": [], "val_accuracy": [], "test_accuracy": []}

    def after_epoch(model: keras.Model, logs: dict) -> None:
        record["val_accuracy"].append(float(logs["val_accuracy"]))
        probabilities = model.predict(data["test_images"], batch_size=2000, verbose=0)
        accuracy = float(np.mean(probabilities.argmax(axis=1) == data["test_labels"]))
        record["test_accuracy"].append(accuracy)

    _, times = train_as_the_stage_does(
        params,
        (data["train_images"], data["train_labels"]),
        (data["val_images"], data["val_labels"]),
        validation_batch_size=2000,  # as in the committed figures; the stage uses batch_size
        after_epoch=after_epoch,
    )
    record["epoch_s"] = [wall for wall, _ in times]
    epochs = record["epoch_s"]
    reached = next((i for i, a in enumerate(record["test_accuracy"]) if a >= TARGET), None)
    record["first_epoch_s"] = epochs[0]
    record["steady_epoch_s"] = float(np.median(epochs[1:])) if len(epochs) > 1 else None
    # Training time to the target, with the first epoch's compile time replaced by a
    # steady epoch's (the compile time is reported apart, as first_epoch_s).
    if reached is not None:
        steady = record["steady_epoch_s"] or epochs[0]
        record["train_s_to_target_excluding_compile"] = steady + sum(epochs[1 : reached + 1])
        record["epochs_to_target"] = reached + 1
    record["final_test_accuracy"] = record["test_accuracy"][-1]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help=".npz with the six split arrays")
    parser.add_argument("--runs", nargs="+", default=["default", "fast", "accurate"])
    parser.add_argument(
        "--backend", default="jax", help="Keras's backend (default: jax, what a lent GPU has)"
    )
    args = parser.parse_args()
    for spec in args.runs:
        run_params(spec)  # a bad spec fails before any training
    with np.load(args.data) as archive:
        data = {name: archive[name] for name in archive.files}
    from mnist_pipeline.backend import import_keras

    keras = import_keras(args.backend, chosen_by="--backend")
    devices = keras.distribution.list_devices()
    print(json.dumps({"backend": keras.backend.backend(), "devices": devices}), flush=True)
    for spec in args.runs:
        print(json.dumps(fit_once(spec, data)), flush=True)


if __name__ == "__main__":
    main()
