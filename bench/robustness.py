"""The robustness suite's figures for a model run, kept, and the table of them the docs
show (docs/benchmarks.md), generated here rather than retyped.

    python bench/robustness.py record NAME [--training-time]  # keep this project's last run
    python bench/robustness.py table                          # the docs' table, as markdown

`record` reads what the last `dvc repro` (or `dvc exp run`) in this project left:
reports/robustness.json, reports/metrics.json's test accuracy and, with --training-time
(when that run trained, rather than restoring the model from DVC's run cache), each
epoch's seconds from the train stage's log of them. It writes them to
bench/results/robustness-NAME.json. `table` lays out every recorded run side by side, one
row per set of the suite, the headline figures first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import epoch_seconds, run_metrics
from mnist_pipeline.paths import ROBUSTNESS_FILE

RESULTS = Path(__file__).with_name("results")
RUNS = {  # the table's columns, where recorded: name -> heading
    "default": "default model",
    "accurate": "accurate preset",
    "robust": "robust preset",
    "robust-half": "robust preset, `chance` 0.5",  # milder: see docs/benchmarks.md
}
HEADLINE = (  # (row, key of robustness.json)
    ("mean over the suite", "mean"),
    ("mean over MNIST-C's 15", "mnist_c_mean"),
    ("worst set", "worst"),
    ("clean (the suite's sample of test images)", "clean"),
)


def results_file(name: str) -> Path:
    return RESULTS / f"robustness-{name}.json"


def record(name: str, training_time: bool) -> None:
    robustness = json.loads(ROBUSTNESS_FILE.read_text())["robustness"]
    run = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "test_accuracy": run_metrics(Path("."))["test"]["accuracy"],
        "robustness": robustness,
    }
    if training_time:
        seconds = epoch_seconds(Path("."))
        run["epochs"], run["training_s"] = len(seconds), round(sum(seconds), 1)
    results_file(name).write_text(json.dumps(run, indent=2) + "\n")


def table() -> str:
    """The recorded runs side by side, as a markdown table."""
    runs = {
        name: json.loads(results_file(name).read_text())
        for name in RUNS
        if results_file(name).is_file()
    }
    header = ["set", *(RUNS[name] for name in runs)]
    rows = [header, ["---"] * len(header)]
    rows.append(
        ["test accuracy (all 10,000)", *(f"{run['test_accuracy']:.4f}" for run in runs.values())]
    )
    for label, key in HEADLINE:
        rows.append(
            [f"**{label}**", *(f"**{run['robustness'][key]:.4f}**" for run in runs.values())]
        )
    for name in next(iter(runs.values()))["robustness"]["accuracy"]:
        rows.append(
            [f"`{name}`", *(f"{run['robustness']['accuracy'][name]:.4f}" for run in runs.values())]
        )
    if all("training_s" in run for run in runs.values()):
        rows.append(
            [
                "training",
                *(
                    f"{run['epochs']} epochs, {run['training_s'] / 60:.1f} min"
                    for run in runs.values()
                ),
            ]
        )
    return "\n".join(f"| {' | '.join(row)} |" for row in rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record", help="keep this project's last run as NAME")
    recording.add_argument("name", choices=list(RUNS))
    recording.add_argument(
        "--training-time", action="store_true", help="the last training run's epoch seconds"
    )
    commands.add_parser("table", help="print the docs' table")
    args = parser.parse_args()
    if args.command == "record":
        record(args.name, args.training_time)
    else:
        print(table(), end="")


if __name__ == "__main__":
    main()
