"""`mnist-pipeline report`: what a branch changed against a base revision, as a markdown
report with pictures (the comment CI posts on a pull request).

Reads:  reports/metrics.json, dvclive/ (metrics.json and the per-epoch .tsv curves),
        reports/predictions.csv and reports/figures/misclassified.png: the workspace's
        (the branch, after `dvc repro`) and the base revision's (metrics.json files from
        git, the curves and the last two from DVC's cache or remote).
Writes: OUT/report.md and the PNG pictures it shows, beside it.

    dvc repro && mnist-pipeline report --base origin/main --out report/

The report: test accuracy and loss and the last epoch's training and validation metrics
(base, branch, change); the params that changed (`dvc params diff`); per-class precision,
recall, F1 and support, collapsed; then, base beside branch, the training curves, the test
confusion matrices and the misclassified digits. A base picture that is nowhere (its
outputs never pushed to a DVC remote) is left out, with a line saying so.
`cml comment update --publish OUT/report.md` uploads the pictures with the comment.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.paths import (
    METRICS_FILE,
    MISCLASSIFIED_GRID_FILE,
    PREDICTIONS_FILE,
    TRAINING_LOG_DIR,
)
from mnist_pipeline.stage import StageError, printable, write_text_atomic

# Derived here, not in paths.py: every stage depends on paths.py, and this is no stage.
TRAINING_METRICS_FILE = TRAINING_LOG_DIR / "metrics.json"  # the last epoch's
CURVES_DIR = TRAINING_LOG_DIR / "plots" / "metrics"  # {train,val}/{loss,accuracy}.tsv

HEADLINE = [  # (row, file, dotted key)
    ("test accuracy", METRICS_FILE, "test.accuracy"),
    ("test loss", METRICS_FILE, "test.loss"),
    ("training accuracy (last epoch)", TRAINING_METRICS_FILE, "train.accuracy"),
    ("training loss (last epoch)", TRAINING_METRICS_FILE, "train.loss"),
    ("validation accuracy (last epoch)", TRAINING_METRICS_FILE, "val.accuracy"),
    ("validation loss (last epoch)", TRAINING_METRICS_FILE, "val.loss"),
]
PER_CLASS = [
    (f"digit {digit} {metric}", METRICS_FILE, f"test.per_class.{digit}.{metric}")
    for digit in range(10)
    for metric in ("precision", "recall", "f1", "support")
] + [
    (f"macro average {m}", METRICS_FILE, f"test.macro_avg.{m}")
    for m in ("precision", "recall", "f1")
]

Reader = Callable[[Path], bytes | None]  # a file's bytes on one side; None where it has none


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default="origin/main", help="the git revision to compare with")
    parser.add_argument("--out", type=Path, default=Path("report"), help="default: report/")


def _run(*command: str) -> str:
    """`command`'s output; its last line of errors as a StageError if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        said = result.stderr.strip().splitlines() or [f"{' '.join(command[:3])} failed"]
        raise StageError(printable(said[-1]))
    return result.stdout.strip()


def check_base(base: str) -> str:
    """The short commit `base` names; a StageError outside the project's git clone, or
    for a revision git does not know."""
    if subprocess.run(["git", "rev-parse"], capture_output=True, check=False).returncode:
        raise StageError("not in a git repository: run it in a clone of the project")
    if not Path("dvc.yaml").is_file():
        raise StageError("no dvc.yaml here: run it from the project root")
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "--short", f"{base}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if base.startswith("-") or found.returncode != 0:
        raise StageError(f"unknown git revision {printable(base, 80)!r} (fetch it first?)")
    return found.stdout.strip()


def base_reader(base: str) -> Reader:
    """Reads files at `base`: from git, or DVC-tracked ones from DVC's cache or remote."""
    from dvc.api import DVCFileSystem  # imports DVC: only when a report is made
    from dvc.exceptions import DvcException
    from dvc_data.index import DataIndexError  # a folder output whose listing is not cached

    fs = DVCFileSystem(repo=".", rev=base)

    def read(path: Path) -> bytes | None:
        try:
            return fs.read_bytes(path.as_posix())
        except (OSError, DvcException, DataIndexError):
            return None

    return functools.cache(read)


def lookup(read: Reader, path: Path, key: str) -> Any:
    """The value at the dotted `key` of the JSON file `path` on one side, or None."""
    data = read(path)
    value = json.loads(data) if data else None
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _shown(value: Any, sign: str = "") -> str:
    if isinstance(value, float):
        return f"{value:{sign}.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:{sign}d}"
    return "-" if value is None else printable(str(value), 40).replace("|", "\\|")


def metrics_table(rows: list[tuple[str, Any, Any]]) -> str:
    """A markdown table of (metric, base, branch) rows, and the change where both have one."""
    lines = ["| metric | base | branch | change |", "|---|---:|---:|---:|"]
    for name, old, new in rows:
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new))
        change = _shown(new - old, "+") if numbers else "-"
        lines.append(f"| {name} | {_shown(old)} | {_shown(new)} | {change} |")
    return "\n".join(lines)


def params_table(base: str) -> str:
    """The params that changed since `base` (`dvc params diff`), as a markdown table."""
    diff = json.loads(_run("dvc", "params", "diff", base, "--json") or "{}")
    lines = [
        f"| `{name}` | {_shown(json.dumps(change['old']))} | {_shown(json.dumps(change['new']))} |"
        for changes in diff.values()
        for name, change in sorted(changes.items())
    ]
    if not lines:
        return "No params changed."
    return "\n".join(["| param | base | branch |", "|---|---|---|", *lines])


