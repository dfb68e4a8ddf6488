"""`mnist-pipeline report`, run as CI runs it: in a git clone where main holds a trained
pipeline and a branch changed a param and reran it. The report shows main's metrics and
the branch's side by side, the changed param, per-class rows collapsed, and pictures that
are real PNG files beside it, the robustness suite's chart among them; a base whose
outputs are in no DVC cache, or from before the robustness suite, still gets a report,
with the branch's pictures alone; a user's mistake is one line.

The branch is hostile: whatever it puts in its params, metrics and base's name shows as
literal text once rendered as GitHub renders it; its robustness suite's set names show
only in the chart, as plain text cut short; its broken or linked files are one line each;
its picture is drawn again, not copied; and CI's comment job refuses a report that names a
file it did not write, or a folder holding one.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt
from PIL import Image, PngImagePlugin

from mnist_pipeline.report import OUT_FILES, draw_robustness, robustness
from mnist_pipeline.stage import StageError, printable

from .helpers import PROJECT_ROOT, assert_one_line, git, run_command, run_dvc, set_params

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROBUSTNESS = Path("reports/robustness.json")
ROBUSTNESS_ROWS = {  # the headline's rows: the file's keys under "robustness"
    "robustness: mean accuracy (all sets)": "mean",
    "robustness: worst set's accuracy": "worst",
    "robustness: clean accuracy (its sample)": "clean",
}
BAR_COLORS = {"base": (31, 119, 180), "branch": (255, 127, 14)}  # the chart's, in RGB


def report(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run_command(root, "report", *args)


def report_against_new_base(root: Path, base: str, message: str) -> str:
    """Commit what is staged on the branch `base` (checked out from origin/main), go
    back to the pull request's branch, and report against `base`: the report's text."""
    git(root, "commit", "-qm", message)
    git(root, "checkout", "-q", "one-epoch")
    result = report(root, "--base", base, "--out", "out")
    assert result.returncode == 0, result.stderr
    return (root / "out" / "report.md").read_text()


def tables(markdown: str) -> list[dict[str, list[str]]]:
    """Each markdown table of `markdown`, in order: {first cell: the other cells} by row."""
    found, rows = [], None
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if rows is None:
                rows = {}
            elif not set(line) <= set("|-: "):
                rows[cells[0]] = cells[1:]
        elif rows is not None:
            found.append(rows)
            rows = None
    return found


@pytest.fixture(scope="module")
def branch(trained_project, tmp_path_factory) -> Path:
    """A clone of the trained project where origin/main is the trained commit, on a branch
    that changed train.epochs (2 to 1), reran the pipeline and committed. The trained
    project's build ran one epoch first: its run-cache gives the stages' outputs back."""
    root = tmp_path_factory.mktemp("report") / "project"
    shutil.copytree(trained_project, root, symlinks=True)
    git(root, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(root, "checkout", "-qb", "one-epoch")
    set_params(root, {"train": {"epochs": 1}})
    run_dvc(root, "repro")
    git(root, "commit", "-qam", "one epoch")
    return root


@pytest.fixture(scope="module")
def made(branch) -> tuple[Path, str]:
    """The report folder and report.md's text, made as CI makes them."""
    result = report(branch, "--base", "origin/main", "--out", "report")
    assert result.returncode == 0, result.stderr
    return branch / "report", (branch / "report" / "report.md").read_text()


def number(cell: str) -> float:
    assert re.fullmatch(r"[+-]?\d+(\.\d+)?", cell), cell
    return float(cell)


@pytest.mark.slow
def test_the_headline_shows_mains_metrics_beside_the_branchs(made, trained_project):
    _, text = made
    assert text.startswith("## ")
    headline = tables(text)[0]
    main = {
        "test": json.loads((trained_project / "reports/metrics.json").read_text())["test"],
        **json.loads((trained_project / "dvclive/metrics.json").read_text()),
    }
    for row, (split, metric) in {
        "test accuracy": ("test", "accuracy"),
        "test loss": ("test", "loss"),
        "training accuracy (last epoch)": ("train", "accuracy"),
        "training loss (last epoch)": ("train", "loss"),
        "validation accuracy (last epoch)": ("val", "accuracy"),
        "validation loss (last epoch)": ("val", "loss"),
    }.items():
        base, new, change = map(number, headline[row])
        assert base == pytest.approx(main[split][metric], abs=1e-4), row
        assert change == pytest.approx(new - base, abs=2e-4), row
    assert number(headline["test accuracy"][2]) != 0  # the branch trained another model


