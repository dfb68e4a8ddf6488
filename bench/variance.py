"""Mean and spread over seeds: one experiment per seed for a preset.

    MNIST_MIRROR=/path/to/mnist python bench/variance.py PRESET --seeds 42 43 44 45 46
        [--set train.precision=mixed_bfloat16 ...] [--json FILE]

PRESET is a file's name in presets/ (fast, accurate) or `default` (params.yaml alone).
In a temporary copy of the project (your workspace is not touched) it runs fetch and
preprocess, then each seed as a user would, one after another:

    mnist-pipeline preset presets/PRESET.yaml -n seed-42 -S seed=42   (dvc exp run)

and reads what each run leaves: its test accuracy and loss (reports/metrics.json) and
each epoch's seconds (the train stage's DVCLive log of them). Prints a summary and
writes it as JSON to bench/results/variance-PRESET.json. With --keep-model it keeps the
first seed's trained model (for bench/rendered_digits.py). (The committed results were
recorded by the script's earlier form, which queued the seeds with `dvc exp run
--queue` and read the epoch seconds from `dvc queue logs`.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import epoch_seconds, run_metrics
from tests.project import copy_project

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run_seed(root: Path, preset: str, seed: int, changes: list[str]) -> dict:
    """One experiment, run in the workspace of the copy at `root`, and its figures."""
    options = ["-n", f"seed-{seed}", "-S", f"seed={seed}"]
    options += [part for change in changes for part in ("-S", change)]
    if preset == "default":
        run(["dvc", "exp", "run", *options], root)
    else:
        mnist_pipeline = str(Path(sys.executable).parent / "mnist-pipeline")
        run([mnist_pipeline, "preset", f"presets/{preset}.yaml", *options], root)
    test = run_metrics(root)["test"]
    epochs = epoch_seconds(root)
    return {
        "experiment": f"seed-{seed}",
        "seed": seed,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "epoch_s": epochs,
        "training_s": round(sum(epochs), 1),
    }


def summary(preset: str, changes: list[str], rows: list[dict]) -> dict:
    accuracy = [r["test_accuracy"] for r in rows]
    training = [r["training_s"] for r in rows]
    return {
        "preset": preset,
        "set": changes,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": rows,
        "test_accuracy": {
            "mean": statistics.mean(accuracy),
            "sd": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
            "min": min(accuracy),
            "max": max(accuracy),
        },
        "training_s": {"median": statistics.median(training), "max": max(training)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="default, or a preset's name in presets/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    parser.add_argument("--set", nargs="+", default=[], help="more -S changes, KEY=VALUE")
    parser.add_argument("--json", type=Path, help="default: bench/results/variance-PRESET.json")
    parser.add_argument(
        "--keep-model", type=Path, help="copy the first seed's models/model.keras here"
    )
    args = parser.parse_args()
    if args.preset != "default" and not (ROOT / "presets" / f"{args.preset}.yaml").is_file():
        raise SystemExit(f"bench: no presets/{args.preset}.yaml")
    if not os.environ.get("MNIST_MIRROR"):
        raise SystemExit("bench: set MNIST_MIRROR to a folder or URL holding the MNIST files")
    with tempfile.TemporaryDirectory(prefix="mnist-variance-") as folder:
        root = copy_project(ROOT, Path(folder) / "project", untracked=True)
        run(["dvc", "repro", "preprocess"], root)
        rows = []
        for seed in args.seeds:
            rows.append(run_seed(root, args.preset, seed, args.set))
            if args.keep_model and len(rows) == 1:
                shutil.copy2(root / "models/model.keras", args.keep_model)
        figures = summary(args.preset, args.set, rows)
    path = args.json or ROOT / "bench" / "results" / f"variance-{args.preset}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    acc, train = figures["test_accuracy"], figures["training_s"]
    for r in figures["runs"]:
        print(
            f"seed {r['seed']}: test accuracy {r['test_accuracy']:.4f}, training {r['training_s']} s"
        )
    print(
        f"{args.preset}: test accuracy {acc['mean']:.4f} +- {acc['sd']:.4f} (sd) over "
        f"{len(figures['runs'])} seeds, min {acc['min']:.4f}, max {acc['max']:.4f}; "
        f"training {train['median']} s median, {train['max']} s at most; written to {path}"
    )


if __name__ == "__main__":
    main()
