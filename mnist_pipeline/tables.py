"""The README's tables that restate the project's own sources, generated from them:

    mnist-pipeline docs            # rewrite them in place
    mnist-pipeline docs --check    # only check: one line and exit code 1 if one is stale

The params table comes from the params schema (mnist_pipeline/params.py: each key's rule
from its type and bounds, its meaning from its Field's description) and params.yaml (the
defaults). The stage table comes from dvc.yaml (each stage's data, params and outputs, and
which outputs git keeps) and the first sentence of each stage script's docstring. Each
table sits between two marker comments; only what lies between them is rewritten.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from ruamel.yaml import YAML

from mnist_pipeline.params import Params, read_params_file
from mnist_pipeline.paths import PARAMS_FILE
from mnist_pipeline.presets import settings
from mnist_pipeline.stage import StageError, staged_file

log = logging.getLogger(__name__)

README = Path("README.md")
PIPELINE_FILE = Path("dvc.yaml")


# --- The params table -------------------------------------------------------------------


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        (only,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return only
    return annotation


def _bounds(metadata: list[Any]) -> str:
    """' in [0, 1)', ' ≥ 10' or '' from pydantic's ge/gt/le/lt constraints."""

    def first(kind: type, attribute: str, bracket: str) -> tuple[Any, str] | None:
        found = [getattr(m, attribute) for m in metadata if isinstance(m, kind)]
        return (found[0], bracket) if found else None

    low = first(annotated_types.Ge, "ge", "[") or first(annotated_types.Gt, "gt", "(")
    high = first(annotated_types.Le, "le", "]") or first(annotated_types.Lt, "lt", ")")
    if low and high:
        return f" in {low[1]}{low[0]}, {high[0]}{high[1]}"
    if low:
        return f" {'≥' if low[1] == '[' else '>'} {low[0]}"
    if high:
        return f" {'≤' if high[1] == ']' else '<'} {high[0]}"
    return ""


