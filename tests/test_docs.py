"""Docs that cannot go stale: the tables that restate the project's own sources are
generated from them (`mnist-pipeline docs`: the README's params table from the params
schema and params.yaml, its stage table from dvc.yaml), and checked here by generating
them again; every path, command and link in the README, CONTRIBUTING.md and docs/
exists; the README's headline figures, the per-seed tables and the robustness table are
the ones in reports/ and bench/results/ (the other figures name the file they come from).

Nothing here trains or runs DVC: commands are checked with the parsers of `dvc` and
`mnist-pipeline` themselves, without running them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import json
import re
import shlex
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from mnist_pipeline import cli, tables
from mnist_pipeline.params import read_params_file
from mnist_pipeline.presets import settings
from mnist_pipeline.stage import StageError

from .helpers import PROJECT_ROOT, run_command

README = PROJECT_ROOT / "README.md"
PAGES = [README, PROJECT_ROOT / "CONTRIBUTING.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
PAGE_IDS = [str(page.relative_to(PROJECT_ROOT)) for page in PAGES]
DVC_YAML = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
STAGES: dict[str, dict] = DVC_YAML["stages"]
RESULTS = PROJECT_ROOT / "bench" / "results"
DEFAULTS = dict(settings(read_params_file(PROJECT_ROOT / "params.yaml")))


# --- Reading Markdown ------------------------------------------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def prose(text: str) -> str:
    """The Markdown without its fenced code blocks."""
    return FENCE.sub("", text)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced code block."""
    return FENCE.findall(text)


def inline_code(text: str) -> list[str]:
    """Each inline code span, its line breaks as spaces."""
    return [flat(code).strip() for code in re.findall(r"`([^`]+)`", prose(text))]


def flat(text: str) -> str:
    """The text with every run of whitespace one space, so that a sentence matches
    however it is wrapped."""
    return re.sub(r"\s+", " ", text)


def table_after(text: str, marker: str) -> list[str]:
    """The body rows (as written, spaces collapsed) of the first table after `marker`."""
    assert marker in text, f"the page no longer says {marker!r}"
    rest = text[text.index(marker) :]
    rows = list(itertools.dropwhile(lambda line: not line.startswith("|"), rest.splitlines()))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), rows))
    return [flat(row.strip()) for row in rows[2:]]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", prose(page.read_text()), re.MULTILINE):
        base = slug(heading)
        name = base
        for number in itertools.count(1):  # GitHub numbers repeated headings
            if name not in found:
                break
            name = f"{base}-{number}"
        found.add(name)
    return found


# --- (a) The generated tables are what their sources give ------------------------------


@pytest.mark.parametrize(
    ("file", "name", "generate"),
    [(file, name, generate) for file, name, _, generate in tables.TABLES],
    ids=[f"{file}:{name}" for file, name, *_ in tables.TABLES],
)
def test_each_generated_table_is_what_its_sources_give(file, name, generate, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    (written,) = re.findall(
        rf"^<!-- {name} table: .*?-->\n\n(.*?)\n\n<!-- end {name} table -->$",
        file.read_text(),
        re.MULTILINE | re.DOTALL,
    )
    assert written == generate(), f"{file}'s {name} table is stale: run mnist-pipeline docs"


def test_mnist_pipeline_docs_finds_a_stale_table_in_one_line_and_rewrites_it(tmp_path):
    for name in ("README.md", "dvc.yaml", "params.yaml", "stages"):
        copy = shutil.copytree if (PROJECT_ROOT / name).is_dir() else shutil.copy
        copy(PROJECT_ROOT / name, tmp_path / name)
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text().replace("| passes over the training images |", "| |"))

    checked = run_command(tmp_path, "docs", "--check")
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [
        "mnist-pipeline docs: error: README.md: stale params table (not what its sources "
        "give); run mnist-pipeline docs"
    ]
    assert run_command(tmp_path, "docs").returncode == 0
    assert readme.read_text() == README.read_text()
    assert run_command(tmp_path, "docs", "--check").returncode == 0


