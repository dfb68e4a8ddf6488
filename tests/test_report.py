"""`mnist-pipeline report`, run as CI runs it: in a git clone where main holds a trained
pipeline and a branch changed a param and reran it. The report shows main's metrics and
the branch's side by side, the changed param, per-class rows collapsed, and pictures that
are real PNG files beside it; a base whose outputs are in no DVC cache still gets a
report, with the branch's pictures alone; a user's mistake is one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from .helpers import git, run_command, run_dvc, set_params

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run_command(root, "report", *args)


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
    that changed train.learning_rate, reran the pipeline and committed."""
    root = tmp_path_factory.mktemp("report") / "project"
    shutil.copytree(trained_project, root, symlinks=True)
    git(root, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(root, "checkout", "-qb", "faster-learning")
    set_params(root, {"train": {"learning_rate": 0.002}})
    run_dvc(root, "repro")
    git(root, "commit", "-qam", "learning rate 0.002")
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


@pytest.mark.slow
def test_the_changed_param_is_listed(made):
    _, text = made
    params = text.split("### Params changed")[1].split("<details>")[0]
    assert tables(params) == [{"`train.learning_rate`": ["0.001", "0.002"]}]


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
