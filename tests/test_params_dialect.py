"""The stages read params.yaml in DVC's YAML dialect: for every spelling, the value a
stage uses is the value `dvc params diff --json` and `dvc exp show --json` report, or
both refuse the file; a stage's refusal is one line naming the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mnist_pipeline.params import load_params, read_params_file
from mnist_pipeline.stage import StageError

from .helpers import dvc, run_script

# (dotted key, the committed line, the spelling written instead, the value DVC reads)
SPELLINGS = [
    ("train.learning_rate", "  learning_rate: 0.001", "  learning_rate: 1e-3", 0.001),
    ("train.learning_rate", "  learning_rate: 0.001", "  learning_rate: 5E-4", 0.0005),
    ("model.dense_dropout", "  dense_dropout: 0.5", "  dense_dropout: .25", 0.25),
    ("seed", "seed: 42", "seed: 010", 10),  # YAML 1.1 (PyYAML) reads 8
    ("seed", "seed: 42", "seed: 0x10", 16),
    ("train.deterministic", "  deterministic: true", "  deterministic: on", "on"),
    ("preprocess.val_size", "  val_size: 5000", "  val_size: 1:30", "1:30"),  # 1.1: 90
]


def respell(root: Path, line: str, spelling: str) -> None:
    """Write `spelling` in place of the committed `line` of the project's params.yaml."""
    path = root / "params.yaml"
    committed = path.read_text()
    assert line in committed
    path.write_text(committed.replace(line, spelling, 1))


def lookup(data: dict, key: str) -> object:
    for part in key.split("."):
        data = data[part]
    return data


def same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(
    ("key", "line", "spelling", "dvc_value"), SPELLINGS, ids=[s[2].strip() for s in SPELLINGS]
)
def test_stage_reads_each_spelling_as_dvc_does(
    project, monkeypatch, key, line, spelling, dvc_value
):
    respell(project, line, spelling)
    diff = json.loads(dvc(project, "params", "diff", "--all", "--json").stdout)
    assert same(diff["params.yaml"][key]["new"], dvc_value)
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    workspace = next(entry for entry in shown if entry["rev"] == "workspace")
    assert same(lookup(workspace["data"]["params"]["params.yaml"]["data"], key), dvc_value)

    monkeypatch.chdir(project)  # the stages read params.yaml from the project root
    assert same(lookup(read_params_file(), key), dvc_value)  # what the stage parsed
    section = key.split(".")[0]
    try:
        params = load_params(section)
    except StageError as error:  # refused by the schema: one line naming the key
        message = str(error)
        assert "\n" not in message and message.startswith(f"params.yaml: {key} = ")
        assert repr(dvc_value) in message
    else:
        assert same(lookup(params.model_dump(), key), dvc_value)


def test_duplicate_key_is_refused_by_dvc_and_by_the_stage_in_one_line(project):
    respell(project, "seed: 42", "seed: 42\nseed: 7")
    refused = dvc(project, "params", "diff", "--json")
    # DVC reports the file corrupted and reads no workspace value from it at all
    assert "'params.yaml', YAML file structure is corrupted" in refused.stderr
    assert json.loads(refused.stdout)["params.yaml"]["seed"]["new"] is None
    result = run_script(project, "train")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert re.fullmatch(
        r"train: error: params\.yaml: found duplicate key 'seed' at line \d+ \(first at line \d+\); each key may appear once",
        line,
    )


@pytest.mark.parametrize(
    ("line", "spelling", "message"),
    [
        (
            "  deterministic: true",
            "  deterministic: on",
            "train: error: params.yaml: train.deterministic = 'on' is invalid: Input should be a valid boolean",
        ),
        (
            "  learning_rate: 0.001",
            "  learning_rate: 1e3",
            "train: error: params.yaml: train.learning_rate = 1000.0 is invalid: Input should be less than or equal to 10",
        ),
    ],
)
def test_stage_refuses_a_value_of_the_wrong_kind_in_one_line(project, line, spelling, message):
    respell(project, line, spelling)
    result = run_script(project, "train")
    assert result.returncode == 1
    assert result.stderr.strip() == message
