"""The sweep workflow's input check (mnist_pipeline/sweep_inputs.py): hostile inputs are
each refused in one line naming what is wrong and what is allowed, good ones come out as
JSON on one line whose `-S` arguments DVC applies as checked, and the check imports
neither DVC nor TensorFlow (the workflow runs it before installing them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from dvc.utils.serialize import load_yaml

from mnist_pipeline.params import read_params_file
from mnist_pipeline.stage import StageError
from mnist_pipeline.sweep_inputs import MAX_VALUES, NAMES, read_params_yaml, sweep_runs

from .helpers import PROJECT_ROOT, assert_one_line

PARAMS = read_params_yaml(PROJECT_ROOT / "params.yaml")
WORKFLOW = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "sweep.yml").read_text())


def leaves(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of a params.yaml's settings."""
    names = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            names += leaves(value, f"{prefix}{key}.")
        else:
            names.append(f"{prefix}{key}")
    return names


def setting(params: dict[str, Any], name: str) -> Any:
    """The value of the setting `name` (dotted) in a params.yaml's contents."""
    for key in name.split("."):
        params = params[key]
    return params


def refused(param: str, values: str, overrides: str = "") -> str:
    with pytest.raises(StageError) as error:
        sweep_runs(param, values, overrides, PARAMS)
    message = str(error.value)
    assert_one_line(message)
    return message


def test_the_settings_allowed_are_the_schemas_which_are_params_yamls():
    assert sorted(NAMES) == sorted(leaves(read_params_file()))
    assert {"seed", "train.learning_rate", "model.augment.zoom"} <= set(NAMES)


def test_params_yaml_is_read_as_dvcs_own_parser_reads_it():
    assert read_params_yaml() == read_params_file()


@pytest.mark.parametrize(
    ("param", "values", "overrides", "said"),
    [
        # param: one of the schema's settings, nothing else (a line break included)
        ("train.epochs\nEVIL=1", "[1]", "", r"param 'train.epochs\nEVIL=1' is not a setting"),
        ("train.lr", "[1]", "", "allowed: train.backend, train.optimizer, train.learning_rate"),
        ("model.augment.zom", "[1]", "", "allowed: model.augment.rotation, model.augment.zoom"),
        ("train", "[1]", "", "param 'train' is not a setting"),
        ("--help", "[1]", "", "allowed: seed, preprocess.val_size"),
        ("model.augment.zoom $(id)", "[0.1]", "", "is not a setting"),
        # values: a JSON list of distinct scalars, at most MAX_VALUES
        ("train.epochs", "3", "", "values is 3; give a non-empty JSON list"),
        ("train.epochs", '{"a": 1}', "", "values is {'a': 1}; give a non-empty JSON list"),
        ("train.epochs", "[]", "", "values is []; give a non-empty JSON list"),
        ("train.epochs", "[1,", "", "values is not JSON"),
        ("train.epochs", "[[1, 2]]", "", "values[0] is a list; give one of numbers, strings"),
        ("train.epochs", '[1, {"a": 1}]', "", "values[1] is a mapping"),
        ("train.epochs", json.dumps(list(range(1, 22))), "", "values has 21 items; at most 20"),
        ("train.epochs", "[1, 2, 1]", "", "values[2] = 1 repeats"),
        ("train.learning_rate", "[NaN]", "", "values: NaN is not a number"),
        ("train.learning_rate", "[1e999]", "", "values[0] = inf is not a finite number"),
        ("train.optimizer", '["*"]', "", "values[0] = '*' is not allowed; a string is 1 to 64"),
        ("train.optimizer", '["sgd; rm -rf ~"]', "", "is not allowed; a string is"),
        ("train.optimizer", '["sgd\\nX=1"]', "", r"values[0] = 'sgd\nX=1' is not allowed"),
        ("train.optimizer", '["${oc.env:HOME}"]', "", "is not allowed"),
        # values the schema refuses, with the stages' own message
        ("train.epochs", "[0]", "", "value train.epochs=0: train.epochs = 0 is invalid"),
        ("train.epochs", "[1.5]", "", "Input should be a valid integer"),
        ("train.optimizer", '["adam", "bogus"]', "", "Input should be 'adam', 'adamw'"),
        ("preprocess.max_train", "[true]", "", "preprocess.max_train = True is invalid"),
        ("model.conv_blocks", "[32]", "", "model.conv_blocks = 32 is invalid"),
        ("model.kernel_size", "[20]", "", "kernel_size=20 with conv_blocks=[[32, 64]] leaves"),
        # overrides: name=value items, each name a setting once, each value plain
        ("train.epochs", "[1]", "train.optimizer=*", "the value '*' is not allowed; a value is"),
        ("train.epochs", "[1]", "train.optimizer=sgd;id", "the value 'sgd;id' is not allowed"),
        ("train.epochs", "[1]", "train.optimizer=$(id)", "the value '$(id)' is not allowed"),
        ("train.epochs", "[1]", "seed=1\ntrain.batch_size=2", r"overrides holds '\n'"),
        ("train.epochs", "[1]", "train.lr=0.1", "the name 'train.lr' is not a setting"),
        ("train.epochs", "[1]", "+train.extra=1", "the name '+train.extra' is not a setting"),
        ("train.epochs", "[1]", "train.optimizer", "'train.optimizer' is not name=value"),
        ("train.epochs", "[1]", "seed=1 seed=2", "overrides: seed is set twice"),
        ("train.epochs", "[1]", "train.epochs=2", "train.epochs is the param swept"),
        ("train.epochs", "[1]", "seed=2024-01-01", "overrides: seed is a date"),
        ("train.epochs", "[1]", "train.batch_size=0", "overrides train.batch_size=0: train."),
    ],
)
def test_a_hostile_or_wrong_input_is_refused_in_one_line_saying_what_is_allowed(
    param, values, overrides, said
):
    assert said in refused(param, values, overrides)


