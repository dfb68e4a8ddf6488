"""The sweep workflow's inputs (.github/workflows/sweep.yml), checked before anything runs:

    python -m mnist_pipeline.sweep_inputs --param=NAME --values=JSON --overrides=TEXT

`param` must be one of params.yaml's settings, by its dotted name in the params schema
(mnist_pipeline/params.py); `values` a JSON list of up to MAX_VALUES distinct numbers,
strings, true/false or null; `overrides` space-separated `name=value` items, each name a
setting and each value read as params.yaml would read it. A string is at most
MAX_TEXT letters, digits and `_ . + -`: nothing a shell, a glob or a line break could
act on. params.yaml with the overrides and each value must then pass the stages' checks.

Prints one line, `runs=` and a JSON list (for $GITHUB_OUTPUT): per value, a `name` for
its experiment ([a-z0-9-] only) and `set`, its `dvc exp run -S` arguments, the
overrides and the value, written so that DVC puts in params.yaml exactly the values
checked. A mistake is one line on stderr and exit code 1.

Imports pydantic, ruamel.yaml, numpy and platformdirs (through the schema), not DVC or
TensorFlow: the workflow checks the inputs before installing the project.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from ruamel.yaml import YAML, YAMLError

from mnist_pipeline.params import SECTIONS, Params, validate_params
from mnist_pipeline.paths import PARAMS_FILE
from mnist_pipeline.presets import applied, override_value
from mnist_pipeline.stage import StageError, printable, run_stage

MAX_VALUES = 20  # one runner each
MAX_OVERRIDES = 20
MAX_INPUT = 2000  # characters of one input
MAX_TEXT = 64  # characters of one string value
_TEXT = re.compile(rf"[A-Za-z0-9_.+-]{{1,{MAX_TEXT}}}")
_TEXT_RULE = f"1 to {MAX_TEXT} letters, digits and _ . + -"
_SCALARS = "numbers, strings, true/false or null"


def _section(annotation: Any) -> type[BaseModel] | None:
    """The section model an annotation holds (`TrainParams | None`), or None for a setting."""
    if get_origin(annotation) in (Union, types.UnionType):
        return next(filter(None, map(_section, get_args(annotation))), None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _walk(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, bool]]:
    for key, field in model.model_fields.items():
        inner = _section(field.annotation)
        yield f"{prefix}{key}", inner is None
        if inner is not None:
            yield from _walk(inner, f"{prefix}{key}.")


NAMES = tuple(name for name, is_setting in _walk(Params) if is_setting)  # e.g. train.epochs
_GROUPS = tuple(name for name, is_setting in _walk(Params) if not is_setting)  # e.g. model.augment


def _shown(text: object, limit: int = 60) -> str:
    return printable(repr(text), limit)


def _allowed(name: str) -> str:
    """The settings a mistyped `name` could have meant: its section's, or all."""
    group = max((g for g in _GROUPS if name.startswith(f"{g}.")), key=len, default="")
    return ", ".join(n for n in NAMES if n.startswith(f"{group}.")) if group else ", ".join(NAMES)


def check_name(name: str, what: str) -> str:
    """`name` if it is one of the schema's settings; else StageError naming the allowed."""
    if name not in NAMES:
        raise StageError(
            f"{what} {_shown(name)} is not a setting of {PARAMS_FILE}; allowed: {_allowed(name)}"
        )
    return name


def _scalar(value: Any, what: str) -> Any:
    """A number, string (see _TEXT), bool or None, as it is; else StageError."""
    if isinstance(value, float) and not math.isfinite(value):
        raise StageError(f"{what} = {_shown(value)} is not a finite number")
    if isinstance(value, str) and not _TEXT.fullmatch(value):
        raise StageError(f"{what} = {_shown(value)} is not allowed; a string is {_TEXT_RULE}")
    if value is not None and not isinstance(value, bool | int | float | str):
        kind = {list: "a list", dict: "a mapping"}.get(type(value), f"a {type(value).__name__}")
        raise StageError(f"{what} is {kind}; give one of {_SCALARS}")
    return value


def _refuse_constant(name: str) -> float:
    raise StageError(f"values: {name} is not a number; give finite numbers")


