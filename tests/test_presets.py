"""Presets (presets/*.yaml): partial params.yaml files, each run as a DVC experiment by
`mnist-pipeline preset`, which prints the `dvc exp run` it runs; a preset with
a typo or a bad value is one line, and nothing is queued."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from mnist_pipeline.presets import override_value, settings

from .helpers import PROJECT_ROOT, run_command, run_dvc

PRESETS = sorted((PROJECT_ROOT / "presets").glob("*.yaml"))
DEFAULTS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def settings_value(params: dict, key: str) -> object:
    """The value of a dotted key in a params.yaml's contents."""
    for part in key.split("."):
        params = params[part]
    return params


def default_value(key: str) -> object:
    return settings_value(DEFAULTS, key)


def run_preset(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run_command(root, "preset", *args, timeout=120)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ([[16], [32, 64]], "[[16],[32,64]]"),
        ([0.1, 0.25], "[0.1,0.25]"),
        (True, "true"),
        (None, "null"),
        (1e-05, "1e-05"),
        (3, "3"),
        ("one_cycle", "one_cycle"),
        ("true", "'true'"),  # the string, not the boolean
        ("two words", "'two words'"),
        ("it's", "'it\\'s'"),
    ],
)
def test_values_are_written_as_dvc_exp_run_s_reads_them(value, written):
    assert override_value(value) == written
    # ... and read back as the same value by the parser `dvc exp run -S` uses
    parsed = OverridesParser.create().parse_override(f"key={written}").value()
    assert parsed == value and type(parsed) is type(value)


def test_there_is_a_fast_an_accurate_and_a_robust_preset():
    assert [path.name for path in PRESETS] == ["accurate.yaml", "fast.yaml", "robust.yaml"]


@pytest.mark.parametrize("path", PRESETS, ids=lambda path: path.stem)
def test_a_preset_holds_only_keys_of_params_yaml_with_other_values(path):
    pairs = settings(yaml.safe_load(path.read_text()))
    assert pairs
    for key, value in pairs:
        assert value != default_value(key), f"{path.name}: {key} is params.yaml's own value"


@pytest.mark.parametrize("preset", ["fast", "accurate", "robust"])
def test_a_preset_is_queued_as_an_experiment_with_its_values(project, preset):
    ran = run_preset(project, f"presets/{preset}.yaml", "--queue", "-n", f"{preset}-check")
    assert ran.returncode == 0, ran.stderr
    printed = ran.stdout.splitlines()[0]
    assert printed.startswith("preset: dvc exp run -S ")
    assert printed.endswith(f" --queue -n {preset}-check")
    shown = json.loads(run_dvc(project, "exp", "show", "--json").stdout)
    queued = next(
        run
        for commit in shown
        for run in commit.get("experiments") or []
        if run["name"] == f"{preset}-check"
    )
    assert queued["executor"]["state"] == "queued"
    params = queued["revs"][0]["data"]["params"]["params.yaml"]["data"]
    for key, value in settings(yaml.safe_load((project / f"presets/{preset}.yaml").read_text())):
        assert settings_value(params, key) == value, key
    assert params["seed"] == DEFAULTS["seed"]  # what the preset leaves alone is params.yaml's


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model:\n  conv_block: [[16], [32]]\n",
            "presets/bad.yaml: model.conv_block is not a key of params.yaml",
        ),
        (
            "train:\n  precision: bf16\n",
            "presets/bad.yaml on params.yaml: train.precision = 'bf16' is invalid: "
            "Input should be 'float32', 'mixed_bfloat16' or 'mixed_float16'",
        ),
        (
            "model:\n  block_dropout: [0.1, 0.1]\n",
            "presets/bad.yaml on params.yaml: model: block_dropout has 2 entries for 1 "
            "conv_blocks; give one per block",
        ),
        ("{}\n", "presets/bad.yaml sets nothing; a preset holds the keys it changes"),
    ],
)
def test_a_bad_preset_is_one_line_and_queues_nothing(project, text, message):
    (project / "presets/bad.yaml").write_text(text)
    ran = run_preset(project, "presets/bad.yaml", "--queue")
    assert ran.returncode == 1
    assert ran.stderr == f"mnist-pipeline preset: error: {message}\n"
    assert ran.stdout == ""
    assert "Queued" not in run_dvc(project, "queue", "status").stdout


def test_a_missing_preset_names_where_presets_are(project):
    ran = run_preset(project, "presets/fastest.yaml")
    assert ran.returncode == 1
    assert (
        ran.stderr
        == "mnist-pipeline preset: error: presets/fastest.yaml: no such preset; the presets are in presets/\n"
    )