def test_a_key_without_a_description_stops_the_generator():
    class Section(BaseModel):
        described: int = Field(ge=0, description="a count")
        bare: int = Field(ge=0)

    with pytest.raises(StageError, match=r"^bare has no description; give its Field"):
        tables.param_rows(Section)


# --- (b) What the docs name exists ------------------------------------------------------


def outputs(stage: dict) -> list[str]:
    """A stage's outs, metrics and plots, as paths."""
    paths = []
    for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
        paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


ALL_OUTPUTS = [path for stage in STAGES.values() for path in outputs(stage)]


def under(path: str, folders: list[str]) -> bool:
    path = path.rstrip("/")
    return any(path == folder or path.startswith(f"{folder}/") for folder in folders)


def ignored_by_git() -> list[str]:
    """The plain paths (no wildcards) the project's .gitignore files name: made by commands
    (dvc_plots/, .dvc/cache), never committed."""
    paths = []
    for pattern in (".gitignore", "*/.gitignore", "*/*/.gitignore"):
        for file in PROJECT_ROOT.glob(pattern):
            folder = file.parent.relative_to(PROJECT_ROOT)
            for line in file.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#") and not set(line) & set("*?[!"):
                    paths.append(str(folder / line.strip("/")))
    return paths


def expansions(path: str) -> list[str]:
    """`a/{b,c}.npy` -> a/b.npy, a/c.npy; `<placeholder>` -> `*`."""
    path = re.sub(r"<[^>]+>", "*", path)
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    return [
        expanded
        for choice in match[1].split(",")
        for expanded in expansions(path[: match.start()] + choice + path[match.end() :])
    ]


def path_problem(path: str) -> str | None:
    """Why `path` (relative to the project root) names nothing the project has or makes;
    None if it does."""
    for expanded in expansions(path):
        if any(char in expanded for char in "*?"):
            folder = expanded[: expanded.find("*")].rpartition("/")[0]
            if under(folder, ALL_OUTPUTS):
                continue
            found = [p for p in PROJECT_ROOT.glob(expanded.rstrip("/")) if ".venv" not in p.parts]
            if not found:
                return f"{path}: matches nothing"
        elif not (
            (PROJECT_ROOT / expanded).exists()
            or under(expanded, ALL_OUTPUTS)
            or under(expanded, ignored_by_git())
        ):
            return f"{path}: no such file, and no stage in dvc.yaml writes it"
    return None


PATH_LIKE = re.compile(r"[\w.{}<>*-]+(/[\w.{},<>*-]*)*")
FILE_SUFFIXES = {".py", ".yaml", ".yml", ".toml", ".lock", ".md", ".json", ".jsonl", ".txt"}
NOT_PATHS = ("~", "/", "../", "http:", "https:", "s3:", "gs:", "ssh:", "refs/")


def named_paths(page: Path) -> list[str]:
    """The paths a page names in inline code: anything with a '/' in it, or a file name
    with a suffix the project's own files have; not home-relative, absolute or URL ones."""
    paths = []
    for code in inline_code(page.read_text()):
        if not PATH_LIKE.fullmatch(code) or code.startswith(NOT_PATHS) or "@" in code:
            continue
        if code.startswith(".") and "/" not in code:
            continue  # a suffix (`.keras`) or a staging name (`.raw.tmp.<random>`)
        if "/" in code or (Path(code).suffix in FILE_SUFFIXES and "{" not in code):
            paths.append(code)
    return paths


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_path_a_page_names_exists_or_is_made_by_a_stage(page):
    problems = [problem for path in named_paths(page) if (problem := path_problem(path))]
    assert not problems, f"{page.name}:\n" + "\n".join(problems)


def commands(page: Path) -> list[tuple[str, bool]]:
    """(command line, whether it is whole: from a code block, not a phrase in prose)."""
    found = []
    for language, body in code_blocks(page.read_text()):
        if language == "python":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if language in ("bash", "sh"):
                found.append((line.removeprefix("$ "), True))
            elif line.startswith("$ "):
                found.append((line[2:], True))
    for code in inline_code(page.read_text()):
        if code.split(" ")[0] in CHECKERS and " " in code:
            found.append((code, False))
    return [
        (part.strip(), whole)
        for line, whole in found
        for part in re.split(r"\s(?:&&|\|\||\||;)\s", line)
        if part.strip() and not part.strip().startswith("#")
    ]


