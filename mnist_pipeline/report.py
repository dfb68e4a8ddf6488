"""`mnist-pipeline report`: what a branch changed against a base revision, as a markdown
report with pictures (the comment CI posts on a pull request).

Reads:  reports/metrics.json, reports/robustness.json, dvclive/ (metrics.json and the
        per-epoch .tsv curves), reports/predictions.csv and
        reports/figures/misclassified.png: the workspace's (the branch, after `dvc repro`)
        and the base revision's (the JSON files from git, the curves and the last two from
        DVC's cache or remote).
Writes: OUT/report.md and the PNG pictures it shows, beside it: OUT_FILES, no other.

    dvc repro && mnist-pipeline report --base origin/main --out report/

The report: test accuracy and loss, the last epoch's training and validation metrics and
the robustness suite's mean, worst and clean accuracy (base, branch, change); the params
that changed (`dvc params diff`); per-class precision, recall, F1 and support, collapsed;
then, base beside branch, the training curves, the test confusion matrices, the
misclassified digits and the accuracy on each set of the robustness suite. A base picture
that is nowhere (its outputs never pushed to a DVC remote) is left out, with a line saying
so; so is the robustness chart of a base from before the suite (no
reports/robustness.json).
`cml comment update --publish OUT/report.md` uploads the pictures with the comment.

Everything read from the branch is the branch author's to write, so none of it is
trusted: every string from it (param names and values, metrics that are no numbers, and
the base's name from the command line) is shown as literal text (`literal`), never as
markdown; the robustness suite's set names show only in its chart, as plain text (no
mathtext), cut short, MAX_SETS at most; the branch's files are read only as regular files
inside the project; the misclassified digits are decoded and drawn again as a new PNG,
never copied; and a malformed file is a one-line error naming it. The base's files
(main's) are read the same way, but one that cannot be read is left out with a line
saying why, since no branch can fix it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import json
import math
import os
import re
import stat
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.paths import (
    METRICS_FILE,
    MISCLASSIFIED_GRID_FILE,
    PREDICTIONS_FILE,
    ROBUSTNESS_FILE,
    TRAINING_CURVES_DIR,
    TRAINING_METRICS_FILE,
)
from mnist_pipeline.stage import StageError, printable, staged_file, write_text_atomic

CURVES = ("train/loss", "val/loss", "train/accuracy", "val/accuracy")

# Every file the report writes into --out, and no other. CI's comment job checks that
# the uploaded folder holds these alone and that report.md names no other file
# (.github/workflows/ci.yml spells the list out again: that job runs none of this code).
OUT_FILES = (
    "report.md",
    "curves.png",
    "confusion.png",
    "misclassified-base.png",
    "misclassified-branch.png",
    "robustness.png",
)
MAX_FILE_BYTES = 64 << 20  # a file of the branch's: predictions.csv is ~100 kB
MAX_PIXELS = 4096 * 4096  # a picture, decoded: the misclassified grid is 768 x 424
MAX_SETS = 100  # sets of the robustness suite a side may have: it has 25
SET_NAME_CHARS = 40  # a set's name in the chart, cut to this: the suite's are at most 23
DIGITS = [str(digit) for digit in range(10)]
INPUT_FILES = (  # every file the report reads, on each side
    METRICS_FILE,
    TRAINING_METRICS_FILE,
    *(TRAINING_CURVES_DIR / f"{name}.tsv" for name in CURVES),
    PREDICTIONS_FILE,
    MISCLASSIFIED_GRID_FILE,
    ROBUSTNESS_FILE,
)

HEADLINE = [  # (row, file, dotted key)
    ("test accuracy", METRICS_FILE, "test.accuracy"),
    ("test loss", METRICS_FILE, "test.loss"),
    ("training accuracy (last epoch)", TRAINING_METRICS_FILE, "train.accuracy"),
    ("training loss (last epoch)", TRAINING_METRICS_FILE, "train.loss"),
    ("validation accuracy (last epoch)", TRAINING_METRICS_FILE, "val.accuracy"),
    ("validation loss (last epoch)", TRAINING_METRICS_FILE, "val.loss"),
    ("robustness: mean accuracy (all sets)", ROBUSTNESS_FILE, "robustness.mean"),
    ("robustness: worst set's accuracy", ROBUSTNESS_FILE, "robustness.worst"),
    ("robustness: clean accuracy (its sample)", ROBUSTNESS_FILE, "robustness.clean"),
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


def literal(text: str, limit: int = 80, cell: bool = True) -> str:
    """`text` shown as itself in GitHub's markdown, whatever it holds: an inline code span
    (no links, pictures, HTML, emphasis or @mentions), its fence longer than any run of
    backticks inside and padded where the text starts or ends with one; unprintable
    characters escaped and cut to `limit` (`printable`). In a table `cell`, `|` is
    escaped as `\\|`, which GitHub reads as `|` inside the span."""
    shown = printable(text, limit)
    if not shown.strip(" "):
        shown = shown or " "  # spaces alone are kept as they are; nothing: one space
        pad = ""
    else:
        padded = shown[0] == "`" or shown[-1] == "`" or shown[0] == shown[-1] == " "
        pad = " " if padded else ""  # markdown strips one space from each end of such a span
    fence = "`" * (max(map(len, re.findall("`+", shown)), default=0) + 1)
    if cell:
        shown = shown.replace("|", "\\|")
    return f"{fence}{pad}{shown}{pad}{fence}"


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


@functools.cache
def branch_file(path: Path) -> bytes | None:
    """The workspace's file `path` (relative to the project root); None where there is
    none. A StageError where it is no regular file (a symbolic link, say), is reached
    through a linked folder outside the project, or is too large."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(info.st_mode):
        raise StageError(f"{path} is a symbolic link: the report reads only regular files")
    if not stat.S_ISREG(info.st_mode):
        raise StageError(f"{path} is not a regular file")
    if not path.resolve().is_relative_to(Path.cwd().resolve()):
        raise StageError(f"{path} is outside the project (a folder on its way is a link)")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        if os.fstat(fd).st_size > MAX_FILE_BYTES:
            raise StageError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB")
        return file.read(MAX_FILE_BYTES)


