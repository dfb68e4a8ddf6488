"""Mean and spread over seeds: one `dvc exp run --queue` grid over `seed` for a preset.

    MNIST_MIRROR=/path/to/mnist python bench/variance.py PRESET --seeds 42 43 44 45 46
        [--set train.precision=mixed_bfloat16 ...] [--json FILE]

PRESET is a file's name in presets/ (fast, accurate) or `default` (params.yaml alone).
In a temporary copy of the project (your workspace is not touched) it runs fetch and
preprocess, queues the grid exactly as a user would:

    mnist-pipeline preset presets/PRESET.yaml --queue -S seed=42,43,...
    dvc queue start  (then waits for the queue to empty)

and reads each experiment's test accuracy and loss with `dvc.api.exp_show`, and its
training seconds (each epoch's, as the train stage prints them) from `dvc queue logs`.
Prints a summary and writes it as JSON to bench/results/variance-PRESET.json. With
--keep-model it keeps the first seed's trained model (for bench/rendered_digits.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import epoch_seconds
from tests.project import copy_project

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def queue_grid(root: Path, preset: str, seeds: list[int], changes: list[str]) -> None:
    grid = ["--queue", "-S", "seed=" + ",".join(map(str, seeds))]
    grid += [part for change in changes for part in ("-S", change)]
    if preset == "default":
        run(["dvc", "exp", "run", *grid], root)
    else:
        run(
            [
                str(Path(sys.executable).parent / "mnist-pipeline"),
                "preset",
                f"presets/{preset}.yaml",
                *grid,
            ],
            root,
        )
    subprocess.run(  # the worker runs detached; its output goes to `dvc queue logs`
        ["dvc", "queue", "start"],
        cwd=root,
        env=dict(os.environ, DVC_NO_ANALYTICS="1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    while re.search(r"\b(Queued|Running)\b", run(["dvc", "queue", "status"], root)):
        time.sleep(10)


def results(root: Path) -> list[dict]:
    import dvc.api

    rows = []
    for row in dvc.api.exp_show(repo=str(root)):
        # exp show draws a baseline's experiments as a tree: the last is its branch_base
        if row.get("typ") not in ("branch_commit", "branch_base") or not row.get("Experiment"):
            continue
        if row.get("State") not in (None, "Success"):
            raise SystemExit(f"bench: experiment {row['Experiment']} ended {row['State']}")
        epochs = epoch_seconds(run(["dvc", "queue", "logs", row["Experiment"]], root))
        rows.append(
            {
                "experiment": row["Experiment"],
                "seed": int(row["seed"]),
                "test_accuracy": row["test.accuracy"],
                "test_loss": row["test.loss"],
                "epoch_s": epochs,
                "training_s": round(sum(epochs), 1),
            }
        )
    return sorted(rows, key=lambda r: r["seed"])


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
        queue_grid(root, args.preset, args.seeds, args.set)
        figures = summary(args.preset, args.set, results(root))
        if args.keep_model:
            run(["dvc", "exp", "apply", figures["runs"][0]["experiment"]], root)
            shutil.copy2(root / "models/model.keras", args.keep_model)
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