def words(line: str) -> list[str]:
    """A command line's arguments, without comments, redirections or '...'."""
    args = shlex.split(line, comments=True)
    args = list(itertools.takewhile(lambda arg: arg not in (">", ">>", "2>"), args))
    return [arg for arg in args if arg != "..."]


def dvc_parser() -> argparse.ArgumentParser:
    from dvc.cli.parser import get_main_parser

    return get_main_parser()


def dvc_words_exist(args: list[str]) -> str | None:
    """For a phrase like `dvc exp pull --no-cache`: each subcommand and option exists."""
    parser = dvc_parser()
    for arg in args:
        if arg.startswith("-"):
            if arg.split("=")[0] not in parser._option_string_actions:
                return f"no option {arg} there"
            continue
        subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subcommands:
            return None  # an argument of a command
        if arg not in subcommands[0].choices:
            return f"no subcommand {arg!r}"
        parser = subcommands[0].choices[arg]
    return None


def quietly_parsed(parse: Callable[[], Any]) -> Any:
    """parse()'s result, or None where the parser refused (its message kept out of sight)."""
    from dvc.cli import DvcParserError

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parse()
        except (DvcParserError, SystemExit):
            return None


def set_params_problem(settings: list[str]) -> str | None:
    unknown = [s for s in settings if s.split("=")[0] not in DEFAULTS]
    return f"-S of keys params.yaml does not have: {unknown}" if unknown else None


def check_dvc(args: list[str], whole: bool) -> str | None:
    from dvc.cli import parse_args

    parsed = quietly_parsed(lambda: parse_args(args[1:]))
    if parsed is None:
        if whole:
            return "dvc refuses this command line"
        return dvc_words_exist(args[1:])
    targets = [t for t in getattr(parsed, "targets", None) or [] if "<" not in t]
    if args[1] == "repro" and not set(targets) <= set(STAGES):
        return f"no stage {sorted(set(targets) - set(STAGES))} in dvc.yaml"
    return set_params_problem(getattr(parsed, "set_param", None) or [])


def check_mnist_pipeline(args: list[str], whole: bool) -> str | None:
    if len(args) < 2 or args[1] not in cli.COMMANDS:
        return f"no command {args[1:2]}; mnist-pipeline has {', '.join(cli.COMMANDS)}"
    parsed = quietly_parsed(lambda: cli.parser(args[1]).parse_args(args[1:]))
    if parsed is None:
        return "mnist-pipeline refuses this command line"
    if args[1] == "preset":
        if problem := path_problem(str(parsed.preset)):
            return problem
        return check_dvc(["dvc", "exp", "run", *parsed.options], whole)
    return None


def check_python(args: list[str], whole: bool) -> str | None:
    if len(args) < 2 or args[1] == "-c":
        return None
    if args[1] == "-m":
        return None if importlib.util.find_spec(args[2]) else f"no module {args[2]}"
    return path_problem(args[1])


def check_pytest(args: list[str], whole: bool) -> str | None:
    files = [arg for arg in args[1:] if arg.endswith(".py") or arg.startswith("tests/")]
    return next((problem for path in files if (problem := path_problem(path))), None)


CHECKERS = {
    "dvc": check_dvc,
    "mnist-pipeline": check_mnist_pipeline,
    "python": check_python,
    "python3": check_python,
    "pytest": check_pytest,
}


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_command_a_page_shows_exists(page):
    problems = []
    for line, whole in commands(page):
        args = words(line)
        check = CHECKERS.get(args[0]) if args else None
        if check and (problem := check(args, whole)):
            problems.append(f"{line}: {problem}")
    assert not problems, f"{page.name}:\n" + "\n".join(problems)


