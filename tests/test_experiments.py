"""Comparing runs: `dvc exp run -S`, `dvc params diff`, `dvc metrics diff`, `dvc exp show`
and `dvc plots show / diff`, for real, in a temporary git repository on a small subset."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import git, run_dvc, stages_run

pytestmark = pytest.mark.slow

PLOT_TITLES = (
    "Loss per epoch",
    "Accuracy per epoch",
    "Test confusion matrix",
    "Accuracy on the robustness suite",
)
IMAGE_PLOTS = (
    "reports/figures/samples.png",
    "reports/figures/misclassified.png",
    "reports/figures/robustness_suite.png",
)
CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)


@pytest.fixture(scope="module")
def experiment(trained_project, tmp_path_factory) -> tuple[Path, str]:
    """The trained project, copied for this module (its committed run is the baseline),
    then an experiment with two params changed, applied to the workspace. Returns the
    project root and the experiment's output. The tests only read it (plots pages are
    written outside it)."""
    root = tmp_path_factory.mktemp("experiment") / "project"
    shutil.copytree(trained_project, root, symlinks=True)
    run = run_dvc(root, "exp", "run", "-S", "train.epochs=3", "-S", "model.dense_units=64")
    return root, run.stdout


def test_exp_run_with_a_train_param_reruns_only_train_and_what_reads_the_model(experiment):
    _, output = experiment
    assert stages_run(output) == ["train", "evaluate", "export", "robustness"]


def test_params_diff_shows_exactly_the_changed_params(experiment):
    root, _ = experiment
    diff = json.loads(run_dvc(root, "params", "diff", "--json").stdout)
    assert diff == {
        "params.yaml": {
            "model.dense_units": {"old": 128, "new": 64, "diff": -64},
            "train.epochs": {"old": 2, "new": 3, "diff": 1},
        }
    }


def test_metrics_diff_shows_the_change_in_test_accuracy_and_loss(experiment):
    root, _ = experiment
    diff = json.loads(run_dvc(root, "metrics", "diff", "--json").stdout)
    old = json.loads(git(root, "show", "HEAD:reports/metrics.json"))["test"]
    new = json.loads((root / "reports/metrics.json").read_text())["test"]
    test_diff = diff["reports/metrics.json"]
    for key in ("accuracy", "loss"):
        entry = test_diff[f"test.{key}"]
        assert (entry["old"], entry["new"]) == (old[key], new[key])
        assert entry["diff"] == pytest.approx(new[key] - old[key])
    assert old["loss"] != new["loss"]
    assert diff["dvclive/metrics.json"]["step"] == {"old": 1, "new": 2, "diff": 1}


def test_exp_show_lists_params_and_training_and_test_metrics_sorted_by_accuracy(experiment):
    root, _ = experiment
    shown = run_dvc(
        root, "exp", "show", "--csv", "--sort-by", "test.accuracy", "--sort-order", "desc"
    ).stdout
    rows = list(csv.DictReader(io.StringIO(shown)))
    columns = set(rows[0])
    assert {"test.accuracy", "test.loss", "train.accuracy", "val.loss"} <= columns
    assert {"train.epochs", "model.dense_units", "seed", "preprocess.max_train"} <= columns
    experiments = [row for row in rows if row["Experiment"]]  # named; baselines are not
    assert len(experiments) == 1
    assert (experiments[0]["train.epochs"], experiments[0]["model.dense_units"]) == ("3", "64")


def plots_page(root: Path, out: Path, *command: str) -> Path:
    """`dvc plots <command> -o out` in the project at `root`; the page it wrote."""
    run_dvc(root, "plots", *command, "-o", str(out))
    return out / "index.html"


def test_plots_show_writes_an_offline_page_with_every_plot(experiment, tmp_path):
    root, _ = experiment
    page = plots_page(root, tmp_path / "plots", "show").read_text()
    for title in PLOT_TITLES:
        assert f'"text": "{title}"' in page or f'"title": "{title}"' in page
    for image in IMAGE_PLOTS:
        assert image in page
    assert not re.search(r"<script[^>]+src=", page)  # nothing loaded from elsewhere
    assert "vegaEmbed" in page and 'var e="5.20.2"' in page  # vega itself is inlined


def test_plots_diff_overlays_the_commit_and_the_workspace(experiment, tmp_path):
    root, _ = experiment
    page = plots_page(root, tmp_path / "plots", "diff", "HEAD").read_text()
    assert '"rev": "HEAD"' in page and '"rev": "workspace"' in page
    assert not re.search(r"<script[^>]+src=", page)


def rendered_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium, offline."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
@pytest.mark.parametrize("command", [("show",), ("diff", "HEAD")])
def test_plots_page_renders_every_chart_in_headless_chromium(experiment, tmp_path, command):
    root, _ = experiment
    page = plots_page(root, tmp_path / "plots", *command)
    dom = rendered_dom(page, tmp_path / "profile")
    # vega-embed draws each chart on a canvas of class "marks"; a failed spec draws none.
    assert len(re.findall(r'<canvas[^>]*class="marks"', dom)) == len(PLOT_TITLES)
    # The image plots: one per revision shown, each a PNG file beside the page.
    images = re.findall(r'<img [^>]*src="(static/[^"]+)"', dom)  # not the inlined JS's text
    assert len(images) == len(IMAGE_PLOTS) * len(command)
    for image in images:
        assert (page.parent / image).read_bytes()[:4] == b"\x89PNG"
