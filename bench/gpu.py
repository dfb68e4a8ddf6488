"""GPU figures: the train stage's own training (`training.fit`, through bench/measure.py's
`train_as_the_stage_does`) timed on an accelerator, every figure of docs/gpu.md in one
run of a few minutes.

    python bench/gpu.py pack DATA.npz           # here: the preprocess stage's splits, one file
    python bench/gpu.py all DATA.npz OUT.json   # there: every group below, each in its own process
    python bench/gpu.py group NAME DATA.npz     # one group, in this process (JSON lines)

For machines without TensorFlow or DVC (a lent GPU machine has JAX; bench/gpu_device.sh
installs the rest from carried wheels). Each group runs in a process of its own, with
JAX's compilation cache in a folder of the run (so "cold" means an empty one, "warm" a
second process reading it), under a time limit; its JSON lines go into OUT.json as they
come. A record is one training run: each epoch's seconds (the first, which compiles,
apart), the validation and test accuracy after each epoch, and the training seconds
until the test accuracy first reached 0.990 (checked after each epoch).

A run is a preset's name (`default` for params.yaml alone), an optional `:SEED`, optional
`+section.key=value` overrides (the value in YAML), and an optional `@LOOP`
(training.fit's loop; default: the backend's), for example `accurate:1+train.epochs=2@keras_fit`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from ruamel.yaml import YAML

from mnist_pipeline.params import SECTIONS, Params, validate_params
from mnist_pipeline.paths import PARAMS_FILE
from mnist_pipeline.presets import applied

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.990
SPLITS = ("train", "val", "test")
NO_AUGMENT = "+model.augment={rotation: 0.0, zoom: 0.0, shift: 0.0}"

# Each group: (its runs, the params' train.deterministic, its time limit in seconds), run
# in this order; all share one compilation cache, empty when "cold" starts.
GROUPS: dict[str, tuple[list[str], bool, int]] = {
    "cold": (  # an empty compilation cache: the first epochs compile
        [
            "fast",
            *(f"default:{seed}" for seed in (42, 43, 44, 45, 46)),  # the JAX band
            "default+train.precision=mixed_bfloat16",
            "default+train.epochs=3@keras_fit",  # the per-step path, side by side
            "default+train.precision=mixed_bfloat16+train.epochs=3@keras_fit",
        ],
        True,
        120,
    ),
    "warm": (["fast", "default:42"], True, 45),  # the same programs, cached: a rerun
    "nondeterministic": (["default:42"], False, 45),  # what determinism costs
    "accurate": (["accurate"], True, 120),
    "accurate-parts": (  # where the accurate preset's time goes, 2 epochs each
        [
            "accurate+train.epochs=2@keras_fit",
            f"accurate+train.epochs=2{NO_AUGMENT}@keras_fit",
            "accurate+train.epochs=2+model.batch_norm=false@keras_fit",
            "accurate+train.epochs=2+train.precision=float32@keras_fit",
            f"accurate+train.epochs=2{NO_AUGMENT}",
        ],
        True,
        120,
    ),
}


def run_params(spec: str) -> tuple[Params, str | None]:
    """The validated params of one run spec (see the module's docstring), and its loop."""
    yaml = YAML(typ="safe")
    spec, _, loop = spec.partition("@")
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
    params["train"]["backend"] = "jax"
    return validate_params(params, SECTIONS, spec), loop or None


def fit_once(spec: str, data: dict[str, np.ndarray]) -> dict:
    """Train one run spec as the train stage does; its record (see the docstring)."""
    from bench.measure import train_as_the_stage_does

    params, loop = run_params(spec)
    record: dict = {"run": spec, "val_accuracy": [], "test_accuracy": []}

    def after_epoch(model, logs: dict) -> None:
        record["val_accuracy"].append(float(logs["val_accuracy"]))
        probabilities = model.predict(data["test_images"], batch_size=2000, verbose=0)
        accuracy = float(np.mean(probabilities.argmax(axis=1) == data["test_labels"]))
        record["test_accuracy"].append(accuracy)

    model, times = train_as_the_stage_does(
        params,
        (data["train_images"], data["train_labels"]),
        (data["val_images"], data["val_labels"]),
        after_epoch=after_epoch,
        loop=loop,
    )
    epochs = record["epoch_s"] = [wall for wall, _ in times]
    record["first_epoch_s"] = epochs[0]
    record["steady_epoch_s"] = float(np.median(epochs[1:])) if len(epochs) > 1 else None
    reached = next((i for i, a in enumerate(record["test_accuracy"]) if a >= TARGET), None)
    if reached is not None:  # the first epoch counted as a steady one: its compile apart
        steady = record["steady_epoch_s"] or epochs[0]
        record["train_s_to_target_excluding_compile"] = steady + sum(epochs[1 : reached + 1])
        record["epochs_to_target"] = reached + 1
    record["final_test_accuracy"] = record["test_accuracy"][-1]
    weights = b"".join(np.asarray(w).tobytes() for w in model.get_weights())
    record["weights_crc32"] = f"{zlib.crc32(weights):08x}"  # reruns compared
    return record


def group_runs(name: str) -> list[str]:
    """The run specs of one group, each with the group's train.deterministic."""
    runs, deterministic, _ = GROUPS[name]
    setting = f"+train.deterministic={str(deterministic).lower()}"
    return [run + setting + at + loop for run, at, loop in (s.partition("@") for s in runs)]


def run_group(name: str, data_file: Path) -> None:
    """One group's runs in this process (its environment set by `run_all`)."""
    runs, deterministic = group_runs(name), GROUPS[name][1]
    with np.load(data_file) as archive:
        data = {key: archive[key] for key in archive.files}
    from mnist_pipeline.backend import choose_backend, import_keras

    choose_backend("jax", deterministic=deterministic)  # as the train stage does
    keras = import_keras()
    devices = keras.distribution.list_devices()
    print(json.dumps({"group": name, "devices": devices}), flush=True)
    for spec in runs:
        print(json.dumps({"group": name, **fit_once(spec, data)}), flush=True)


def run_all(data_file: Path, out: Path, only: list[str]) -> None:
    """Every group (or those in `only`), each in its own process under its time limit;
    each JSON line appended to `out` as it comes, the rest of the output passed on."""
    cache = out.parent / "jax-cache"
    if "cold" in (only or GROUPS):
        shutil.rmtree(cache, ignore_errors=True)
    for name in only or GROUPS:
        limit = GROUPS[name][2]
        env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache))
        command = [sys.executable, __file__, "group", name, str(data_file)]
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        timer = threading.Timer(limit, process.kill)  # a group past its limit is stopped
        timer.start()
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith("{"):
                with out.open("a") as results:
                    results.write(line)
        timer.cancel()
        ended = {"group": name, "returncode": process.wait(), "s": time.perf_counter() - started}
        with out.open("a") as results:
            results.write(json.dumps(ended) + "\n")


def pack(out: Path) -> None:
    """The preprocess stage's six split arrays (data/processed), in one .npz."""
    from mnist_pipeline.paths import split_files

    arrays = {}
    for split in SPLITS:
        images, labels = split_files(split)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = np.load(images), np.load(labels)
    np.savez(out, **arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="write data/processed's splits into one .npz")
    packing.add_argument("out", type=Path)
    everything = commands.add_parser("all", help="every group, each in its own process")
    everything.add_argument("data", type=Path)
    everything.add_argument("out", type=Path, help="the JSON lines file to append to")
    everything.add_argument("--only", nargs="+", choices=list(GROUPS), default=[])
    group = commands.add_parser("group", help="one group, in this process")
    group.add_argument("name", choices=list(GROUPS))
    group.add_argument("data", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.out)
    elif args.command == "all":
        for name in GROUPS:
            for spec in group_runs(name):
                run_params(spec)  # a bad spec fails before any training
        run_all(args.data, args.out, args.only)
    else:
        run_group(args.name, args.data)


if __name__ == "__main__":
    main()