def test_the_readme_opens_with_the_install_and_test_commands_ci_runs():
    ci_lines = [
        [arg for arg in shlex.split(line, comments=True) if arg != "--quiet"]
        for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    ]
    install, test = ["pip", "install", "-e", ".[dev]"], ["pytest"]
    assert install in ci_lines and test in ci_lines, ".ci/run no longer runs these"
    _, first_block = code_blocks(README.read_text())[0]
    opening = [shlex.split(line, comments=True) for line in first_block.splitlines()]
    assert opening == [[*install, "&&", "dvc", "repro"], [*install, "&&", *test]]


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_link_a_page_makes_resolves_with_its_anchor(page):
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(linked):
            problems.append(f"{target}: no heading with that anchor in {linked.name}")
    assert not problems, f"{page.name}:\n" + "\n".join(problems)


# --- (c) The figures the docs quote are the ones in the files ---------------------------
# The README's headline figures are checked here, each against its file; the per-seed and
# robustness tables are made from their files. Every other figure names the file it comes
# from, where it can be looked up.


def results(path: str) -> Any:
    return json.loads((PROJECT_ROOT / path).read_text())


def variance(preset: str) -> dict:
    return results(f"bench/results/variance-{preset}.json")


def f4(value: float) -> str:
    return f"{value:.4f}"


def f1(value: float) -> str:
    return f"{value:.1f}"


def headline_figures() -> list[tuple[str, list[str]]]:
    """The README's headline figures: (the words around them, {} for each figure; the
    figures as their files give them)."""
    test = results("reports/metrics.json")["test"]
    default, fast, accurate = variance("default"), variance("fast"), variance("accurate")
    robust = results("bench/results/robustness-robust.json")["robustness"]
    robustness = results("reports/robustness.json")["robustness"]
    serve = results("bench/results/serve.json")
    onnx = serve["onnx"]

    def spread(summary: dict) -> list[str]:
        return [f4(summary["test_accuracy"]["mean"]), f4(summary["test_accuracy"]["sd"])]

    def seeds(summary: dict) -> list[str]:
        return [
            str(min(r["seed"] for r in summary["runs"])),
            str(max(r["seed"] for r in summary["runs"])),
        ]

    def seconds(summary: dict, scale: float = 1) -> list[str]:
        times = [run["training_s"] / scale for run in summary["runs"]]
        return [f1(min(times)), f1(max(times))]

    def rates(figures: dict) -> list[str]:
        return [str(run["predictions_per_s"]) for run in figures["load"]]

    return [
        (
            "**test accuracy {}** (loss {}) with the committed seed and **{} ± {}** over {} seeds",
            [f4(test["accuracy"]), f4(test["loss"]), *spread(default), str(len(default["runs"]))],
        ),
        (
            "speed (**{}** after {} to {} s of training)",
            [f4(fast["test_accuracy"]["mean"]), *seconds(fast)],
        ),
        (
            "accuracy (**{}**, Chris Deotte's single CNN on augmented digits, {} to {} min of training)",
            [f4(accurate["test_accuracy"]["mean"]), *seconds(accurate, 60)],
        ),
        (
            "mean accuracy **{}** for the default model, **{}** for the robust preset",
            [f4(robustness["mean"]), f4(robust["mean"])],
        ),
        (
            "| default model, committed seed {} | test accuracy **{}**, loss {} |",
            [str(DEFAULTS["seed"]), f4(test["accuracy"]), f4(test["loss"])],
        ),
        (
            "| default model, seeds {} to {} | test accuracy **{} ± {}** (mean ± sd) |",
            [*seeds(default), *spread(default)],
        ),
        (
            "| fast preset, seeds {} to {} | test accuracy **{} ± {}**, {} to {} s of training |",
            [*seeds(fast), *spread(fast), *seconds(fast)],
        ),
        (
            "| accurate preset, seeds {} to {} | test accuracy **{} ± {}**, {} to {} s of training |",
            [*seeds(accurate), *spread(accurate), *seconds(accurate)],
        ),
        (
            "| robustness suite, default model and robust preset | mean accuracy **{}** and **{}**, worst set {} and {} |",
            [
                f4(robustness["mean"]),
                f4(robust["mean"]),
                f4(robustness["worst"]),
                f4(robust["worst"]),
            ],
        ),
        (
            "| `mnist-pipeline serve`, one digit a request | p50 **{} ms**, p99 {} ms |",
            [str(serve["latency_one_digit"][key]) for key in ("p50_ms", "p99_ms")],
        ),
        (
            "| `mnist-pipeline serve`, {} clients at once | **{} and {} predictions/s**, {} failed |",
            [
                str(serve["load"][0]["clients"]),
                *rates(serve),
                str(sum(r["failed"] for r in serve["load"])),
            ],
        ),
        (
            "| `mnist-pipeline serve --runtime onnx` | p50 **{} ms**; {} and {} predictions/s with 16 clients; {} MiB |",
            [
                str(onnx["latency_one_digit"]["p50_ms"]),
                *rates(onnx),
                str(list(onnx["server_rss_mib"].values())[-1]),
            ],
        ),
    ]


