"""params.yaml validation: each rule gives one line naming the key, the value and what
is allowed; a stage with bad params stops before doing any work."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_pipeline.params import load_params
from mnist_pipeline.stage import StageError

from .helpers import PROJECT_ROOT, copy_project, run_script

DEFAULTS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def write_params(folder: Path, params: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def with_value(key: str, value: object) -> dict:
    """The default params with dotted `key` set to `value` (or removed, for ...)."""
    params = copy.deepcopy(DEFAULTS)
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return params


def test_the_committed_params_are_valid(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    params = load_params("seed", "preprocess", "model", "train")
    assert params.train.epochs == 10 and params.train.batch_size == 128
    assert params.model.conv_blocks == [[32, 64]] and params.model.dense_units == 128


# model.augment with every layer off, as params.yaml has it
NO_AUGMENTATION = {
    **dict.fromkeys(
        ("rotation", "zoom", "shift", "elastic", "stroke", "blur", "noise", "erasing"), 0.0
    ),
    "chance": 1.0,
}

CASES = [
    # (dotted key, bad value, sections to load, what the message must say)
    (
        "train.epochs",
        0,
        "train",
        "train.epochs = 0 is invalid: Input should be greater than or equal to 1",
    ),
    (
        "train.epochs",
        "10",
        "train",
        "train.epochs = '10' is invalid: Input should be a valid integer",
    ),
    ("train.epochs", 2.5, "train", "train.epochs = 2.5 is invalid"),
    ("train.epochs", True, "train", "train.epochs = True is invalid"),
    (
        "train.batch_size",
        0,
        "train",
        "train.batch_size = 0 is invalid: Input should be greater than or equal to 1",
    ),
    (
        "train.learning_rate",
        0,
        "train",
        "train.learning_rate = 0 is invalid: Input should be greater than 0",
    ),
    (
        "train.optimizer",
        "adamm",
        "train",
        "train.optimizer = 'adamm' is invalid: Input should be 'adam', 'adamw'",
    ),
    ("train.deterministic", "yes", "train", "train.deterministic = 'yes' is invalid"),
    ("train.epochs", ..., "train", "train.epochs is missing; add it to params.yaml"),
    (
        "train.epohcs",
        3,
        "train",
        "train.epohcs is not a known key; allowed: backend, optimizer, learning_rate, epochs",
    ),
    (
        "model.block_dropout",
        [1.0],
        "model",
        "model.block_dropout.0 = 1.0 is invalid: Input should be less than 1",
    ),
    (
        "model.block_dropout",
        [0.25, 0.25],
        "model",
        "model: block_dropout has 2 entries for 1 conv_blocks; give one per block",
    ),
    (
        "model.dense_dropout",
        -0.1,
        "model",
        "model.dense_dropout = -0.1 is invalid: Input should be greater than or equal to 0",
    ),
    ("model.dense_units", 0, "model", "model.dense_units = 0 is invalid"),
    (
        "model.conv_blocks",
        [],
        "model",
        "model.conv_blocks = [] is invalid: List should have at least 1 item",
    ),
    (
        "model.conv_blocks",
        [[32, 0]],
        "model",
        "model.conv_blocks.0.1 = 0 is invalid: Input should be greater than or equal to 1",
    ),
    (
        "model.kernel_size",
        15,
        "model",
        "model: kernel_size=15 with conv_blocks=[[32, 64]] leaves a 0x0 map before block 1's "
        "max_pool, smaller than 2x2",
    ),
    (
        "model.downsample",
        "avg_pool",
        "model",
        "model.downsample = 'avg_pool' is invalid: Input should be 'max_pool' or 'strided_conv'",
    ),
    (
        "model.augment",
        {**NO_AUGMENTATION, "rotation": 10.0, "shfit": 0.1},
        "model",
        "model.augment.shfit is not a known key; allowed: rotation, zoom, shift, elastic, "
        "stroke, blur, noise, erasing, chance",
    ),
    (
        "model.augment",
        {**NO_AUGMENTATION, "rotation": 200},
        "model",
        "model.augment.rotation = 200 is invalid: Input should be less than or equal to 180",
    ),
    (
        "train.precision",
        "bfloat16",
        "train",
        "train.precision = 'bfloat16' is invalid: Input should be 'float32', 'mixed_bfloat16' "
        "or 'mixed_float16'",
    ),
    (
        "train.lr_schedule",
        "onecycle",
        "train",
        "train.lr_schedule = 'onecycle' is invalid: Input should be 'constant', 'exponential', "
        "'cosine', 'one_cycle' or 'plateau'",
    ),
    (
        "train.label_smoothing",
        1.0,
        "train",
        "train.label_smoothing = 1.0 is invalid: Input should be less than 1",
    ),
    (
        "preprocess.val_size",
        60_000,
        "preprocess",
        "preprocess.val_size = 60000 is invalid: Input should be less than or equal to 59990",
    ),
    (
        "preprocess.val_size",
        5,
        "preprocess",
        "preprocess.val_size = 5 is invalid: Input should be greater than or equal to 10",
    ),
    (
        "preprocess.max_train",
        56_000,
        "preprocess",
        "preprocess: max_train=56000 exceeds the 55000 training images left after val_size=5000",
    ),
    ("preprocess.max_train", 0, "preprocess", "preprocess.max_train = 0 is invalid"),
    ("seed", -1, "seed", "seed = -1 is invalid: Input should be greater than or equal to 0"),
    ("seed", None, "seed", "seed is empty; it needs a value"),
    (
        "trian",
        {"epochs": 1},
        "train",
        "trian is not a known section; allowed: seed, preprocess, model, train",
    ),
    ("train", ..., "train", "train is missing; add it"),
    ("train", [1, 2], "train", "train = [1, 2] is invalid: Input should be a valid dictionary"),
]


@pytest.mark.parametrize(
    ("key", "value", "section", "message"), CASES, ids=[c[0] + ":" + repr(c[1]) for c in CASES]
)
def test_bad_param_is_one_line_naming_key_value_and_rule(
    tmp_path, monkeypatch, key, value, section, message
):
    write_params(tmp_path, with_value(key, value))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StageError) as error:
        load_params(section)
    text = str(error.value)
    assert text.startswith("params.yaml: ")
    assert message in text
    assert "\n" not in text


def test_a_stage_only_checks_the_sections_it_reads(tmp_path, monkeypatch):
    write_params(tmp_path, with_value("train.epochs", 0))
    monkeypatch.chdir(tmp_path)
    assert (
        load_params("seed", "preprocess").preprocess.val_size == DEFAULTS["preprocess"]["val_size"]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("train: [unclosed", "params.yaml: not valid YAML at line 1: expected ',' or ']'"),
        (
            "seed: 1\nseed: 2\n",
            "params.yaml: found duplicate key 'seed' at line 2 \\(first at line 1\\)",
        ),
        ("- 1\n- 2\n", "must be a mapping"),
    ],
)
def test_unreadable_params_file_is_one_line(tmp_path, monkeypatch, content, message):
    (tmp_path / "params.yaml").write_text(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StageError, match=message):
        load_params("train")


def test_missing_params_file_says_to_run_from_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        StageError, match=r"params\.yaml not found: run the stages from the project root"
    ):
        load_params("train")


@pytest.mark.parametrize(
    ("stage", "key", "value"),
    [("preprocess", "preprocess.val_size", 0), ("train", "train.epochs", 0)],
)
def test_stage_with_bad_params_exits_with_one_line_and_writes_nothing(tmp_path, stage, key, value):
    root = copy_project(tmp_path / "project")
    write_params(root, with_value(key, value))
    before = sorted(p.relative_to(root) for p in root.rglob("*") if ".git" not in p.parts)
    result = run_script(root, stage)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{stage}: error: params.yaml: {key} = {value} is invalid: Input should be greater than or equal to "
        + ("10" if stage == "preprocess" else "1")
    )
    after = sorted(p.relative_to(root) for p in root.rglob("*") if ".git" not in p.parts)
    assert after == before


SECTION_KEYS = [
    f"{section}.{key}"
    for section, keys in DEFAULTS.items()
    if isinstance(keys, dict)
    for key in keys
]
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(min_value=-5, max_value=5000), max_size=8),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
MUTATION = st.tuples(
    st.sampled_from(["set", "delete", "add"]),
    st.sampled_from([*SECTION_KEYS, *DEFAULTS]),
    ANY_VALUE,
)


def mutate(params: dict, operation: str, key: str, value: object) -> str:
    """Apply one mutation; return the dotted key it touched."""
    *parents, last = key.split(".")
    node = params
    for part in parents:
        if not isinstance(node.get(part), dict):
            return key  # an earlier mutation replaced or removed the section
        node = node[part]
    if operation == "add":
        last = f"{last}_typo"
        node[last] = value
    elif operation == "delete":
        node.pop(last, None)
    else:
        node[last] = value
    return ".".join([*parents, last])


@settings(max_examples=300, deadline=None)
@given(st.lists(MUTATION, min_size=1, max_size=3))
def test_any_params_file_validates_or_fails_with_one_line_naming_a_touched_key(mutations):
    params = copy.deepcopy(DEFAULTS)
    touched = [mutate(params, *mutation) for mutation in mutations]
    with tempfile.TemporaryDirectory() as folder:
        write_params(Path(folder), params)
        previous = os.getcwd()
        os.chdir(folder)
        try:
            load_params(*DEFAULTS)
        except StageError as error:
            message = str(error)
            assert "\n" not in message and message.startswith("params.yaml")
            # The full key or its own name, not just the section it sits in.
            names = {key for key in touched} | {key.split(".")[-1] for key in touched}
            assert any(name in message for name in names), (message, touched)
        finally:
            os.chdir(previous)