def parse_values(text: str) -> list[Any]:
    """The `values` input: a JSON list of 1 to MAX_VALUES distinct scalars."""
    if len(text) > MAX_INPUT:
        raise StageError(f"values is {len(text):,} characters; at most {MAX_INPUT:,}")
    try:
        values = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise StageError(
            f"values is not JSON ({error.msg} at character {error.pos}); "
            "give a list like [64, 128, 256]"
        ) from None
    if not isinstance(values, list) or not values:
        raise StageError(
            f"values is {_shown(values)}; give a non-empty JSON list like [64, 128, 256]"
        )
    if len(values) > MAX_VALUES:
        raise StageError(f"values has {len(values)} items; at most {MAX_VALUES} (one runner each)")
    seen: set[str] = set()
    for index, value in enumerate(values):
        written = override_value(_scalar(value, f"values[{index}]"))
        if written in seen:
            raise StageError(f"values[{index}] = {_shown(value)} repeats; give each value once")
        seen.add(written)
    return values


def _read_scalar(text: str, what: str) -> Any:
    """An override's value as params.yaml would read it (YAML 1.2): `3` is an int, `1e-3`
    a float, `true` a bool, `null` None, `adam` a string."""
    if not _TEXT.fullmatch(text):
        raise StageError(
            f"{what}: the value {_shown(text)} is not allowed; a value is {_TEXT_RULE}"
        )
    try:
        value = YAML(typ="safe").load(text)
    except YAMLError:
        raise StageError(f"{what}: the value {_shown(text)} is not a YAML scalar") from None
    return _scalar(value, what)


def parse_overrides(text: str) -> dict[str, Any]:
    """The `overrides` input: space-separated `name=value` items, each name once."""
    if len(text) > MAX_INPUT:
        raise StageError(f"overrides is {len(text):,} characters; at most {MAX_INPUT:,}")
    odd = next((c for c in text if not c.isprintable()), None)
    if odd is not None:
        raise StageError(
            f"overrides holds {_shown(odd)}; separate name=value items with spaces only"
        )
    items = text.split()
    if len(items) > MAX_OVERRIDES:
        raise StageError(f"overrides has {len(items)} items; at most {MAX_OVERRIDES}")
    overrides: dict[str, Any] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            raise StageError(f"overrides: {_shown(item)} is not name=value, like train.epochs=3")
        check_name(name, "overrides: the name")
        if name in overrides:
            raise StageError(f"overrides: {name} is set twice; set it once")
        overrides[name] = _read_scalar(value, f"overrides: {name}")
    return overrides


def read_params_yaml(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml as DVC's parser reads it (ruamel.yaml's safe loader), without DVC."""
    try:
        raw = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, YAMLError) as error:
        detail = printable(str(error).split("\n")[0], 80)
        raise StageError(f"{path} cannot be read ({detail}); run from the project root") from None
    if not isinstance(raw, dict):
        raise StageError(f"{path} must be a mapping of sections: {', '.join(SECTIONS)}")
    return raw


def _nested(pairs: dict[str, Any]) -> dict[str, Any]:
    """{"train.epochs": 3} as {"train": {"epochs": 3}}, as presets are written."""
    nested: dict[str, Any] = {}
    for name, value in pairs.items():
        *parents, leaf = name.split(".")
        mapping = nested
        for parent in parents:
            mapping = mapping.setdefault(parent, {})
        mapping[leaf] = value
    return nested


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def sweep_runs(
    param: str, values_text: str, overrides_text: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """One run per value: its experiment's `name` and its `-S` arguments (`set`), each
    checked against `params` (params.yaml's contents)."""
    check_name(param, "param")
    values = parse_values(values_text)
    overrides = parse_overrides(overrides_text)
    if param in overrides:
        raise StageError(f"overrides: {param} is the param swept; leave it to values")
    fixed = [f"{name}={override_value(value)}" for name, value in overrides.items()]
    with_fixed = f" with {' '.join(fixed)}" if fixed else ""
    source = f"overrides {' '.join(fixed)}" if fixed else str(PARAMS_FILE)
    validate_params(applied(params, _nested(overrides), PARAMS_FILE), SECTIONS, source)
    runs = []
    for number, value in enumerate(values, start=1):
        setting = f"{param}={override_value(value)}"
        chosen = {**overrides, param: value}
        validate_params(
            applied(params, _nested(chosen), PARAMS_FILE), SECTIONS, f"value {setting}{with_fixed}"
        )
        name = f"{number}-{_slug(param)}-{_slug(override_value(value))}"
        runs.append({"name": name, "set": [setting, *fixed]})
    return runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--param", required=True, help="the setting to sweep: train.epochs")
    parser.add_argument("--values", required=True, help="its values, a JSON list: [1, 2]")
    parser.add_argument("--overrides", default="", help="name=value items, space-separated")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline.sweep_inputs", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)

    def check() -> None:
        runs = sweep_runs(args.param, args.values, args.overrides, read_params_yaml())
        print(f"runs={json.dumps(runs, separators=(',', ':'))}")  # one line, ASCII

    run_stage(check, name="sweep_inputs")


if __name__ == "__main__":
    main()