FIGURE = r"(-?\d[\d,]*(?:\.\d+)?)"


HEADLINES = headline_figures()


@pytest.mark.parametrize(
    ("words", "figures"), HEADLINES, ids=[flat(words)[:40] for words, _ in HEADLINES]
)
def test_each_headline_figure_of_the_readme_is_the_one_in_its_file(words, figures):
    text = flat(README.read_text())
    pattern = FIGURE.join(re.escape(part) for part in words.split("{}"))
    found = re.findall(pattern, text)
    assert found, f"the README no longer says: {words.format(*figures)}"
    for quoted in found:
        quoted = list(quoted) if isinstance(quoted, tuple) else [quoted]
        assert quoted == figures, f"should be: {words.format(*figures)}"


def seed_row(run: dict) -> str:
    """A row of docs/benchmarks.md's per-seed tables."""
    epochs = run["epoch_s"]
    return (
        f"| {run['seed']} | {f4(run['test_accuracy'])} | {f4(run['test_loss'])} | "
        f"{f1(run['training_s'])} | first {f1(epochs[0])}, then "
        f"{f1(statistics.median(epochs[1:]))} median |"
    )


def summary_row(summary: dict) -> str:
    accuracy, training = summary["test_accuracy"], summary["training_s"]
    return (
        f"| **mean ± sd** | **{f4(accuracy['mean'])} ± {f4(accuracy['sd'])}** | | "
        f"median {f1(training['median'])}, max {f1(training['max'])} | |"
    )


@pytest.mark.parametrize("preset", ["default", "fast", "accurate"])
def test_the_per_seed_tables_in_the_benchmarks_are_the_results_files(preset):
    summary = variance(preset)
    text = (PROJECT_ROOT / "docs" / "benchmarks.md").read_text()
    rows = table_after(text, f"From `bench/results/variance-{preset}.json`:")
    expected = [seed_row(run) for run in summary["runs"]] + [summary_row(summary)]
    assert rows == expected, "the table's rows should be:\n" + "\n".join(expected)


def numbers_in_files() -> set[str]:
    """Every number in reports/metrics.json and bench/results/, to 4 decimals."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.add(f4(value))

    walk(json.loads((PROJECT_ROOT / "reports" / "metrics.json").read_text()))
    for file in sorted(RESULTS.iterdir()):
        text = file.read_text()
        if file.suffix == ".json":
            walk(json.loads(text))
        elif file.suffix == ".jsonl":
            for line in text.splitlines():
                walk(json.loads(line))
        else:
            found.update(f4(float(number)) for number in re.findall(r"\d+\.\d+", text))
    return found


def test_every_four_decimal_figure_in_the_readme_is_in_a_results_file():
    quoted = set(re.findall(r"(?<![\d.])\d\.\d{4}(?![\d])", README.read_text()))
    assert quoted, "the README quotes no accuracy at all"
    unknown = sorted(quoted - numbers_in_files())
    assert not unknown, f"{unknown}: in no results file, nor in reports/metrics.json"


def test_the_robustness_table_in_the_benchmarks_is_the_one_its_results_files_make():
    from bench.robustness import table

    text = (PROJECT_ROOT / "docs" / "benchmarks.md").read_text()
    assert table() in text, "regenerate it with: python bench/robustness.py table"