def bars(png: Path) -> set[str]:
    """The sides whose bars the robustness chart `png` shows: their colour fills pixels."""
    with Image.open(png) as image:
        counts = {color: n for n, color in image.convert("RGB").getcolors(1 << 24)}
    return {side for side, color in BAR_COLORS.items() if counts.get(color, 0) >= 100}


def suite(root: Path) -> dict:
    return json.loads((root / ROBUSTNESS).read_text())["robustness"]


@pytest.mark.slow
def test_the_headline_shows_the_robustness_suite_base_beside_branch(made, branch, trained_project):
    folder, text = made
    headline = tables(text)[0]
    main, new = suite(trained_project), suite(branch)
    for row, key in ROBUSTNESS_ROWS.items():
        old, shown, change = map(number, headline[row])
        assert (old, shown) == pytest.approx((main[key], new[key]), abs=1e-4), row
        assert change == pytest.approx(new[key] - main[key], abs=2e-4), row
    chart = text.split("### Accuracy on the robustness suite\n\n")[1]
    assert chart.startswith("![accuracy on the robustness suite](robustness.png)")
    assert bars(folder / "robustness.png") == {"base", "branch"}


@pytest.mark.slow
def test_the_changed_param_is_listed(made):
    _, text = made
    params = text.split("### Params changed")[1].split("<details>")[0]
    assert tables(params) == [{"`train.epochs`": ["2", "1"]}]


@pytest.mark.slow
def test_the_per_class_rows_are_collapsed(made):
    _, text = made
    before, details = text.split("<details><summary>", 1)
    _, inside = details.split("</summary>\n\n", 1)  # blank line: GitHub renders the table
    inside = inside.split("</details>")[0]
    (rows,) = tables(inside)
    assert len([row for row in rows if row.startswith("digit ")]) == 40
    assert {row for row in rows if row.startswith("macro")} == {
        f"macro average {metric}" for metric in ("precision", "recall", "f1")
    }
    assert rows["digit 7 support"][:2] == ["1028", "1028"]  # the whole test set, both sides
    assert "digit 0 precision" not in before


@pytest.mark.slow
def test_every_picture_is_a_png_beside_the_report_base_and_branch(made):
    folder, text = made
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert set(pictures) == {
        "curves.png",
        "confusion.png",
        "misclassified-base.png",
        "misclassified-branch.png",
        "robustness.png",
    }
    for name in pictures:
        assert (folder / name).read_bytes().startswith(PNG_SIGNATURE), name
        with Image.open(folder / name) as image:
            image.verify()
    assert "alone" not in text