def json_file(read: Reader, path: Path) -> Any:
    """The JSON file `path` on one side, parsed; None where the side has none."""
    data = read(path)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise StageError(f"{path} is not JSON: {printable(str(error), 100)}") from None


def lookup(data: Any, key: str) -> Any:
    """The value at the dotted `key` of parsed JSON, or None."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any, sign: str = "") -> str:
    """A metric's table cell: a number formatted here, anything else as literal text."""
    if value is None:
        return "-"
    if not _is_number(value):
        return literal(value if isinstance(value, str) else json.dumps(value), 40)
    shown = f"{value:{sign}.4f}" if isinstance(value, float) else f"{value:{sign}d}"
    return printable(shown, 24)  # digits, a sign and a point; nan or inf


def metrics_table(rows: list[tuple[str, Any, Any]]) -> str:
    """A markdown table of (metric, base, branch) rows, and the change where both have one."""
    lines = ["| metric | base | branch | change |", "|---|---:|---:|---:|"]
    for name, old, new in rows:
        change = "-"
        if _is_number(old) and _is_number(new):
            with contextlib.suppress(OverflowError):  # an int too large for a float
                change = _shown(new - old, "+")
        lines.append(f"| {name} | {_shown(old)} | {_shown(new)} | {change} |")
    return "\n".join(lines)


def _param(value: Any) -> str:
    """A param's value as a table cell: a short number plain, anything else as literal
    JSON (`null`: the param is not on that side)."""
    shown = json.dumps(value)
    return shown if _is_number(value) and len(shown) <= 24 else literal(shown, 60)