def curves(read: Reader) -> dict[str, list[tuple[int, float]]] | None:
    """{'train/loss': [(epoch, value), ...], ...}; None where the side has none."""
    found = {}
    for name in ("train/loss", "val/loss", "train/accuracy", "val/accuracy"):
        data = read(CURVES_DIR / f"{name}.tsv")
        if data is None:
            return None
        rows = csv.DictReader(io.StringIO(data.decode()), delimiter="\t")
        found[name] = [(int(row["step"]), float(row[name.split("/")[1]])) for row in rows]
    return found


def confusion(read: Reader) -> np.ndarray | None:
    """Counts by [true digit, predicted digit] on the test set; None where the side has none."""
    data = read(PREDICTIONS_FILE)
    if data is None:
        return None
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, ([int(r["actual"]) for r in rows], [int(r["predicted"]) for r in rows]), 1)
    return counts


@contextmanager
def _figure(path: Path, rows: int, columns: int, size: tuple[float, float]) -> Iterator[Any]:
    """The axes (rows x columns, each `size` inches) of a new figure, then saved to `path`."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(
        rows, columns, figsize=(size[0] * columns, size[1] * rows), sharey="row", squeeze=False
    )
    try:
        yield axes
        figure.tight_layout()
        figure.savefig(path, dpi=80)
    finally:
        pyplot.close(figure)


def draw_curves(sides: dict[str, dict], path: Path) -> None:
    """Loss above accuracy, per epoch, training and validation: a column per side."""
    with _figure(path, 2, len(sides), (5, 3.6)) as axes:
        for column, (side, found) in enumerate(sides.items()):
            for ax, metric in zip(axes[:, column], ("loss", "accuracy"), strict=True):
                for split, style in (("train", "o-"), ("val", "s--")):
                    ax.plot(*zip(*found[f"{split}/{metric}"], strict=True), style, label=split)
                ax.set(title=f"{side}: {metric}", xlabel="epoch (from 0)")
                ax.xaxis.get_major_locator().set_params(integer=True)
                ax.grid(alpha=0.3)
                ax.legend()


def draw_confusion(sides: dict[str, np.ndarray], path: Path) -> None:
    """Heatmaps of the counts, side by side, on a log scale so that the mistakes show."""
    from matplotlib.colors import LogNorm

    top = max(counts.max() for counts in sides.values())
    with _figure(path, 1, len(sides), (4.4, 4.4)) as axes:
        for ax, (side, counts) in zip(axes[0], sides.items(), strict=True):
            ax.imshow(np.ma.masked_equal(counts, 0), "Blues", LogNorm(1, top))  # 0: blank
            for (actual, predicted), n in np.ndenumerate(counts):
                color = "white" if n * n > top else "black"
                ax.text(predicted, actual, n, ha="center", va="center", fontsize=7, color=color)
            ax.set(title=side, xlabel="predicted digit", ylabel="true digit")
            ax.set(xticks=range(10), yticks=range(10))


def pictures(readers: dict[str, Reader], out: Path) -> list[str]:
    """Draw or copy the pictures into `out`, base beside branch; the markdown showing them."""
    lines = []
    for heading, name, load in (
        ("Training curves", "curves", curves),
        ("Test confusion matrix", "confusion", confusion),
        ("Misclassified test digits", "misclassified", lambda r: r(MISCLASSIFIED_GRID_FILE)),
    ):
        sides = {side: load(read) for side, read in readers.items()}
        lines += ["", f"### {heading}", ""]
        if sides["base"] is None:
            lines += ["_The base's is in no DVC cache or remote here: the branch's alone._", ""]
            del sides["base"]
        if name == "misclassified":  # PNG files already: copied, side by side in a table
            for side, data in sides.items():
                (out / f"{name}-{side}.png").write_bytes(data)
            cells = [f"![{name} digits, {side}]({name}-{side}.png)" for side in sides]
            lines += [
                f"| {' | '.join(sides)} |",
                "|---" * len(sides) + "|",
                f"| {' | '.join(cells)} |",
            ]
        else:
            (draw_curves if name == "curves" else draw_confusion)(sides, out / f"{name}.png")
            lines.append(f"![{heading.lower()}]({name}.png)")
    return lines


def run(args: argparse.Namespace) -> None:
    base: str = args.base
    commit = check_base(base)
    for path in (METRICS_FILE, TRAINING_METRICS_FILE, PREDICTIONS_FILE, MISCLASSIFIED_GRID_FILE):
        if not path.is_file():
            raise StageError(f"{path} is missing: run `dvc repro` first")
    readers = {
        "base": base_reader(base),
        "branch": functools.cache(lambda path: path.read_bytes() if path.is_file() else None),
    }

    def rows(spec: list[tuple[str, Path, str]]) -> list[tuple[str, Any, Any]]:
        return [
            (name, *(lookup(read, f, key) for read in readers.values())) for name, f, key in spec
        ]

    params = params_table(base)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"## Pipeline report: `{printable(base, 80)}` ({commit}) → this branch "
        f"({_run('git', 'rev-parse', '--short', 'HEAD')})",
        "",
        metrics_table(rows(HEADLINE)),
        "",
        "### Params changed",
        "",
        params,
        "",
        "<details><summary>Per-class precision, recall, F1 and support (test set)</summary>",
        "",
        metrics_table(rows(PER_CLASS)),
        "",
        "</details>",
        *pictures(readers, args.out),
    ]
    write_text_atomic(args.out / "report.md", "\n".join(lines) + "\n")
    print(f"report: wrote {args.out / 'report.md'}")