@pytest.mark.slow
def test_base_outputs_in_no_cache_leave_the_branchs_pictures_alone(branch, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(branch, root, symlinks=True)
    run_dvc(root, "gc", "--workspace", "--force")  # only the branch's outputs stay cached
    result = report(root, "--base", "origin/main", "--out", "out")
    assert result.returncode == 0, result.stderr
    text = (root / "out" / "report.md").read_text()
    # the curves, the confusion matrix and the misclassified digits: all from DVC's cache
    assert text.count("_The base's is in no DVC cache or remote here: the branch's alone._") == 3
    assert "misclassified-base.png" not in text
    assert not (root / "out" / "misclassified-base.png").exists()
    assert (root / "out" / "confusion.png").read_bytes().startswith(PNG_SIGNATURE)
    assert re.search(r"\| test accuracy \| \d\.\d{4} \|", text)  # main's metrics: from git
    assert bars(root / "out" / "robustness.png") == {"base", "branch"}  # from git, too


def test_the_robustness_chart_has_a_row_per_set_of_either_side(tmp_path):
    chart = tmp_path / "robustness.png"
    base = {"shot_noise": 0.9, "fog": 0.8, "dropped": 0.5}
    branch = {"shot_noise": 0.95, "added": 0.4, "fog": 0.85}
    drawn = draw_robustness({"base": base, "branch": branch}, chart)
    assert drawn == ["shot_noise", "added", "fog", "dropped"]  # the branch's, then the base's
    assert bars(chart) == {"base", "branch"}
    assert draw_robustness({"branch": branch}, chart) == list(branch)
    assert bars(chart) == {"branch"}


# Set names that mathtext would parse (and fail on, or take long over) if it were on, and
# ones far too long or spanning lines.
HOSTILE_SET_NAMES = [
    r"$\frac{a}$",
    r"$x^{$",
    "$" + r"\sqrt{" * 3000 + "x" + "}" * 3000 + "$",
    "a" * 10_000,
    "line\nbreak",
    "[x](https://evil.example)",
]


def test_a_set_name_is_drawn_as_plain_text_cut_short(tmp_path):
    chart = tmp_path / "robustness.png"
    drawn = draw_robustness({"branch": dict.fromkeys(HOSTILE_SET_NAMES, 0.5)}, chart)
    assert drawn == [printable(name, 40) for name in HOSTILE_SET_NAMES]
    assert drawn[0] == r"$\frac{a}$" and drawn[4] == "line\\nbreak"
    with Image.open(chart) as image:
        image.verify()


def suite_file(accuracy: object, **figures: object) -> str:
    return json.dumps({"robustness": {**figures, "accuracy": accuracy}})


WRONG_SUITE_FILES = {  # the branch's reports/robustness.json: what it says
    "accuracy 2.0": (
        suite_file({"fog": 0.5, "shot_noise": 2.0}),
        "reports/robustness.json: set 'shot_noise' has accuracy '2.0', not a number from 0 to 1",
    ),
    "accuracy below 0": (suite_file({"fog": -0.1}), "set 'fog' has accuracy '-0.1', not a"),
    "accuracy NaN": ('{"robustness": {"accuracy": {"fog": NaN}}}', "has accuracy 'NaN', not a"),
    "accuracy as text": (suite_file({"fog": "0.9"}), "has accuracy '\"0.9\"', not a number"),
    "accuracy true": (suite_file({"fog": True}), "set 'fog' has accuracy 'true', not a number"),
    "name over lines": (suite_file({"a\nb": None}), "set 'a\\\\nb' has accuracy 'null'"),
    "accuracy a list": (
        suite_file([0.9]),
        "reports/robustness.json has no robustness.accuracy object of the accuracy per set",
    ),
    "no sets": (suite_file({}), "has no robustness.accuracy object"),
    "no accuracy": ('{"robustness": {"mean": 0.9}}', "has no robustness.accuracy object"),
    "101 sets": (
        suite_file({f"set {i}": 0.9 for i in range(101)}),
        "reports/robustness.json has 101 sets: the report shows 100 at most",
    ),
    "not JSON": ('{"robustness": ', "reports/robustness.json is not JSON: "),
}


@pytest.mark.parametrize(
    ("content", "message"), WRONG_SUITE_FILES.values(), ids=list(WRONG_SUITE_FILES)
)
def test_a_wrong_robustness_file_is_one_line(content, message):
    with pytest.raises(StageError) as raised:
        robustness(lambda path: content.encode() if path == ROBUSTNESS else None)
    assert message in str(raised.value)
    assert_one_line(str(raised.value))


def test_the_robustness_file_s_sets_are_read_in_its_order():
    sets = {"zigzag": 1, "fog": 0.25, "a\nb": 0.0}
    found = robustness(lambda path: suite_file(sets, mean=0.4).encode())
    assert list(found.items()) == [("zigzag", 1.0), ("fog", 0.25), ("a\nb", 0.0)]
    assert robustness(lambda path: None) is None  # a base from before the suite


@pytest.fixture
def bare_project(tmp_path) -> Path:
    """A git repository with a dvc.yaml and one commit, and nothing run."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "empty")
    return tmp_path


@pytest.mark.parametrize(
    ("base", "where", "message"),
    [
        ("no-such-branch", ".", "unknown git revision 'no-such-branch' (fetch it first?)"),
        ("-h", ".", "unknown git revision '-h'"),
        ("HEAD", ".", "reports/metrics.json is missing: run `dvc repro` first"),
        ("HEAD", "outside", "not in a git repository"),
    ],
)
def test_a_mistake_is_one_line(bare_project, tmp_path_factory, base, where, message):
    root = bare_project if where == "." else tmp_path_factory.mktemp("not-a-repository")
    result = report(root, f"--base={base}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("mnist-pipeline report: error: ")
    assert message in result.stderr
    assert not (root / "report").exists()


# Strings a branch can put in its params.yaml, its metrics or a branch name, each of which
# would be a link, a picture, a heading, HTML, a mention, a code span, a table cell or a
# line of its own if the report pasted it into the markdown.
HOSTILE = [
    "[x](https://evil.example)",
    "![x](/etc/passwd)",
    "[ref]: /etc/passwd",
    "<https://evil.example>",
    "www.evil.example",
    "# heading",
    "@someone",
    "<img src=x>",
    "<b>bold</b>",
    "*bold* _em_",
    "`tick` and ``two``",
    "` lead",
    "a | b",
    "a\\|b",
    "x\\",
    "line\nbreak",
    " spaced ",
]
HOSTILE_BASE = "evil`<b>|@someone#x"  # a name git allows for a branch
# What the report's own markdown makes, and no more: branch strings add none of these.
REPORT_TAGS = {"h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "em", "code"}
REPORT_TAGS |= {"details", "summary", "img"}
PICTURES = [name for name in OUT_FILES if name.endswith(".png")]


class Rendered(HTMLParser):
    """The HTML of markdown rendered as GitHub does (markdown-it-py's GFM-like preset:
    tables, raw HTML, bare URLs linked): its tags, the text of each code span, and the
    text outside them."""

    def __init__(self, markdown: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.code: list[str] = []
        self.text: list[str] = []
        self._in_code = False
        self.feed(MarkdownIt("gfm-like").render(markdown))
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "code":
            self._in_code = True
            self.code.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_code = self._in_code and tag != "code"

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.code[-1] += data
        else:
            self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.tags.append(("!--", {}))


# The branch's robustness suite: HOSTILE strings and more as its sets' names, each marked.
SET_MARK = "qqzx"
HOSTILE_SETS = list(dict.fromkeys(f"{SET_MARK}{text}" for text in HOSTILE + HOSTILE_SET_NAMES))


@pytest.fixture(scope="module")
def hostile(branch, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the branch that put HOSTILE strings in its params.yaml (as names and
    values), its metrics (as values) and its robustness suite (as sets' names, and a
    string for its mean), and a tEXt chunk in its misclassified digits' picture; its
    report against a base named HOSTILE_BASE: the folder and report.md."""
    root = tmp_path_factory.mktemp("hostile") / "project"
    shutil.copytree(branch, root, symlinks=True)
    with (root / "params.yaml").open("a") as params:
        params.write(yaml.safe_dump({text: text for text in HOSTILE}, allow_unicode=True))
    metrics_file = root / "reports" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    for i, text in enumerate(HOSTILE):  # digit 0 precision, digit 0 recall, digit 1 ...
        metrics["test"]["per_class"][str(i // 2)]["precision" if i % 2 else "recall"] = text
    metrics_file.write_text(json.dumps(metrics))
    sets = {name: i / len(HOSTILE_SETS) for i, name in enumerate(HOSTILE_SETS)}
    (root / ROBUSTNESS).write_text(suite_file(sets, mean=HOSTILE[0], worst=0.0, clean=1))
    picture = root / "reports" / "figures" / "misclassified.png"
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Comment", "[x](https://evil.example)")
    with Image.open(picture) as image:
        image.save(picture, pnginfo=chunks)
    git(root, "branch", HOSTILE_BASE, "origin/main")
    shutil.rmtree(root / "report", ignore_errors=True)  # `made`'s, if it came first
    result = report(root, "--base", HOSTILE_BASE, "--out", "report")
    assert result.returncode == 0, result.stderr
    return root / "report", (root / "report" / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("text", HOSTILE)
def test_a_branch_string_renders_as_literal_text(hostile, text):
    rendered = Rendered(hostile[1])
    assert printable(text, 80) in rendered.code  # a param's name
    assert printable(json.dumps(text), 60) in rendered.code  # its value
    assert printable(text, 40) in rendered.code  # a metric's value


@pytest.mark.slow
def test_branch_strings_add_no_link_picture_heading_or_html(hostile):
    folder, text = hostile
    rendered = Rendered(text)
    assert {tag for tag, _ in rendered.tags} <= REPORT_TAGS
    assert [attrs["src"] for tag, attrs in rendered.tags if tag == "img"] == PICTURES
    assert [tag for tag, _ in rendered.tags].count("h2") == 1
    outside = "".join(rendered.text)
    for word in ("evil", "passwd", "someone", "heading", "bold", "tick", "lead"):
        assert word not in outside, word
    assert printable(HOSTILE_BASE) in rendered.code  # the heading's base
    assert sorted(path.name for path in folder.iterdir()) == sorted(OUT_FILES)


@pytest.mark.slow
def test_the_branchs_set_names_show_only_in_its_chart(hostile, trained_project):
    folder, text = hostile
    assert SET_MARK not in text
    mean = tables(text)[0]["robustness: mean accuracy (all sets)"]
    assert mean[1:] == ["`[x](https://evil.example)`", "-"]  # a string: literal, no change
    assert bars(folder / "robustness.png") == {"base", "branch"}
    rows = len(HOSTILE_SETS) + len(suite(trained_project)["accuracy"])  # the branch's, main's
    with Image.open(folder / "robustness.png") as image:  # 80 dots an inch; names cut short
        assert image.size == (7 * 80, pytest.approx(80 * (1.2 + 0.32 * rows), abs=1))


@pytest.mark.slow
def test_the_branchs_picture_is_drawn_again_not_copied(hostile, branch):
    folder, _ = hostile
    shown = folder / "misclassified-branch.png"
    assert b"evil" not in shown.read_bytes()  # the tEXt chunk stayed behind
    with Image.open(shown) as image, Image.open(branch / MISCLASSIFIED) as source:
        assert image.tobytes() == source.tobytes() and image.size == source.size


MISCLASSIFIED = Path("reports/figures/misclassified.png")
PREDICTIONS = Path("reports/predictions.csv")
VAL_LOSS = Path("dvclive/plots/metrics/val/loss.tsv")


def replace_line(path: Path, number: int, line: str) -> None:
    """Line `number` (from 1) of the text file `path` replaced with `line`, or added as
    that line just after the last (the branch's curves, of one epoch, end at line 2)."""
    lines = path.read_text().splitlines()
    assert number <= len(lines) + 1, (path, number)
    lines[number - 1 : number] = [line]
    path.write_text("\n".join(lines) + "\n")


def link(path: Path, target: Path) -> None:
    """`path` made a symbolic link to `target`."""
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.symlink_to(target)


def picture_behind_a_linked_folder(root: Path) -> None:
    outside = root.parent / "elsewhere"
    shutil.copytree(root / "reports" / "figures", outside)
    link(root / "reports" / "figures", outside)


def huge_picture(root: Path) -> None:
    Image.new("L", (5000, 5000)).save(root / MISCLASSIFIED)  # 25 million pixels, 25 kB


BROKEN: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "label 10",
        lambda root: replace_line(root / PREDICTIONS, 2, "10,3"),
        "reports/predictions.csv line 2: actual '10' is not a digit 0-9",
    ),
    (
        "prediction no integer",
        lambda root: replace_line(root / PREDICTIONS, 3, "7,7.0"),
        "reports/predictions.csv line 3: predicted '7.0' is not a digit 0-9",
    ),
    (
        "row without prediction",
        lambda root: replace_line(root / PREDICTIONS, 4, "7"),
        "reports/predictions.csv line 4: no predicted value (it needs actual and predicted)",
    ),
    (
        "no predicted column",
        lambda root: replace_line(root / PREDICTIONS, 1, "actual,guess"),
        "reports/predictions.csv has no 'predicted' column: it needs actual and predicted",
    ),
    (
        "curve value no number",
        lambda root: replace_line(root / VAL_LOSS, 3, "1\tlow"),
        "dvclive/plots/metrics/val/loss.tsv line 3: loss 'low' is not a finite number",
    ),
    (
        "robustness no JSON",
        lambda root: (root / ROBUSTNESS).write_text("{"),
        "reports/robustness.json is not JSON: ",
    ),
    (
        "robustness accuracy 2.0",
        lambda root: (root / ROBUSTNESS).write_text(suite_file({"fog": 0.5, "rotated": 2.0})),
        "reports/robustness.json: set 'rotated' has accuracy '2.0', not a number from 0 to 1",
    ),
    (
        "metrics no JSON",
        lambda root: (root / "reports/metrics.json").write_text('{"test": '),
        "reports/metrics.json is not JSON: ",
    ),
    (
        "picture a link out",
        lambda root: link(root / MISCLASSIFIED, Path("/etc/passwd")),
        "reports/figures/misclassified.png is a symbolic link: the report reads only regular files",
    ),
    (
        "picture a link in",
        lambda root: link(root / MISCLASSIFIED, Path("samples.png")),
        "reports/figures/misclassified.png is a symbolic link",
    ),
    (
        "picture behind a linked folder",
        picture_behind_a_linked_folder,
        "reports/figures/misclassified.png is outside the project",
    ),
    (
        "picture no PNG",
        lambda root: (root / MISCLASSIFIED).write_text("<svg/>"),
        "reports/figures/misclassified.png is not a PNG file",
    ),
    (
        "picture too large",
        huge_picture,
        "reports/figures/misclassified.png has more pixels than the 16,777,216 the report shows",
    ),
]


@pytest.fixture(scope="module")
def breakable(branch, tmp_path_factory) -> Path:
    """A copy of the branch for the tests that break its outputs, one at a time."""
    root = tmp_path_factory.mktemp("breakable") / "project"
    return shutil.copytree(branch, root, symlinks=True)


@pytest.fixture
def broken(breakable) -> Iterator[Path]:
    """The copy of the branch for this test to break (reports/ and dvclive/ only): put
    back as it was after it, the test's report and whatever it made beside gone."""
    saved = breakable.parent / "saved"
    for name in ("reports", "dvclive"):
        shutil.copytree(breakable / name, saved / name, symlinks=True)
    yield breakable
    for name in ("reports", "dvclive"):
        shutil.rmtree(breakable / name)  # a link in it is removed, not followed
        os.rename(saved / name, breakable / name)
    saved.rmdir()
    shutil.rmtree(breakable / "out", ignore_errors=True)
    shutil.rmtree(breakable.parent / "elsewhere", ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "message"), [(b[1], b[2]) for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_a_broken_or_linked_file_of_the_branch_is_one_line(broken, how, message):
    how(broken)
    result = report(broken, "--base", "origin/main", "--out", "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert_one_line(result.stderr.rstrip("\n"))
    assert result.stderr.startswith(f"mnist-pipeline report: error: {message}"), result.stderr
    assert not (broken / "out").exists()  # all read and checked before any is written


@pytest.mark.slow
def test_a_base_file_that_cannot_be_read_is_left_out_with_a_line(broken):
    git(broken, "checkout", "-qb", "broken-main", "origin/main")
    (broken / "reports" / "metrics.json").write_text("[")
    (broken / ROBUSTNESS).write_text(suite_file({"fog": 1.5}, mean=0.75, worst=0.5, clean=1))
    git(broken, "add", "reports/metrics.json", str(ROBUSTNESS))
    text = report_against_new_base(
        broken, "broken-main", "metrics no JSON, robustness out of range"
    )
    assert "_Left out on the base's side, unreadable: `reports/metrics.json is not JSON: " in text
    headline = tables(text)[0]
    assert headline["test accuracy"][0] == "-" and number(headline["test accuracy"][1]) > 0
    assert number(headline["validation loss (last epoch)"][0]) > 0  # from the other file
    unreadable = "_Left out on the base's side, unreadable: `reports/robustness.json: set 'fog' "
    assert text.count(unreadable) == 1  # the chart's; the rows read the figures beside it
    assert number(headline["robustness: mean accuracy (all sets)"][0]) == 0.75
    assert bars(broken / "out" / "robustness.png") == {"branch"}


@pytest.mark.slow
def test_a_base_from_before_the_robustness_suite_shows_the_branchs_alone(broken):
    git(broken, "checkout", "-qb", "old-main", "origin/main")
    git(broken, "rm", "-q", str(ROBUSTNESS))
    text = report_against_new_base(broken, "old-main", "before the robustness suite")
    headline = tables(text)[0]
    for row, key in ROBUSTNESS_ROWS.items():
        old, new, change = headline[row]
        assert (old, change) == ("-", "-"), row
        assert number(new) == pytest.approx(suite(broken)[key], abs=1e-4), row
    chart = text.split("### Accuracy on the robustness suite\n\n")[1]
    none = "_The base has no reports/robustness.json (it predates the suite): the branch's alone._"
    assert chart.startswith(f"{none}\n\n![accuracy on the robustness suite](robustness.png)")
    assert "Left out" not in text and text.count("the branch's alone") == 1
    assert bars(broken / "out" / "robustness.png") == {"branch"}


def comment_check() -> str:
    """The script of ci.yml's comment job step that checks the report before CML posts it."""
    ci = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    (step,) = [
        step
        for step in ci["jobs"]["comment"]["steps"]
        if step.get("name", "").startswith("Check that the report names no file")
    ]
    return step["run"]


def run_comment_check(folder: Path) -> subprocess.CompletedProcess:
    """The check run as GitHub Actions runs a step's bash script, in `folder`."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", comment_check()],
        cwd=folder,
        capture_output=True,
        text=True,
    )


def test_the_comment_check_knows_the_reports_files():
    (line,) = [line for line in comment_check().splitlines() if line.startswith("PICTURES = ")]
    assert ["report.md", *ast.literal_eval(line.removeprefix("PICTURES = "))] == list(OUT_FILES)


def add_line(line: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        with (folder / "report.md").open("a") as report_md:
            report_md.write(f"\n{line}\n")

    return change


NAMES_ANOTHER_FILE = {  # what a report's folder would hand `cml comment update --publish`
    "picture of another file": add_line("![x](../../../../etc/passwd)"),
    "link to another file": add_line("[notes](notes.txt)"),
    "link across lines": add_line("> [x](\n> /etc/passwd)"),
    "link definition": add_line("[x]\n\n[x]: /etc/passwd"),
    "autolink": add_line("<file:/etc/passwd>"),
    "embedded picture": add_line("![](data:image/png;base64,iVBORw0KGgo=)"),
    "extra file": lambda folder: (folder / "notes.txt").write_text("hi"),
    "hidden file": lambda folder: (folder / ".env").write_text("TOKEN=x"),
    "folder": lambda folder: (folder / "more").mkdir(),
    "picture a link": lambda folder: link(folder / "curves.png", Path("/etc/passwd")),
    "no report.md": lambda folder: (folder / "report.md").unlink(),
}


@pytest.mark.slow
def test_the_comment_check_passes_the_report_as_made(made, tmp_path):
    folder = shutil.copytree(made[0], tmp_path / "artifact")
    result = run_comment_check(folder)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("change", NAMES_ANOTHER_FILE.values(), ids=NAMES_ANOTHER_FILE)
def test_the_comment_check_fails_a_report_naming_another_file(made, tmp_path, change):
    folder = shutil.copytree(made[0], tmp_path / "artifact")
    change(folder)
    result = run_comment_check(folder)
    assert result.returncode == 1
    assert result.stdout.startswith("::error::"), result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_comment_check_fails_closed_on_a_link_shown_as_text(hostile, tmp_path):
    """A param named `[x](https://evil.example)` shows as text, yet the check, which has
    no markdown parser, cannot tell it from a link: no comment, rather than a wrong one."""
    folder = shutil.copytree(hostile[0], tmp_path / "artifact")
    result = run_comment_check(folder)
    assert result.returncode == 1
    assert "report.md links to 'https://evil.example)" in result.stdout
