"""Docs that cannot go stale: the README's params table is the params schema (every key,
its default from params.yaml, its rule from mnist_pipeline/params.py); its stage table is
dvc.yaml's; every path, command and link in the README, CONTRIBUTING.md and docs/ exists;
and the figures they quote are the ones in reports/metrics.json and bench/results/.

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
import statistics
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mnist_pipeline import cli
from mnist_pipeline.params import SECTIONS, Params, read_params_file

from .helpers import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
PAGES = [README, PROJECT_ROOT / "CONTRIBUTING.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
PAGE_IDS = [str(page.relative_to(PROJECT_ROOT)) for page in PAGES]
DVC_YAML = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
STAGES: dict[str, dict] = DVC_YAML["stages"]
RESULTS = PROJECT_ROOT / "bench" / "results"


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


def tables(text: str) -> Iterator[tuple[list[str], list[list[str]]]]:
    """(header cells, body rows of cells) of each Markdown table."""
    lines = prose(text).splitlines()
    for is_table, group in itertools.groupby(lines, key=lambda line: line.startswith("|")):
        rows = list(group)
        if is_table and len(rows) >= 2:
            cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
            yield cells[0], cells[2:]


def table_with_header(text: str, *header: str) -> list[list[str]]:
    for found, body in tables(text):
        if tuple(found) == header:
            return body
    raise AssertionError(f"no table with the header {' | '.join(header)}")


def table_after(text: str, marker: str) -> list[str]:
    """The body rows (as written, spaces collapsed) of the first table after `marker`."""
    assert marker in text, f"the page no longer says {marker!r}"
    rest = text[text.index(marker) :]
    rows = list(itertools.dropwhile(lambda line: not line.startswith("|"), rest.splitlines()))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), rows))
    return [flat(row.strip()) for row in rows[2:]]


def unticked(cell: str) -> str:
    return cell.strip().strip("`")


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


# --- (a) The README's params table is the schema ---------------------------------------


def flattened(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """{'train.epochs': 10, ...} from params.yaml's nesting."""
    flat_keys: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat_keys.update(flattened(value, f"{prefix}{key}."))
        else:
            flat_keys[f"{prefix}{key}"] = value
    return flat_keys


