"""Training on JAX with the data on the device and an epoch one compiled call (the GPU
path, compiled_epoch.py), run here on JAX's CPU backend: it trains the weights Keras's
own fit() does; a run logs each epoch live, schedules its learning rate, stops early,
and resumes byte-identical after a kill; it caches its compiled programs; and it trains
data-parallel on two (virtual) devices like on one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .helpers import (
    assert_same_weights,
    copy_project,
    in_background,
    project_env,
    read_until,
    run_script,
    set_params,
    trained_weights,
    training_log_files,
)

pytestmark = pytest.mark.slow

TINY_MODEL = {"conv_blocks": [[8]], "block_dropout": [0.25], "dense_units": 32}
# On the small subset the plateau schedule halves this run's rate after epochs 7, 9 and
# 13, and early stopping ends it after epoch 14 (the weights of epoch 12).
JAX_RUN = {
    "model": TINY_MODEL,
    "train": {
        "backend": "jax",
        "epochs": 16,
        "learning_rate": 0.03,
        "lr_schedule": "plateau",
        "lr_patience": 1,
        "early_stopping_patience": 2,
    },
}
RATES = [0.03] * 7 + [0.015] * 2 + [0.0075] * 4 + [0.00375]  # each epoch's, as logged
TWO_CPU_DEVICES = "--xla_force_host_platform_device_count=2"

# Trains one epoch three ways in one process on JAX, from the same seed: Keras's fit()
# (a step a call, batches from the host), the data on the device a batch a call, and an
# epoch in one compiled call; prints how far each one's weights are from fit()'s.
THREE_LOOPS = """
import json
from mnist_pipeline.backend import choose_backend
choose_backend("jax")
import numpy as np
from mnist_pipeline import training
from mnist_pipeline.arrays import load_split
from mnist_pipeline.params import load_params
params = load_params("seed", "model", "train")
train, val = load_split("train"), load_split("val")
found = {}
for loop in ("keras_fit", "jax_batch", "jax_epoch"):
    training.seed_everything(params.seed, params.train.deterministic)
    model, _ = training.build_or_resume(params, len(train[1]), None)
    logs = []
    record = training.keras.callbacks.LambdaCallback(on_epoch_end=lambda _, log: logs.append(log))
    training.fit(
        model, params.train, params.seed, train, val, training_log=False, callbacks=[record],
        loop=loop,
    )
    found[loop] = [v.numpy().astype("float64") for v in model.variables], logs[-1]
weights = found["keras_fit"][0]
print(json.dumps({
    loop: {
        "max_weight_difference": max(float(np.max(abs(a - b))) for a, b in zip(mine, weights)),
        "logs": logs,
    }
    for loop, (mine, logs) in found.items()
}))
"""


def jax_copy(trained_project: Path, folder: Path, changes: dict) -> Path:
    """A copy of the trained project, JAX_RUN's params with `changes`."""
    root = shutil.copytree(trained_project, folder, symlinks=True)
    set_params(root, JAX_RUN)
    set_params(root, changes)
    return root


# How close the logged metrics of the three loops are: in bfloat16 a validation image or
# two may fall on the other side (0.778 against 0.777 in one epoch of this run).
LOGS_TOLERANCE = {"float32": 1e-4, "mixed_bfloat16": 2e-3}


