"""Run a preset (presets/*.yaml: a partial params.yaml) as a DVC experiment.

    mnist-pipeline preset presets/fast.yaml [dvc exp run options...]

Turns every key the preset sets into a `-S key=value` of `dvc exp run`, prints the whole
command, and runs it from here. Options after the preset go to `dvc exp run` as they are:
`--queue -S seed=1,2,3,4,5` queues a grid over seeds, `-n fast-1` names the experiment.
The preset is checked first: every key must be one of params.yaml's, and params.yaml
with the preset applied must pass the same checks as the stages make.
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from mnist_pipeline.params import SECTIONS, read_params_file, validate_params
from mnist_pipeline.stage import StageError, printable


def settings(preset: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """The preset's (dotted key, value) pairs, in file order; a list is one value."""
    pairs: list[tuple[str, Any]] = []
    for key, value in preset.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs.extend(settings(value, f"{name}."))
        else:
            pairs.append((name, value))
    return pairs


_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a string Hydra reads as one, unquoted
_KEYWORDS = {"true", "false", "null", "nan", "inf"}


def override_value(value: Any) -> str:
    """A value as `dvc exp run -S` parses it (Hydra's override grammar), type kept."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    text = str(value)
    if _BARE.fullmatch(text) and text.lower() not in _KEYWORDS:
        return text
    # Quoted: Hydra unescapes only a backslash before a quote, and expands ${...}.
    if "\\" in text or "${" in text:
        raise StageError(
            f"{printable(repr(text), 40)}: a string with \\ or ${{ cannot pass through "
            "dvc exp run -S unchanged; write it in params.yaml"
        )
    return "'" + text.replace("'", "\\'") + "'"


def applied(params: dict[str, Any], preset: dict[str, Any], path: Path) -> dict[str, Any]:
    """params.yaml's contents with the preset's values put in; a key params.yaml does not
    have is an error (a typo in a preset would otherwise only fail in the experiment)."""
    merged = copy.deepcopy(params)
    for key, value in settings(preset):
        *parents, leaf = key.split(".")
        mapping = merged
        for parent in parents:
            mapping = mapping.get(parent) if isinstance(mapping, dict) else None
        if not isinstance(mapping, dict) or leaf not in mapping:
            raise StageError(f"{path}: {printable(key, 80)} is not a key of params.yaml")
        mapping[leaf] = value
    return merged


def command(path: Path, options: list[str]) -> list[str]:
    """The `dvc exp run` that runs the preset at `path`, checked against params.yaml."""
    preset = read_params_file(path)
    if not preset:
        raise StageError(f"{path} sets nothing; a preset holds the keys it changes")
    validate_params(applied(read_params_file(), preset, path), SECTIONS, f"{path} on params.yaml")
    flags = [
        part for key, value in settings(preset) for part in ("-S", f"{key}={override_value(value)}")
    ]
    return ["dvc", "exp", "run", *flags, *options]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", type=Path, help="a preset file, like presets/fast.yaml")
    parser.add_argument(
        "options", nargs=argparse.REMAINDER, help="passed to `dvc exp run` as they are"
    )


def run(args: argparse.Namespace) -> None:
    path: Path = args.preset
    if path.suffix not in (".yaml", ".yml"):
        raise StageError(f"{path}: a preset is a .yaml file, like presets/fast.yaml")
    if not path.is_file():
        raise StageError(f"{path}: no such preset; the presets are in presets/")
    run = command(path, args.options)
    print(f"preset: {shlex.join(run)}", flush=True)
    sys.exit(subprocess.run(run, check=False).returncode)  # DVC has said what failed