def without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        (only,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return only
    return annotation


def bounds(metadata: list[Any]) -> str:
    """' in [0, 1)', ' ≥ 10' or '' from pydantic's ge/gt/le/lt constraints."""
    low = next(((m.ge, "[") for m in metadata if isinstance(m, annotated_types.Ge)), None)
    low = low or next(((m.gt, "(") for m in metadata if isinstance(m, annotated_types.Gt)), None)
    high = next(((m.le, "]") for m in metadata if isinstance(m, annotated_types.Le)), None)
    high = high or next(((m.lt, ")") for m in metadata if isinstance(m, annotated_types.Lt)), None)
    if low and high:
        return f" in {low[1]}{low[0]}, {high[0]}{high[1]}"
    if low:
        return f" {'≥' if low[1] == '[' else '>'} {low[0]}"
    if high:
        return f" {'≤' if high[1] == ']' else '<'} {high[0]}"
    return ""


def rule(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A field's rule as the README's params table writes it, from its type and
    constraints: 'integer in [1, 512]', '`adam` or `sgd`', 'list of 1 to 6 numbers in
    [0, 1)', 'integer ≥ 10, or `null`'."""
    metadata = list(metadata or [])
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extras = get_args(annotation)
        for extra in extras:
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
        return rule(base, metadata)
    if origin in (Union, types.UnionType):
        return f"{rule(without_none(annotation), metadata)}, or `null`"
    if origin is Literal:
        names = [f"`{value}`" for value in get_args(annotation)]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    if origin is list:
        (item,) = get_args(annotation)
        shortest = next(m.min_length for m in metadata if isinstance(m, annotated_types.MinLen))
        longest = next(m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen))
        kind, _, rest = rule(item).partition(" ")
        return f"list of {shortest} to {longest} {kind}s {rest}".rstrip()
    if annotation is bool:
        return "`true` or `false`"
    if annotation in (int, float):
        return f"{'integer' if annotation is int else 'number'}{bounds(metadata)}"
    raise AssertionError(f"tests/test_docs.py cannot write a rule for {annotation!r}; teach rule()")


def schema_rules(model: type[BaseModel] = Params, prefix: str = "") -> dict[str, str]:
    """{'train.epochs': 'integer in [1, 10000]', ...} for every key of the schema."""
    rules: dict[str, str] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if model is Params:  # None there means "section not loaded"; a stage refuses null
            annotation = without_none(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rules.update(schema_rules(annotation, f"{prefix}{name}."))
        else:
            rules[f"{prefix}{name}"] = rule(annotation, field.metadata)
    return rules


def default_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


DEFAULTS = flattened(read_params_file(PROJECT_ROOT / "params.yaml"))
RULES = schema_rules()


def params_table() -> list[list[str]]:
    return table_with_header(README.read_text(), "key", "default", "rule", "meaning")


def expected_row(key: str) -> str:
    return f"| `{key}` | `{default_text(DEFAULTS[key])}` | {RULES[key]} | ... |"


def test_the_readme_params_table_has_every_key_of_params_yaml_and_the_schema_once():
    keys = [unticked(row[0]) for row in params_table()]
    assert sorted(set(DEFAULTS)) == sorted(RULES), "params.yaml and params.py differ"
    assert len(keys) == len(set(keys)), "a key is in the README's params table twice"
    missing = [expected_row(key) for key in RULES if key not in keys]
    assert not missing, "add to the README's params table:\n" + "\n".join(missing)
    assert not set(keys) - set(RULES), f"not params: {sorted(set(keys) - set(RULES))}"


@pytest.mark.parametrize("key", sorted(RULES))
def test_the_readme_params_table_gives_each_keys_default_and_rule(key):
    rows = {unticked(row[0]): row for row in params_table()}
    assert key in rows, f"add to the README's params table: {expected_row(key)}"
    _, default, written_rule, meaning = rows[key]
    assert unticked(default) == default_text(DEFAULTS[key]), f"should be: {expected_row(key)}"
    assert written_rule == RULES[key], f"should be: {expected_row(key)}"
    assert meaning, f"{key} has no meaning in the README's params table"


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


def test_the_readme_stage_table_is_dvc_yaml():
    rows = table_with_header(README.read_text(), "stage", "reads", "writes")
    assert [row[0] for row in rows] == list(STAGES), "the stages, in dvc.yaml's order"
    for name, reads, writes in rows:
        stage = STAGES[name]
        sections = {code for code in re.findall(r"`([^`]+)`", reads) if code in SECTIONS}
        assert sections == set(stage.get("params", [])), f"{name}: params it reads"
        written = re.findall(r"`([^`]+/[^`]*)`", writes)
        for output in outputs(stage):
            assert any(under(path, [output]) for path in written), f"{name}: writes {output}"
        for path in written:
            assert under(path, outputs(stage)), f"{name} does not write {path}"


# Commands: the ones in code blocks (shell blocks' lines; other blocks' `$ ` lines), and
# inline code that starts with a command. Each is checked by the parser that would run it.


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


def results(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def committed_metrics() -> dict:
    return json.loads((PROJECT_ROOT / "reports" / "metrics.json").read_text())["test"]


def f4(value: float) -> str:
    return f"{value:.4f}"


def f1(value: float) -> str:
    return f"{value:.1f}"


def seed_range(runs: list[dict]) -> list[str]:
    return [str(min(r["seed"] for r in runs)), str(max(r["seed"] for r in runs))]


def variance(preset: str) -> dict:
    return results(f"variance-{preset}.json")


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


def rendered(model: str) -> dict[str, tuple[str, str]]:
    """{variant: (digits, accuracy)} from bench/results/rendered-digits-MODEL.txt."""
    text = (RESULTS / f"rendered-digits-{model}.txt").read_text()
    return {
        name: (f"{int(count):,}", accuracy)
        for name, count, accuracy in re.findall(
            r"^ +(\S.*?) +(\d+) digits, accuracy ([\d.]+)$", text, re.MULTILINE
        )
    }


def gpu_runs() -> dict[str, dict]:
    lines = (RESULTS / "gpu-h200.jsonl").read_text().splitlines()
    return {run["run"]: run for run in map(json.loads, lines) if "run" in run}


def gpu_row(run: dict) -> list[str]:
    return [
        f1(run["first_epoch_s"]),
        f"{run['steady_epoch_s']:.2f}",
        str(len(run["epoch_s"])),
        f"{run['train_s_to_target_excluding_compile']:.2f}",
        str(run["epochs_to_target"]),
        f4(run["final_test_accuracy"]),
    ]


def attack_row(attack: dict) -> list[str]:
    """A row of docs/serving.md's table of attacks, from bench/results/serve.json."""
    statuses = ", ".join(f"{code} x{n}" for code, n in sorted(attack["statuses"].items()))
    if "slowest_answer_s" in attack:
        got = f"{statuses}; slowest answer {attack['slowest_answer_s']} s"
    else:
        got = (
            f"{statuses}, {attack['still_open']} left open; closed by {attack['closed_after_s']} s"
        )
    return [
        attack["attack"],
        got,
        str(attack["normal_max_s_during"]),
        str(attack["normal_requests_during"]),
        str(attack["normal_median_s_after"]),
        str(attack["rss_mib_before"]),
        str(attack["rss_mib_after"]),
    ]


def claims() -> Iterator[tuple[str, str, list[str]]]:
    """(page, sentence with {} for each figure, the figures as the files give them)."""
    metrics, seed = committed_metrics(), str(DEFAULTS["seed"])
    default, fast, accurate = variance("default"), variance("fast"), variance("accurate")
    bf16 = variance("default-bf16")
    serve = results("serve.json")
    levers = results("levers-bf16.json")["summary"]
    seed_path, bf16_path = (
        levers["seed code path (float64 arrays)"],
        levers["ours, bf16 mixed precision"],
    )
    load = serve["load"]

    def spread(summary: dict) -> list[str]:
        return [f4(summary["test_accuracy"]["mean"]), f4(summary["test_accuracy"]["sd"])]

    def times(summary: dict, scale: float = 1) -> list[str]:
        return [
            f1(min(r["training_s"] for r in summary["runs"]) / scale),
            f1(max(r["training_s"] for r in summary["runs"]) / scale),
        ]

    yield (
        "README.md",
        "**test accuracy {}** (loss {}) with the committed seed",
        [f4(metrics["accuracy"]), f4(metrics["loss"])],
    )
    yield (
        "README.md",
        "and **{} ± {}** over {} seeds",
        [*spread(default), str(len(default["runs"]))],
    )
    yield (
        "README.md",
        "speed (**{}** after {} to {} s of training)",
        [f4(fast["test_accuracy"]["mean"]), *times(fast)],
    )
    yield (
        "README.md",
        "accuracy (**{}**, Chris Deotte's single CNN on augmented digits, {} to {} min of training)",
        [f4(accurate["test_accuracy"]["mean"]), *times(accurate, 60)],
    )
    yield (
        "README.md",
        "| default model, committed seed {} | test accuracy **{}**, loss {} |",
        [seed, f4(metrics["accuracy"]), f4(metrics["loss"])],
    )
    yield (
        "README.md",
        "| default model, seeds {} to {} | test accuracy **{} ± {}** (mean ± sd) |",
        [*seed_range(default["runs"]), *spread(default)],
    )
    yield (
        "README.md",
        "| fast preset, seeds {} to {} | test accuracy **{} ± {}**, {} to {} s of training |",
        [*seed_range(fast["runs"]), *spread(fast), *times(fast)],
    )
    yield (
        "README.md",
        "| accurate preset, seeds {} to {} | test accuracy **{} ± {}**, {} to {} s of training |",
        [*seed_range(accurate["runs"]), *spread(accurate), *times(accurate)],
    )
    yield (
        "README.md",
        "| `mnist-pipeline serve`, one digit a request | p50 **{} ms**, p99 {} ms |",
        [str(serve["latency_one_digit"]["p50_ms"]), str(serve["latency_one_digit"]["p99_ms"])],
    )
    yield (
        "README.md",
        "| `mnist-pipeline serve`, {} clients at once | **{} and {} predictions/s**, {} failed |",
        [
            str(load[0]["clients"]),
            str(load[0]["predictions_per_s"]),
            str(load[1]["predictions_per_s"]),
            str(load[0]["failed"] + load[1]["failed"]),
        ],
    )
    onnx = serve["onnx"]
    yield (
        "README.md",
        "| `mnist-pipeline serve --runtime onnx` | p50 **{} ms**; {} and {} predictions/s with 16 clients; {} MiB |",
        [
            str(onnx["latency_one_digit"]["p50_ms"]),
            *(str(run["predictions_per_s"]) for run in onnx["load"]),
            str(list(onnx["server_rss_mib"].values())[-1]),
        ],
    )

    page = "docs/benchmarks.md"
    accuracies = [f4(r["test_accuracy"]) for r in default["runs"]]
    yield (
        page,
        "| default model, float32 | test accuracy **{} ± {}** over seeds {} to {} ("
        + ", ".join(["{}"] * len(accuracies))
        + ") |",
        [*spread(default), *seed_range(default["runs"]), *accuracies],
    )
    yield (
        page,
        "| fast preset | test accuracy **{} ± {}** over {} seeds, lowest {}; {} to {} s of training;",
        [*spread(fast), str(len(fast["runs"])), f4(fast["test_accuracy"]["min"]), *times(fast)],
    )
    accuracies = [f4(r["test_accuracy"]) for r in accurate["runs"]]
    yield (
        page,
        "| accurate preset | test accuracy **{} ± {}** over {} seeds ("
        + ", ".join(["{}"] * len(accuracies))
        + "); {} to {} s of training |",
        [*spread(accurate), str(len(accurate["runs"])), *accuracies, *times(accurate)],
    )
    bf16_run = bf16["runs"][0]
    yield (
        page,
        "epoch CPU time **{}x** the seed code path's ({} s against {} s, side by side); 10-epoch test accuracy **{}** (seed {}, {} s of training)",
        [
            f"{bf16_path['cpu_ratio_to_seed']:.2f}",
            f1(bf16_path["cpu_s"]),
            f1(seed_path["cpu_s"]),
            f4(bf16_run["test_accuracy"]),
            str(bf16_run["seed"]),
            f1(bf16_run["training_s"]),
        ],
    )
    yield (
        page,
        "From `bench/results/variance-default-bf16.json`: seed {}, test accuracy **{}**, {} s of training ({} epochs)",
        [
            str(bf16_run["seed"]),
            f4(bf16_run["test_accuracy"]),
            f1(bf16_run["training_s"]),
            str(len(bf16_run["epoch_s"])),
        ],
    )
    yield (
        page,
        "the seed code path {} s of CPU an epoch, ours in bf16 {} s, a ratio of **{}**, and test accuracy {} and {} after 2 epochs",
        [
            f1(seed_path["cpu_s"]),
            f1(bf16_path["cpu_s"]),
            f"{bf16_path['cpu_ratio_to_seed']:.3f}",
            f4(seed_path["test_accuracy"]),
            f4(bf16_path["test_accuracy"]),
        ],
    )
    gpu = gpu_runs()
    default_gpu, fast_1, fast_2 = gpu["default"], gpu["fast:1"], gpu["fast:2"]
    yield (
        page,
        "| one NVIDIA H200: default model, batch 128 | **{} s** a steady epoch; test accuracy 0.990 after {} s of steady epochs |",
        [
            f"{default_gpu['steady_epoch_s']:.2f}",
            f1(default_gpu["train_s_to_target_excluding_compile"]),
        ],
    )
    yield (
        page,
        "| one NVIDIA H200: fast preset | test accuracy {} and {} after {} s and {} s of steady epochs ({} epochs) |",
        [
            f4(fast_1["final_test_accuracy"]),
            f4(fast_2["final_test_accuracy"]),
            f"{fast_1['train_s_to_target_excluding_compile']:.2f}",
            f"{fast_2['train_s_to_target_excluding_compile']:.2f}",
            str(len(fast_1["epoch_s"])),
        ],
    )
    first, steady, epochs, _, at_epoch, final = gpu_row(default_gpu)
    yield (
        page,
        "| default model, batch 128, float32 | {} s | **{} s** | {} | {} s (epoch {}) | {} |",
        [
            first,
            steady,
            epochs,
            f1(default_gpu["train_s_to_target_excluding_compile"]),
            at_epoch,
            final,
        ],
    )
    for name, run in (("fast preset, seed 1", fast_1), ("fast preset, seed 2", fast_2)):
        yield (
            page,
            f"| {name} | {{}} s | {{}} s | {{}} | **{{}} s** (epoch {{}}) | {{}} |",
            gpu_row(run),
        )
    yield (
        page,
        "| `mnist-pipeline serve` | p50 **{} ms** for one digit; {} and {} predictions/s with {} clients, {} failed; `--runtime onnx` p50 {} ms, {} and {} predictions/s |",
        [
            str(serve["latency_one_digit"]["p50_ms"]),
            str(load[0]["predictions_per_s"]),
            str(load[1]["predictions_per_s"]),
            str(load[0]["clients"]),
            str(load[0]["failed"] + load[1]["failed"]),
            str(onnx["latency_one_digit"]["p50_ms"]),
            *(str(run["predictions_per_s"]) for run in onnx["load"]),
        ],
    )
    page_timing, unbatched = serve["page_stroke_to_answer"], serve["load_without_batching"]

    def both(shown: Callable[[dict], list[str]]) -> list[str]:
        """The figures of the SavedModel server, then the ONNX one's."""
        return [*shown(serve), *shown(onnx)]

    yield (
        page,
        "| one digit a request, one client, keep-alive (1,000 requests) | **p50 {} ms**, p99 {} ms | **p50 {} ms**, p99 {} ms |",
        both(lambda f: [str(f["latency_one_digit"][k]) for k in ("p50_ms", "p99_ms")]),
    )
    yield (
        page,
        "| 16 clients at once, one digit a request, 10,000 requests (twice) | **{} and {} predictions/s**, {} failed | **{} and {} predictions/s**, {} failed |",
        both(
            lambda f: [
                *(str(run["predictions_per_s"]) for run in f["load"]),
                str(sum(run["failed"] for run in f["load"])),
            ]
        ),
    )
    yield (
        page,
        "| the same with batching off (`--max-batch 1`) | {} predictions/s, {} failed | not measured |",
        [str(unbatched["predictions_per_s"]), str(unbatched["failed"])],
    )
    yield (
        page,
        "| server memory (RSS, with its drawing readers) after 1,050 / 11,050 / 21,050 requests | {} / {} / {} MiB | {} / {} / {} MiB |",
        both(lambda f: [str(v) for v in f["server_rss_mib"].values()]),
    )
    yield (
        page,
        "this one's median p50 is {}x the old one's and its throughput {}x",
        [
            str(serve["side_by_side"]["p50_now_over_before"]),
            str(serve["side_by_side"]["throughput_now_over_before"]),
        ],
    )
    yield (
        page,
        "gives {}x the throughput of one request at a time",
        [f"{max(r['predictions_per_s'] for r in load) / unbatched['predictions_per_s']:.1f}"],
    )
    yield (
        page,
        "The drawing page in headless Chromium {}, from the end of a stroke to its answer on screen, with the SavedModel: median {} ms, at most {} ms over {} strokes.",
        [
            re.search(r"Chromium (\d+)", page_timing["browser"])[1],
            f1(page_timing["median_ms"]),
            f1(page_timing["max_ms"]),
            str(page_timing["strokes"]),
        ],
    )

    page = "docs/serving.md"
    yield page, "with the default model (test accuracy {})", [f4(metrics["accuracy"])]
    for name, figures in (("`savedmodel` (TensorFlow)", serve), ("`onnx` (ONNX Runtime)", onnx)):
        yield (
            page,
            f"| {name} | {{}} ms, {{}} ms | {{}} and {{}} predictions/s | {{}} MiB |",
            [
                str(figures["latency_one_digit"]["p50_ms"]),
                str(figures["latency_one_digit"]["p99_ms"]),
                *(str(run["predictions_per_s"]) for run in figures["load"]),
                str(list(figures["server_rss_mib"].values())[-1]),
            ],
        )
    for attack in serve["attacks"]:
        name, got, *figures = attack_row(attack)
        yield (
            page,
            f"| {name} | {got} | {{}} s ({{}} requests) | {{}} s | {{}} / {{}} MiB |",
            figures,
        )
    yield (
        page,
        "screen takes {} ms at the median and {} ms at most, over {} strokes",
        [f1(page_timing["median_ms"]), f1(page_timing["max_ms"]), str(page_timing["strokes"])],
    )
    plain, deotte = rendered("default"), rendered("accurate")

    def accuracy(variant: str) -> list[str]:
        return [plain[variant][1], deotte[variant][1]]

    yield (
        page,
        "| as rendered ({}) | {} | **{}** |",
        [plain["as rendered"][0], *accuracy("as rendered")],
    )
    for angle in (8, 15):
        row = [
            plain[f"rotated {angle} degrees"][1],
            plain[f"rotated -{angle} degrees"][1],
            deotte[f"rotated {angle} degrees"][1],
            deotte[f"rotated -{angle} degrees"][1],
        ]
        bold = "**{}**" if angle == 15 else "{}"
        yield page, f"| rotated {angle} / -{angle} degrees | {{}} / {{}} | {{}} / {bold} |", row
    yield page, "| bold strokes | {} | **{}** |", accuracy("bold strokes")
    yield page, "| low resolution (digit 10 px tall) | {} | {} |", accuracy("low resolution")
    yield (
        page,
        "| thin strokes ({}: hairline fonts at 24 pt vanish) | {} | {} |",
        [plain["thin strokes"][0], *accuracy("thin strokes")],
    )
    yield page, "| blurred | {} | {} |", accuracy("blurred")

    page = "docs/experiments.md"
    for preset, summary, words_before in (
        ("default", default, "10 epochs"),
        ("fast", fast, "3 epochs, bfloat16"),
        ("accurate", accurate, "30 epochs, bfloat16"),
    ):
        figures = [*spread(summary), str(len(summary["runs"])), f4(summary["test_accuracy"]["min"])]
        if preset == "default":
            yield page, f"{words_before} | **{{}} ± {{}}** ({{}} seeds, lowest {{}}) |", figures
        else:
            yield (
                page,
                f"{words_before} | **{{}} ± {{}}** ({{}} seeds, lowest {{}}) | {{}} to {{}} s |",
                [*figures, *times(summary)],
            )

    page = "docs/params.md"
    float32_run = next(r for r in default["runs"] if r["seed"] == bf16_run["seed"])
    yield (
        page,
        "10-epoch test accuracy is {} against float32's {} (seed {};",
        [f4(bf16_run["test_accuracy"]), f4(float32_run["test_accuracy"]), str(bf16_run["seed"])],
    )


FIGURE = r"(-?\d[\d,]*(?:\.\d+)?)"


def test_every_figure_the_docs_quote_is_the_one_in_its_file():
    problems = []
    for page, sentence, figures in claims():
        text = flat((PROJECT_ROOT / page).read_text())
        pattern = FIGURE.join(re.escape(part) for part in sentence.split("{}"))
        found = [
            match if isinstance(match, tuple) else (match,) for match in re.findall(pattern, text)
        ]
        expected = sentence.format(*figures)
        if not found:
            problems.append(f"{page} no longer says: {expected}")
        problems += [
            f"{page} says {sentence.format(*f)!r}; should be {expected!r}"
            for f in found
            if list(f) != figures
        ]
    assert not problems, "\n".join(problems)


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
