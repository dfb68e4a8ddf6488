"""What each speed lever buys: the default model's steady-state epoch, one process per
run, the levers interleaved over rounds (the order reversed every other round), medians
of CPU seconds (the work done; steadier here than wall time) with wall time beside.

    python bench/levers.py [--rounds 2] [--only bf16 ...] [--json bench/levers.json]

--only keeps the seed code path (the baseline of every ratio) and the levers whose names
hold one of the words given.

Run from the project root after `dvc repro preprocess`. About 45 s per run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root

from bench.measure import interleaved_runs, medians

LEVERS = {
    "seed code path (float64 arrays)": {"path": "seed"},
    "seed code path, float32 arrays": {"path": "seed", "input": "float32"},
    "ours: uint8 arrays, 1/255 in the model": {"path": "ours"},
    "ours, batch 256": {"path": "ours", "batch_size": 256},
    "ours, bf16 mixed precision": {"path": "ours", "bf16": True},
    "ours, 2 intra-op threads, 1 inter-op": {"path": "ours", "threads": 2},
    "ours, op determinism off": {"path": "ours", "deterministic": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="levers whose names hold one of these words")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    baseline = next(iter(LEVERS))
    chosen = {
        name: config
        for name, config in LEVERS.items()
        if name == baseline or not args.only or any(word in name for word in args.only)
    }
    runs = interleaved_runs(chosen, args.rounds)
    base = medians(runs[baseline])["cpu_s"]
    print(f"{'lever':42} {'CPU s/epoch':>11} {'ratio':>6} {'wall s':>7} {'test acc':>8}")
    summary = {}
    for name, results in runs.items():
        figures = medians(results)
        cpu, wall, accuracy = figures["cpu_s"], figures["wall_s"], figures["test_accuracy"]
        summary[name] = {
            "cpu_s": cpu,
            "wall_s": wall,
            "cpu_ratio_to_seed": cpu / base,
            "test_accuracy": accuracy,
        }
        print(f"{name:42} {cpu:11.1f} {cpu / base:6.2f} {wall:7.1f} {accuracy:8.4f}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