def test_good_inputs_come_out_as_one_run_per_value_with_the_overrides():
    runs = sweep_runs(
        "train.optimizer", ' ["adam", "sgd"] ', " train.epochs=3  train.learning_rate=1e-3 ", PARAMS
    )
    assert runs == [
        {
            "name": "1-train-optimizer-adam",
            "set": ["train.optimizer=adam", "train.epochs=3", "train.learning_rate=0.001"],
        },
        {
            "name": "2-train-optimizer-sgd",
            "set": ["train.optimizer=sgd", "train.epochs=3", "train.learning_rate=0.001"],
        },
    ]
    values = json.dumps(list(range(64, 64 + MAX_VALUES)))
    assert len(sweep_runs("model.dense_units", values, "", PARAMS)) == MAX_VALUES


@pytest.mark.parametrize(
    ("param", "values", "overrides", "expected"),
    [
        ("train.learning_rate", "[0.0005, 1e-05, 2]", "", [0.0005, 1e-05, 2]),
        ("preprocess.max_train", "[null, 2000]", "preprocess.val_size=1000", [None, 2000]),
        ("model.batch_norm", "[true, false]", "train.optimizer=sgd", [True, False]),
        ("train.precision", '["float32", "mixed_bfloat16"]', "", ["float32", "mixed_bfloat16"]),
        ("seed", "[0, 7]", "train.deterministic=false model.augment.zoom=0.1", [0, 7]),
    ],
)
def test_dvc_puts_in_params_yaml_exactly_the_values_checked(
    tmp_path, param, values, overrides, expected
):
    """Each run's `-S` arguments, applied by DVC's own code (what `dvc exp run -S` does),
    give params.yaml the value swept and the overrides, with their types."""
    fixed = {name: yaml.safe_load(text) for name, text in (o.split("=") for o in overrides.split())}
    for run, value in zip(sweep_runs(param, values, overrides, PARAMS), expected, strict=True):
        params = shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
        apply_overrides(params, run["set"])
        applied = load_yaml(params)
        for name, wanted in {**fixed, param: value}.items():
            assert setting(applied, name) == wanted, name
            assert type(setting(applied, name)) is type(wanted), name


def check_step(tmp_path: Path, **inputs: str) -> tuple[subprocess.CompletedProcess, str]:
    """The workflow's check step, run as the runner runs it: its result and the lines
    it left for $GITHUB_OUTPUT."""
    (step,) = [s for s in WORKFLOW["jobs"]["inputs"]["steps"] if s.get("id") == "check"]
    output = tmp_path / "output"
    output.write_text("")  # a fresh one for each step
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=PROJECT_ROOT,
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "GITHUB_OUTPUT": str(output),
            **inputs,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, output.read_text()


def test_the_check_step_writes_one_output_line_or_one_error_line_and_nothing_else(tmp_path):
    good, written = check_step(
        tmp_path, PARAM="train.epochs", VALUES="[1, 2]", OVERRIDES="train.optimizer=sgd"
    )
    assert good.returncode == 0, good.stderr
    (line,) = written.splitlines()
    assert json.loads(line.removeprefix("runs="))[1]["set"] == [
        "train.epochs=2",
        "train.optimizer=sgd",
    ]
    bad, written = check_step(tmp_path, PARAM="train.epochs\nX=1", VALUES="[1]", OVERRIDES="")
    assert bad.returncode == 1 and written == ""
    (error,) = bad.stderr.splitlines()
    assert error.startswith(r"sweep_inputs: error: param 'train.epochs\nX=1' is not a setting")


def test_the_check_imports_neither_dvc_nor_tensorflow():
    script = (
        "import sys, mnist_pipeline.sweep_inputs\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    imported = set(json.loads(result.stdout.replace("'", '"'))) - {"__main__", "mnist_pipeline"}
    third_party = {name for name in imported if not name.startswith("_")}
    # What the workflow installs for it: pydantic (with its own three), numpy, ruamel.yaml,
    # platformdirs.
    assert third_party <= {
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
        "numpy",
        "ruamel",
        "platformdirs",
    }
