"""The benchmark: what this pipeline costs, next to the seed tutorial's own code path.

    MNIST_MIRROR=/path/to/mnist python bench/run.py [--rounds 2] [--json bench/last-run.json]

In a temporary copy of the project (your workspace and its outputs are not touched) it
times, on this machine, in one run: every stage of a default `dvc repro` (wall seconds,
peak memory), a no-op `dvc repro`, a rerun after a change that touches only evaluate, a
rerun that gets train's outputs back from DVC's run-cache, the steady-state training
epoch of our code path against the seed's (float64 arrays into model.fit), interleaved
over rounds, inference throughput, and the fast preset (presets/fast.yaml) run as a
DVC experiment: its training time, accuracy and the whole `dvc exp run`'s time.
Prints a table and writes the figures as JSON. Needs 10-15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root

from bench.measure import epoch_seconds, interleaved_runs, medians, run_metrics
from tests.project import copy_project, set_params

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("fetch", "preprocess", "train", "evaluate", "export")  # dvc.yaml's, in order


def timed(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS in GB of it and its children, output)."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{output}")
    return wall, usage.ru_maxrss / 2**20, output


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def pipeline_figures(root: Path) -> dict:
    figures: dict = {}
    for stage in STAGES:
        wall, peak, output = timed(["dvc", "repro", "--single-item", stage], root)
        figures[stage] = {"wall_s": wall, "peak_rss_gb": peak}
        if stage == "train":
            figures[stage]["epoch_s"] = epoch_seconds(root)
    figures["test_accuracy"] = run_metrics(root)["test"]["accuracy"]
    figures["noop_repro_s"] = timed(["dvc", "repro"], root)[0]

    script = root / "stages/evaluate.py"
    script.write_text(script.read_text() + "\n# touched by bench/run.py\n")
    wall, _, output = timed(["dvc", "repro"], root)
    figures["evaluate_only_change"] = {"wall_s": wall, "stages_run": ran(output)}

    set_params(root, {"train": {"epochs": 1}})
    timed(["dvc", "repro"], root)
    set_params(root, {"train": {"epochs": 10}})
    wall, _, output = timed(["dvc", "repro", "train"], root)
    figures["run_cache_restore_train"] = {"wall_s": wall, "stages_run": ran(output)}
    wall, _, output = timed(["dvc", "repro"], root)
    figures["run_cache_then_evaluate"] = {"wall_s": wall, "stages_run": ran(output)}
    return figures


def epoch_figures(root: Path, rounds: int) -> dict:
    runs = interleaved_runs({"seed": {"path": "seed"}, "ours": {"path": "ours"}}, rounds, root)
    figures = {}
    for path, results in runs.items():
        summary = medians(results)
        figures[path] = {
            "epoch_wall_s": summary["wall_s"],
            "epoch_cpu_s": summary["cpu_s"],
            "train_images_per_s": summary["train_images_per_s"],
            "predict_images_per_s": summary["predict_images_per_s"],
        }
    for key in ("epoch_wall_s", "epoch_cpu_s"):
        figures[f"ratio_{key}"] = figures["ours"][key] / figures["seed"][key]
    return figures


def fast_preset_figures(root: Path) -> dict:
    """The fast preset run as a user runs it: one `dvc exp run` in the workspace, with
    fetch and preprocess already done (cached)."""
    command = [str(Path(sys.executable).parent / "mnist-pipeline"), "preset", "presets/fast.yaml"]
    wall, _, _ = timed(command, root)
    epochs = epoch_seconds(root)
    return {
        "exp_run_wall_s": wall,
        "epoch_s": epochs,
        "training_s": sum(epochs),
        "test_accuracy": run_metrics(root)["test"]["accuracy"],  # the experiment's outputs
    }


def report(f: dict) -> None:
    p, e, fast = f["pipeline"], f["epochs"], f["fast_preset"]
    rows = [
        (
            "fetch (MNIST_MIRROR)",
            f"{p['fetch']['wall_s']:.1f} s",
            f"{p['fetch']['peak_rss_gb']:.2f} GB",
            "<= 3 s",
        ),
        (
            "preprocess",
            f"{p['preprocess']['wall_s']:.1f} s",
            f"{p['preprocess']['peak_rss_gb']:.2f} GB",
            "<= 3 s",
        ),
        (
            "train (default, 10 epochs)",
            f"{p['train']['wall_s']:.0f} s",
            f"{p['train']['peak_rss_gb']:.2f} GB",
            "<= 2.5 GB",
        ),
        (
            "evaluate",
            f"{p['evaluate']['wall_s']:.1f} s",
            f"{p['evaluate']['peak_rss_gb']:.2f} GB",
            "<= 10 s",
        ),
        (
            "export (SavedModel, ONNX)",
            f"{p['export']['wall_s']:.1f} s",
            f"{p['export']['peak_rss_gb']:.2f} GB",
            "",
        ),
        ("dvc repro, nothing changed", f"{p['noop_repro_s']:.1f} s", "", "<= 3 s"),
        (
            "dvc repro after an evaluate-only change",
            f"{p['evaluate_only_change']['wall_s']:.1f} s",
            "",
            "<= 15 s",
        ),
        (
            "dvc repro train, from the run-cache",
            f"{p['run_cache_restore_train']['wall_s']:.1f} s",
            "",
            "<= 10 s",
        ),
        (
            "  then dvc repro (evaluate reruns)",
            f"{p['run_cache_then_evaluate']['wall_s']:.1f} s",
            "",
            "",
        ),
        (
            "epoch, seed code path",
            f"{e['seed']['epoch_wall_s']:.1f} s",
            f"{e['seed']['epoch_cpu_s']:.1f} s CPU",
            "",
        ),
        (
            "epoch, ours",
            f"{e['ours']['epoch_wall_s']:.1f} s",
            f"{e['ours']['epoch_cpu_s']:.1f} s CPU",
            "",
        ),
        (
            "ours / seed, epoch CPU time",
            f"{e['ratio_epoch_cpu_s']:.2f}x",
            f"wall {e['ratio_epoch_wall_s']:.2f}x",
            "<= 1.0x",
        ),
        ("training throughput, ours", f"{e['ours']['train_images_per_s']:.0f} img/s", "", ""),
        ("test-set inference, ours", f"{e['ours']['predict_images_per_s']:.0f} img/s", "", ""),
        ("default test accuracy", f"{p['test_accuracy']:.4f}", "", ">= 0.991"),
        (
            "fast preset: training time",
            f"{fast['training_s']:.1f} s",
            f"acc {fast['test_accuracy']:.4f}",
            "<= 15 s, >= 0.990",
        ),
        ("fast preset: the whole dvc exp run", f"{fast['exp_run_wall_s']:.1f} s", "", "<= 40 s"),
    ]
    print(f"\n{'figure':42} {'value':>12} {'':>16}  target")
    for name, value, extra, target in rows:
        print(f"{name:42} {value:>12} {extra:>16}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds of the epoch comparison"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "last-run.json")
    args = parser.parse_args()
    if not os.environ.get("MNIST_MIRROR"):
        raise SystemExit(
            "bench: set MNIST_MIRROR to a folder or URL holding the four MNIST .gz files"
        )
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as folder:
        root = copy_project(ROOT, Path(folder) / "project")
        figures = {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "processor": platform.processor(),
            },
            "pipeline": pipeline_figures(root),
        }
        figures["epochs"] = epoch_figures(root, args.rounds)
        figures["fast_preset"] = fast_preset_figures(root)
    args.json.write_text(json.dumps(figures, indent=2))
    report(figures)
    print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
