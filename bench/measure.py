"""What the bench scripts share: the train stage's training called and timed epoch by
epoch, bench/epoch_worker.py run in its own processes and its runs summarised, and the
figures a pipeline run leaves (its metrics files and its log of epoch seconds) read back.

Importing this module imports neither Keras nor DVC: bench/gpu.py uses it on machines
that have only JAX.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_pipeline.paths import EPOCH_SECONDS_FILE, METRICS_FILE, TRAINING_METRICS_FILE

if TYPE_CHECKING:
    import keras
    import numpy as np

    from mnist_pipeline.params import Params

WORKER = Path(__file__).with_name("epoch_worker.py")

EpochTimes = list[tuple[float, float]]  # each epoch's (wall, CPU) seconds
AfterEpoch = Callable[["keras.Model", dict[str, Any]], None]


# ---------------------------------------------------------------- training, timed


def epoch_timer(
    times: EpochTimes, after_epoch: AfterEpoch | None = None
) -> keras.callbacks.Callback:
    """A callback appending each epoch's (wall, CPU) seconds to `times`, then calling
    `after_epoch(model, logs)` (outside the epoch's time), if given."""
    from mnist_pipeline.backend import import_keras

    keras = import_keras()  # the one the process already runs

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            wall, cpu = self.started
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
            if after_epoch is not None:
                after_epoch(self.model, logs or {})

    return EpochTimer()


def train_as_the_stage_does(
    params: Params,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None = None,
    after_epoch: AfterEpoch | None = None,
    loop: str | None = None,
) -> tuple[keras.Model, EpochTimes]:
    """Train a fresh model with the train stage's own code: `seed_everything`,
    `build_or_resume` (no checkpoint store), then `training.fit` over the seeded batches,
    validated on `val` if given, with every callback the stage uses, the epoch timer
    added and the DVCLive log left out. `loop`: training.fit's (None: the backend's
    default; on JAX on a GPU, an epoch one compiled call).

    Returns the model and each epoch's (wall, CPU) seconds; see `epoch_timer` for
    `after_epoch`. Keras must already be imported on the chosen backend.
    """
    from mnist_pipeline import training

    training.seed_everything(params.seed, params.train.deterministic)
    model, _ = training.build_or_resume(params, len(train[1]), None)
    times: EpochTimes = []
    training.fit(
        model,
        params.train,
        params.seed,
        train,
        val,
        training_log=False,
        callbacks=[epoch_timer(times, after_epoch)],
        loop=loop,
    )
    return model, times


# ---------------------------------------------------------------- epoch_worker runs


def run_worker(config: dict, cwd: Path | None = None) -> dict:
    """One bench/epoch_worker.py run of `config`, in its own process, in `cwd` (a project
    root holding data/processed; None: this process's): the JSON it prints."""
    done = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(config)], cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(
            f"bench: epoch_worker {json.dumps(config)} failed:\n{done.stdout}\n{done.stderr}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def interleaved_runs(configs: dict[str, dict], rounds: int, cwd: Path | None = None) -> dict:
    """{name: its epoch_worker runs}: each of `configs` run once a round, in their order
    in rounds 1, 3, ... and in reverse in rounds 2, 4, ... (so that neither a place in the
    round nor a drift of the machine's speed favours one)."""
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for number in range(rounds):
        order = list(configs) if number % 2 == 0 else list(reversed(configs))
        for name in order:
            runs[name].append(run_worker(configs[name], cwd))
            print(f"round {number + 1}: {name} done", file=sys.stderr, flush=True)
    return runs


def medians(runs: list[dict]) -> dict[str, float]:
    """The medians of one config's epoch_worker runs: a steady-state epoch's wall and CPU
    seconds (over every run's epochs after its first), the test accuracy, and the
    training and test-set inference throughput (images a second)."""
    wall = statistics.median(epoch[0] for run in runs for epoch in run["epochs"])
    return {
        "wall_s": wall,
        "cpu_s": statistics.median(epoch[1] for run in runs for epoch in run["epochs"]),
        "test_accuracy": statistics.median(run["test_accuracy"] for run in runs),
        "train_images_per_s": runs[0]["train_images"] / wall,
        "predict_images_per_s": statistics.median(
            run["test_images"] / run["predict_s"] for run in runs
        ),
    }


# ---------------------------------------------------------------- what a run leaves


def epoch_seconds(root: Path) -> list[float]:
    """Each epoch's seconds, in order, from the DVCLive log of them that the last training
    run in the project at `root` left (EPOCH_SECONDS_FILE)."""
    with open(root / EPOCH_SECONDS_FILE, newline="") as log:
        rows = sorted(csv.DictReader(log, delimiter="\t"), key=lambda row: int(row["step"]))
    return [float(row["epoch_seconds"]) for row in rows]


def run_metrics(root: Path) -> dict[str, dict[str, float]]:
    """What the last run in the project at `root` measured, from its metrics files: "test"
    (reports/metrics.json's accuracy and loss) and the last epoch's "train" and "val"
    (dvclive/metrics.json's loss and accuracy)."""
    test = json.loads((root / METRICS_FILE).read_text())["test"]
    last_epoch = json.loads((root / TRAINING_METRICS_FILE).read_text())
    return {
        "test": {"accuracy": test["accuracy"], "loss": test["loss"]},
        "train": last_epoch["train"],
        "val": last_epoch["val"],
    }