def params_table(base: str) -> str:
    """The params that changed since `base` (`dvc params diff`), as a markdown table."""
    try:
        diff = json.loads(_run("dvc", "params", "diff", base, "--json") or "{}")
    except ValueError:
        raise StageError("`dvc params diff --json` printed no JSON") from None
    lines = [
        f"| {literal(name)} | {_param(change.get('old'))} | {_param(change.get('new'))} |"
        for changes in diff.values()
        for name, change in sorted(changes.items())
    ]
    if not lines:
        return "No params changed."
    return "\n".join(["| param | base | branch |", "|---|---|---|", *lines])


def _rows(data: bytes, path: Path, columns: tuple[str, ...], delimiter: str) -> list[dict]:
    """The rows of the CSV (or TSV) file `path`, each {column: value} for `columns`, with
    its line number under "line"; a StageError where it is no UTF-8 text, lacks one of
    `columns`, a row lacks a value, or it has no rows."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise StageError(f"{path} is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    needs = " and ".join(columns)
    try:
        missing = [column for column in columns if column not in (reader.fieldnames or [])]
        if missing:
            raise StageError(f"{path} has no {missing[0]!r} column: it needs {needs}")
        rows = []
        for row in reader:
            for column in columns:
                if row[column] is None:
                    at = f"{path} line {reader.line_num}"
                    raise StageError(f"{at}: no {column} value (it needs {needs})")
            rows.append({"line": reader.line_num, **{c: row[c] for c in columns}})
    except csv.Error as error:
        raise StageError(f"{path} line {reader.line_num}: {printable(str(error), 80)}") from None
    if not rows:
        raise StageError(f"{path} has no rows")
    return rows


def curves(read: Reader) -> dict[str, list[tuple[int, float]]] | None:
    """{'train/loss': [(epoch, value), ...], ...}; None where the side has none."""
    found = {}
    for name in CURVES:
        path = TRAINING_CURVES_DIR / f"{name}.tsv"
        data = read(path)
        if data is None:
            return None
        metric = name.split("/")[1]
        found[name] = []
        for row in _rows(data, path, ("step", metric), "\t"):
            at = f"{path} line {row['line']}"
            if not re.fullmatch(r"[0-9]{1,6}", row["step"]):
                raise StageError(
                    f"{at}: step {printable(row['step'], 20)!r} is not an epoch 0-999999"
                )
            try:
                value = float(row[metric])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                shown = printable(row[metric], 20)
                raise StageError(f"{at}: {metric} {shown!r} is not a finite number")
            found[name].append((int(row["step"]), value))
    return found


def confusion(read: Reader) -> np.ndarray | None:
    """Counts by [true digit, predicted digit] on the test set; None where the side has none."""
    data = read(PREDICTIONS_FILE)
    if data is None:
        return None
    counts = np.zeros((10, 10), dtype=int)
    for row in _rows(data, PREDICTIONS_FILE, ("actual", "predicted"), ","):
        for column in ("actual", "predicted"):
            if row[column] not in DIGITS:
                shown = printable(row[column], 20)
                raise StageError(
                    f"{PREDICTIONS_FILE} line {row['line']}: {column} {shown!r} is not a digit 0-9"
                )
        counts[int(row["actual"]), int(row["predicted"])] += 1
    return counts


def misclassified(read: Reader) -> Any:
    """The misclassified digits' picture, decoded (a PIL image that holds pixels alone);
    None where the side has none. A StageError where it is no PNG Pillow reads, or has
    more than MAX_PIXELS pixels."""
    from PIL import Image

    path = MISCLASSIFIED_GRID_FILE
    data = read(path)
    if data is None:
        return None
    too_many = f"{path} has more pixels than the {MAX_PIXELS:,} the report shows"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise StageError(f"{too_many}: {image.width} x {image.height}")
                image.load()
                mode = image.mode if image.mode in ("1", "L", "LA", "RGB", "RGBA") else "RGBA"
                pixels = image.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise StageError(too_many) from None
    except Image.UnidentifiedImageError:
        raise StageError(f"{path} is not a PNG file") from None
    except StageError:
        raise
    except Exception as error:  # a broken file: Pillow's decoders raise many kinds
        reason = printable(str(error), 80)
        raise StageError(f"{path} is a PNG file Pillow cannot read: {reason}") from None
    # A new image from the pixels alone: none of the file's chunks (text, ICC profile,
    # EXIF, more frames) go into the report.
    return Image.frombytes(mode, pixels.size, pixels.tobytes())


def robustness(read: Reader) -> dict[str, float] | None:
    """Accuracy on each set of the robustness suite, {set: accuracy} in the file's order;
    None where the side has no reports/robustness.json. A StageError where it has no
    robustness.accuracy object, more than MAX_SETS sets, or an accuracy that is no number
    from 0 to 1."""
    path = ROBUSTNESS_FILE
    data = json_file(read, path)
    if data is None:
        return None
    accuracy = lookup(data, "robustness.accuracy")
    if not isinstance(accuracy, dict) or not accuracy:
        raise StageError(f"{path} has no robustness.accuracy object of the accuracy per set")
    if len(accuracy) > MAX_SETS:
        raise StageError(f"{path} has {len(accuracy):,} sets: the report shows {MAX_SETS} at most")
    for name, value in accuracy.items():
        if not (_is_number(value) and 0 <= value <= 1):  # NaN too: no comparison holds
            shown = printable(json.dumps(value), 20)
            raise StageError(
                f"{path}: set {printable(name, SET_NAME_CHARS)!r} has accuracy {shown!r},"
                " not a number from 0 to 1"
            )
    return {name: float(value) for name, value in accuracy.items()}


def _out(folder: Path, name: str) -> Path:
    """Where the report writes its file `name`: one of OUT_FILES in `folder`."""
    if name not in OUT_FILES:
        raise ValueError(f"the report writes no file {name!r}: add it to OUT_FILES")
    return folder / name


@contextlib.contextmanager
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
        with staged_file(path) as staged:  # a new file: never through a link at `path`
            figure.savefig(staged, dpi=80, format="png")
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


BAR_COLORS = {"base": "#1f77b4", "branch": "#ff7f0e"}  # matplotlib's first two (tab:)


def draw_robustness(sides: dict[str, dict[str, float]], path: Path) -> list[str]:
    """Grouped horizontal bars: a row per set (those of either side, in the files' order:
    the branch's, then any only the base has), a bar per side that has the set. Returns
    the rows' labels: each set's name as drawn, cut to SET_NAME_CHARS characters, plain
    text (mathtext off: `$` is a dollar sign), a character the font lacks a box, unwarned."""
    import matplotlib

    names = list(dict.fromkeys(name for found in reversed(sides.values()) for name in found))
    labels = [printable(name, SET_NAME_CHARS) for name in names]
    height = 0.8 / len(sides)
    plain = {"text.parse_math": False, "text.usetex": False}
    with (
        warnings.catch_warnings(),
        matplotlib.rc_context(plain),
        _figure(path, 1, 1, (7, 1.2 + 0.32 * len(names))) as axes,
    ):
        warnings.filterwarnings("ignore", "Glyph .* missing from", UserWarning)
        ax = axes[0, 0]
        for i, (side, found) in enumerate(sides.items()):
            shift = (i - (len(sides) - 1) / 2) * height
            rows = [(row + shift, found[name]) for row, name in enumerate(names) if name in found]
            ax.barh(*zip(*rows, strict=True), height, label=side, color=BAR_COLORS[side])
        ax.set_yticks(range(len(names)), labels)
        ax.set(xlim=(0, 1), ylim=(len(names) - 0.5, -0.5), xlabel="accuracy on the set")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=len(sides), frameon=False)
    return labels


def save_png(image: Any, path: Path) -> None:
    """`image` (a PIL image) as a new PNG file at `path`."""
    with staged_file(path) as staged:
        image.save(staged, format="PNG")


def loaded(side: str, load: Callable[[Reader], Any], read: Reader) -> tuple[Any, str | None]:
    """`load(read)`, and None; for the base, a file it cannot read is left out: (None, why).
    The branch's is a StageError: the branch can fix its own files, not the base's."""
    try:
        return load(read), None
    except StageError as error:
        if side == "branch":
            raise
        return None, str(error)


def left_out(why: str | None, name: str = "") -> str:
    """The line that says why the base's part (of the picture `name`) is missing."""
    if why is None and name == "robustness":  # a git-tracked file: in no cache, but absent
        return f"_The base has no {ROBUSTNESS_FILE} (it predates the suite): the branch's alone._"
    if why is None:
        return "_The base's is in no DVC cache or remote here: the branch's alone._"
    return f"_Left out on the base's side, unreadable: {literal(why, 200, cell=False)}_"


PICTURES = (  # (heading, name, load)
    ("Training curves", "curves", curves),
    ("Test confusion matrix", "confusion", confusion),
    ("Misclassified test digits", "misclassified", misclassified),
    ("Accuracy on the robustness suite", "robustness", robustness),
)
DRAW = {"curves": draw_curves, "confusion": draw_confusion, "robustness": draw_robustness}
Picture = tuple[str, str, dict[str, Any], str | None]  # heading, name, {side: data}, why


def pictures(readers: dict[str, Reader]) -> list[Picture]:
    """(heading, name, {side: what it shows}, why the base's is left out) per picture,
    read and checked: the branch's never missing (run() checked), the base's maybe."""
    found = []
    for heading, name, load in PICTURES:
        sides, why = {}, None
        for side, read in readers.items():
            sides[side], problem = loaded(side, load, read)
            why = why or problem
        found.append((heading, name, sides, why))
    return found


def draw_pictures(found: list[Picture], out: Path) -> list[str]:
    """Draw the pictures into `out`, base beside branch; the markdown showing them."""
    lines = []
    for heading, name, sides, why in found:
        lines += ["", f"### {heading}", ""]
        if sides["base"] is None:
            lines += [left_out(why, name), ""]
            sides = {"branch": sides["branch"]}
        if name == "misclassified":  # decoded pictures: new PNG files, side by side
            files = {side: f"{name}-{side}.png" for side in sides}
            for side, image in sides.items():
                save_png(image, _out(out, files[side]))
            cells = [f"![{name} digits, {side}]({files[side]})" for side in sides]
            lines += [
                f"| {' | '.join(sides)} |",
                "|---" * len(sides) + "|",
                f"| {' | '.join(cells)} |",
            ]
        else:
            DRAW[name](sides, _out(out, f"{name}.png"))
            lines.append(f"![{heading.lower()}]({name}.png)")
    return lines


def run(args: argparse.Namespace) -> None:
    base: str = args.base
    commit = check_base(base)
    for path in INPUT_FILES:
        if branch_file(path) is None:
            raise StageError(f"{path} is missing: run `dvc repro` first")
    readers = {"base": base_reader(base), "branch": branch_file}

    # Everything read and checked before anything is written: an error leaves no report.
    notes = []  # the base's metrics files left out, and why
    metrics: dict[str, dict[Path, Any]] = {side: {} for side in readers}
    for path in (METRICS_FILE, TRAINING_METRICS_FILE, ROBUSTNESS_FILE):
        for side, read in readers.items():
            metrics[side][path], why = loaded(side, functools.partial(json_file, path=path), read)
            if why:
                notes += ["", left_out(why)]

    def rows(spec: list[tuple[str, Path, str]]) -> list[tuple[str, Any, Any]]:
        return [(name, *(lookup(m[f], key) for m in metrics.values())) for name, f, key in spec]

    params = params_table(base)
    found = pictures(readers)
    head = _run("git", "rev-parse", "--short", "HEAD")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"## Pipeline report: {literal(base, cell=False)} ({commit}) → this branch ({head})",
        "",
        metrics_table(rows(HEADLINE)),
        *notes,
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
        *draw_pictures(found, args.out),
    ]
    write_text_atomic(_out(args.out, "report.md"), "\n".join(lines) + "\n")
    print(f"report: wrote {args.out / 'report.md'}")