@pytest.mark.parametrize("precision", list(LOGS_TOLERANCE))
def test_an_epoch_in_one_compiled_call_trains_the_weights_that_keras_fit_does(
    trained_project, tmp_path, precision
):
    changes = {"train": {"epochs": 1, "precision": precision}}
    root = jax_copy(trained_project, tmp_path / "project", changes)
    done = subprocess.run(
        [sys.executable, "-c", THREE_LOOPS],
        cwd=root,
        env=project_env(root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["jax_batch"]["max_weight_difference"] <= 1e-6  # the same step, data on device
    assert found["jax_epoch"]["max_weight_difference"] <= 1e-4  # the steps fused in one loop
    expected = found["keras_fit"]["logs"]
    for loop in ("jax_batch", "jax_epoch"):
        assert found[loop]["logs"] == pytest.approx(expected, rel=LOGS_TOLERANCE[precision])
    assert set(expected) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}


@pytest.fixture(scope="module")
def uninterrupted(trained_project, tmp_path_factory) -> tuple[dict[str, bytes], list[np.ndarray]]:
    """JAX_RUN trained without a break, with a user cache folder of its own: its DVCLive
    files and its weights."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    root = jax_copy(trained_project, folder / "project", {})
    run = run_script(root, "train", XDG_CACHE_HOME=str(folder / "user-cache"))
    assert run.returncode == 0, run.stderr
    assert "train: training on cpu:0 with jax" in run.stdout
    assert "train: stopped early after epoch 14" in run.stdout  # see JAX_RUN
    assert "keeping the weights of epoch 12" in run.stdout
    assert "train: epoch 15/16" not in run.stdout
    rates = (root / "dvclive/plots/metrics/train/learning_rate.tsv").read_text().splitlines()
    assert [float(row.split("\t")[-1]) for row in rates[1:]] == pytest.approx(RATES, rel=1e-6)
    cached = folder / "user-cache/mnist-dvc-pipeline/jax-compilation"
    assert any(cached.glob("jit_batch_at-*-cache"))  # the compiled steps, kept for next time
    return training_log_files(root), trained_weights(root)


def test_a_jax_run_logs_each_epoch_live_and_resumes_byte_identical_after_a_kill(
    trained_project, tmp_path, checkpoint_store, uninterrupted
):
    root = jax_copy(trained_project, tmp_path / "project", {})
    expected_log, expected_weights = uninterrupted
    loss_rows = root / "dvclive/plots/metrics/train/loss.tsv"
    with in_background(root, sys.executable, "stages/train.py") as process:
        read_until(process, "train: epoch 1/16")
        logged_while_running = loss_rows.read_text().splitlines()
        os.killpg(process.pid, signal.SIGKILL)
    assert logged_while_running[0] == "step\tloss"
    assert len(logged_while_running) == 2  # epoch 1's row, written as it ended

    resumed = run_script(root, "train")
    assert resumed.returncode == 0, resumed.stderr
    assert "train: resuming after epoch 1 of 16" in resumed.stdout
    assert "train: epoch 1/16" not in resumed.stdout
    assert "train: stopped early after epoch 14" in resumed.stdout
    assert training_log_files(root) == expected_log
    assert_same_weights(root, expected_weights)


def test_a_second_jax_run_compiles_nothing_new_and_two_devices_train_like_one(
    trained_project, tmp_path, checkpoint_store
):
    """Two runs of one model on one device (of two virtual CPU devices), then the same
    data-parallel on both: the second run finds every program in JAX's compilation
    cache, and the data-parallel run logs the one-device run's figures."""
    cache = checkpoint_store.parent / "jax-compilation"
    logs, programs = {}, []
    root = jax_copy(trained_project, tmp_path / "none", {"train": {"epochs": 1}})
    for _ in range(2):
        run = run_script(root, "train", XLA_FLAGS=TWO_CPU_DEVICES)
        assert run.returncode == 0, run.stderr
        assert "train: training on cpu:0 with jax\n" in run.stdout
        programs.append(sorted(path.name for path in cache.glob("*-cache")))
    assert any(name.startswith("jit_batch_at-") for name in programs[0])
    assert programs[1] == programs[0]  # every program the second run needed was there
    logs["none"] = json.loads((root / "dvclive/metrics.json").read_text())

    changes = {"train": {"epochs": 1, "distribution": "data_parallel"}}
    root = jax_copy(trained_project, tmp_path / "data_parallel", changes)
    run = run_script(root, "train", XLA_FLAGS=TWO_CPU_DEVICES)
    assert run.returncode == 0, run.stderr
    assert "train: training on cpu:0, cpu:1 with jax (data-parallel)\n" in run.stdout
    logs["data_parallel"] = json.loads((root / "dvclive/metrics.json").read_text())
    for split in ("train", "val"):
        for metric in ("loss", "accuracy"):
            assert logs["data_parallel"][split][metric] == pytest.approx(
                logs["none"][split][metric], abs=1e-4
            )


def test_jax_chosen_deterministic_asks_xla_for_deterministic_gpu_kernels(tmp_path):
    root = copy_project(tmp_path / "project")
    script = (
        "import os, sys; sys.path.insert(0, '.');"
        "from mnist_pipeline.backend import choose_backend;"
        "choose_backend('jax', deterministic=sys.argv[1] == 'true');"
        "print(os.environ.get('XLA_FLAGS', ''))"
    )
    for deterministic, flags in (("true", "--xla_gpu_deterministic_ops=true"), ("false", "")):
        done = subprocess.run(
            [sys.executable, "-c", script, deterministic],
            cwd=root,
            env={k: v for k, v in project_env(root).items() if k != "XLA_FLAGS"},
            capture_output=True,
            text=True,
        )
        assert done.stdout.strip() == flags, done.stderr
