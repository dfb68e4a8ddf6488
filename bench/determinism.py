"""What TensorFlow op determinism costs: epoch time of the default model with
`train.deterministic` on and off, in separate processes, interleaved (ABBA) rounds.

Run from the project root after `dvc repro preprocess`:
    python bench/determinism.py [--rounds 2] [--epochs 2]
Prints the median wall and CPU seconds of the steady-state epochs for each setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def worker(deterministic: bool, epochs: int) -> None:
    from mnist_pipeline.arrays import load_split
    from mnist_pipeline.model import build_model, keras  # keras with its backend chosen
    from mnist_pipeline.params import load_params

    params = load_params("seed", "model", "train")
    keras.utils.set_random_seed(params.seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    x, y = load_split("train")
    model = build_model(params.model)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times: list[tuple[float, float]] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            times.append((time.perf_counter() - self.start[0], time.process_time() - self.start[1]))

    model.fit(
        x, y, batch_size=params.train.batch_size, epochs=epochs, callbacks=[Clock()], verbose=0
    )
    print(json.dumps(times[1:]))  # the first epoch includes tracing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--worker", choices=["on", "off"])
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker == "on", args.epochs)
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for setting in ("off", "on", "on", "off"):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", setting, "--epochs", str(args.epochs)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            results[setting] += json.loads(out.strip().splitlines()[-1])
    for setting, epochs in results.items():
        wall = statistics.median(w for w, _ in epochs)
        cpu = statistics.median(c for _, c in epochs)
        print(
            f"determinism {setting:3}: median epoch {wall:.1f} s wall, {cpu:.1f} s CPU ({len(epochs)} epochs)"
        )
    off, on = (statistics.median(c for _, c in results[k]) for k in ("off", "on"))
    print(f"op determinism costs {100 * (on / off - 1):+.1f}% CPU time per epoch")


if __name__ == "__main__":
    main()