def rule(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A field's rule, from its type and constraints: 'integer in [1, 512]', '`adam` or
    `sgd`', 'list of 1 to 6 numbers in [0, 1)', 'integer ≥ 10, or `null`'."""
    metadata = list(metadata or [])
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extras = get_args(annotation)
        for extra in extras:
            metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
        return rule(base, metadata)
    if origin in (Union, types.UnionType):
        return f"{rule(_without_none(annotation), metadata)}, or `null`"
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
        return f"{'integer' if annotation is int else 'number'}{_bounds(metadata)}"
    raise StageError(f"no rule can be written for {annotation!r}; teach tables.rule() the type")


def param_rows(model: type[BaseModel] = Params, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, rule, description) for every key of the schema, in its order."""
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if model is Params:  # None there means "section not loaded"; a stage refuses null
            annotation = _without_none(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += param_rows(annotation, f"{prefix}{name}.")
            continue
        if not field.description:
            raise StageError(
                f"{prefix}{name} has no description; give its Field(description=...) in "
                "mnist_pipeline/params.py"
            )
        rows.append((f"{prefix}{name}", rule(annotation, field.metadata), field.description))
    return rows


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|").strip()


def _value(value: Any) -> str:
    """A params.yaml value as the table shows it: a string bare, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def params_table(model: type[BaseModel] = Params) -> str:
    """key | default | rule | meaning, one row per key of the schema."""
    rows = param_rows(model)
    defaults = dict(settings(read_params_file(PARAMS_FILE)))
    unknown = sorted(set(defaults) - {key for key, _, _ in rows})
    if unknown:
        raise StageError(f"{PARAMS_FILE}: {unknown[0]} is not in the schema")
    lines = ["| key | default | rule | meaning |", "| --- | --- | --- | --- |"]
    for key, written_rule, description in rows:
        if key not in defaults:
            raise StageError(f"{PARAMS_FILE}: {key} is missing; add it with its default")
        value = _value(defaults[key])
        lines.append(f"| `{key}` | `{value}` | {written_rule} | {_cell(description)} |")
    return "\n".join(lines)


# --- The stage table --------------------------------------------------------------------


def _entries(items: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, options) of each item of a dvc.yaml list: `path` or `{path: {options}}`."""
    found = []
    for item in items or []:
        if isinstance(item, dict):
            found += [(str(path), dict(options or {})) for path, options in item.items()]
        else:
            found.append((str(item), {}))
    return found


def _shown_paths(paths: list[str]) -> list[str]:
    """Paths as the table shows them, a folder (no suffix) with a trailing slash, files of
    one folder with one suffix together: data/processed/{train_images,val_images}.npy."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        name = Path(path)
        if not name.suffix:
            groups[(path + "/", "")] = []
        else:
            groups.setdefault((str(name.parent), name.suffix), []).append(name.stem)
    shown = []
    for (folder, suffix), stems in groups.items():
        if not suffix:
            shown.append(folder)
        elif len(stems) == 1:
            shown.append(f"{folder}/{stems[0]}{suffix}")
        else:
            shown.append(f"{folder}/{{{','.join(stems)}}}{suffix}")
    return [f"`{path}`" for path in shown]


def summary(command: str) -> str:
    """The first sentence of the docstring of the script a stage's cmd runs, less its
    'Stage 1, fetch: ' prefix."""
    scripts = [word for word in command.split() if word.endswith(".py")]
    if not scripts:
        return ""
    script = Path(scripts[0])
    try:
        docstring = ast.get_docstring(ast.parse(script.read_text(), str(script)))
    except (OSError, SyntaxError) as error:
        raise StageError(f"{script}: cannot read its docstring ({error})") from None
    if not docstring:
        raise StageError(f"{script} has no docstring; its first sentence says what it does")
    paragraph = re.sub(r"\s+", " ", docstring.split("\n\n")[0]).strip()
    sentence = re.match(r"(.*?)\.(\s|$)", paragraph)
    text = sentence[1] if sentence else paragraph
    return re.sub(r"^Stage \d+, [\w-]+: ", "", text)


def stage_table(pipeline: dict[str, Any] | None = None) -> str:
    """stage | what it does | reads | writes, one row per stage of dvc.yaml."""
    if pipeline is None:
        try:
            pipeline = YAML(typ="safe").load(PIPELINE_FILE.read_text())
        except FileNotFoundError:
            raise StageError(f"{PIPELINE_FILE} not found: run from the project root") from None
    lines = ["| stage | what it does | reads | writes |", "| --- | --- | --- | --- |"]
    for name, stage in (pipeline or {}).get("stages", {}).items():
        data = [path for path, _ in _entries(stage.get("deps")) if not path.endswith(".py")]
        sections = [path for path, _ in _entries(stage.get("params"))]
        reads = _shown_paths(data)
        if sections:
            reads.append("params " + ", ".join(f"`{section}`" for section in sections))
        writes = []
        for kind in ("outs", "metrics", "plots"):
            for path, options in _entries(stage.get(kind)):
                in_git = " (git)" if options.get("cache") is False else ""
                writes.append(_shown_paths([path])[0] + in_git)
        lines.append(
            f"| {name} | {_cell(summary(stage.get('cmd', '')))} | "
            f"{', '.join(reads) or '-'} | {', '.join(writes)} |"
        )
    return "\n".join(lines)


# --- Writing them into the docs ---------------------------------------------------------

# (file, table name, what it is generated from, generator)
TABLES: list[tuple[Path, str, str, Callable[[], str]]] = [
    (README, "params", "mnist_pipeline/params.py and params.yaml", params_table),
    (README, "stage", "dvc.yaml and the stages' docstrings", stage_table),
]


def _block(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"^<!-- {name} table: .*?-->\n.*?^<!-- end {name} table -->$", re.MULTILINE | re.DOTALL
    )


def rewritten(path: Path, text: str) -> tuple[str, list[str]]:
    """`text` (the file at `path`) with each of its generated tables made anew, and the
    names of those that changed."""
    changed = []
    for file, name, sources, generate in TABLES:
        if file != path:
            continue
        block = (
            f"<!-- {name} table: generated by mnist-pipeline docs from {sources}; "
            f"edit those, not this table -->\n\n{generate()}\n\n<!-- end {name} table -->"
        )
        found = _block(name).findall(text)
        if len(found) != 1:
            raise StageError(
                f"{path}: needs one '<!-- {name} table: ... -->' ... "
                f"'<!-- end {name} table -->' pair of lines where the table goes; "
                f"found {len(found)}"
            )
        if found[0] != block:
            changed.append(name)
            text = text.replace(found[0], block)
    return text, changed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; fail in one line if a generated table is stale",
    )


def run(args: argparse.Namespace) -> None:
    for path in dict.fromkeys(file for file, *_ in TABLES):
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise StageError(f"{path} not found: run from the project root") from None
        new, changed = rewritten(path, text)
        tables = " and ".join(changed) + (" tables" if len(changed) > 1 else " table")
        if not changed:
            log.info(f"{path}: up to date")
        elif args.check:
            raise StageError(
                f"{path}: stale {tables} (not what its sources give); run mnist-pipeline docs"
            )
        else:
            with staged_file(path) as staging:
                staging.write_text(new)
            log.info(f"{path}: rewrote its {tables}")
