"""params.yaml: its schema, and loading it with one-line errors.

Every key is required: params.yaml is the one place a setting lives, so DVC sees
every value a stage uses. Each stage loads only the sections it reads.

The file is parsed by DVC's own loader (ruamel.yaml, YAML 1.2, duplicate keys refused),
so a stage uses exactly the values that `dvc params diff` and `dvc exp show` report:
`1e-3` is a float, `010` is ten, `on` is a string.

Whatever the file holds, a stage that cannot use it says so in one short line, at once:
a file too big or nested too deep to parse quickly is refused before parsing, and every
key or value a message quotes is cut short and has its control characters escaped.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.events import (
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)

from mnist_pipeline.mnist import IMAGE_SIZE, NUM_CLASSES, TEST_COUNT, TRAIN_COUNT
from mnist_pipeline.paths import PARAMS_FILE
from mnist_pipeline.stage import StageError, printable

OPTIMIZERS = ("adam", "adamw", "nadam", "rmsprop", "sgd", "adadelta")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # Keras dtype policies


class _Section(BaseModel):
    # strict: "10" is not an int and 1.0 is not an int; extra: typos are errors.
    model_config = ConfigDict(extra="forbid", strict=True)


class PreprocessParams(_Section):
    val_size: int = Field(
        ge=NUM_CLASSES,
        le=TRAIN_COUNT - NUM_CLASSES,
        description="training images held out (stratified) for validation",
    )
    max_train: int | None = Field(
        ge=NUM_CLASSES,
        description="cap on training images (a stratified subset), for quick runs; at most "
        "60,000 minus `val_size`; `null` = all",
    )

    @model_validator(mode="after")
    def _cap_fits(self) -> PreprocessParams:
        left = TRAIN_COUNT - self.val_size
        if self.max_train is not None and self.max_train > left:
            raise ValueError(
                f"max_train={self.max_train} exceeds the {left} training images left after "
                f"val_size={self.val_size}; use null for all of them"
            )
        return self


class AugmentParams(_Section):
    rotation: float = Field(
        ge=0,
        le=180,
        description="random rotation of each training image, up to this many degrees either "
        "way; 0 = off",
    )
    zoom: float = Field(ge=0, lt=1, description="random zoom in or out, up to this fraction")
    shift: float = Field(
        ge=0, lt=1, description="random shift along each axis, up to this fraction of the side"
    )
    elastic: float = Field(
        ge=0,
        le=10,
        description="Simard's elastic distortion: every pixel moves along a smooth random field "
        "whose root mean square is up to this many pixels (Simard's is about 1.4)",
    )
    stroke: float = Field(
        ge=0,
        le=3,
        description="strokes made thinner or bolder by up to this many pixels each side "
        "(gray-scale erosion or dilation)",
    )
    blur: float = Field(
        ge=0, le=1.5, description="a Gaussian blur whose sigma is up to this many pixels"
    )
    noise: float = Field(
        ge=0,
        le=1,
        description="Gaussian noise whose standard deviation is up to this share of white",
    )
    erasing: float = Field(
        ge=0,
        le=1,
        description="the chance that a random patch (2% to 20% of the image) is erased",
    )
    chance: float = Field(
        gt=0,
        le=1,
        description="the chance that each of `elastic`, `stroke`, `blur` and `noise` changes a "
        "training image (the rest pass as they are)",
    )


class ModelParams(_Section):
    conv_blocks: list[
        Annotated[list[Annotated[int, Field(ge=1, le=512)]], Field(min_length=1, max_length=6)]
    ] = Field(
        min_length=1,
        max_length=6,
        description="the filters of each 'valid' Conv2D + ReLU, block by block; each block "
        "ends in its downsampling step and its dropout",
    )
    kernel_size: int = Field(
        ge=1,
        le=IMAGE_SIZE,
        description="the square kernel of those convs; the blocks must leave a map at least as "
        "large as each downsampling step",
    )
    downsample: Literal["max_pool", "strided_conv"] = Field(
        description="how each block ends: a `pool_size` max-pool, or a 5x5 conv with stride 2, "
        "'same' padding and the block's last filter count"
    )
    pool_size: int = Field(ge=2, le=IMAGE_SIZE, description="the max-pool window")
    block_dropout: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        min_length=1, max_length=6, description="dropout after each block, one per block"
    )
    batch_norm: bool = Field(
        description="BatchNormalization after every conv and the hidden Dense (after the ReLU)"
    )
    dense_units: int = Field(ge=1, le=4096, description="the hidden Dense + ReLU layer")
    dense_dropout: float = Field(ge=0, lt=1, description="dropout before the 10-way softmax")
    background_window: int = Field(
        ge=0,
        le=IMAGE_SIZE,
        description="each image minus its background: what a gray-scale opening over this many "
        "pixels leaves (strokes are narrower), so a gray, uneven or hazy background becomes "
        "MNIST's black, in training and at inference; 0 = off",
    )
    stretch_contrast: bool = Field(
        description="each image's darkest pixel made black and its brightest white, in "
        "training and at inference"
    )
    augment: AugmentParams

    @model_validator(mode="after")
    def _shapes_fit(self) -> ModelParams:
        if len(self.block_dropout) != len(self.conv_blocks):
            raise ValueError(
                f"block_dropout has {len(self.block_dropout)} entries for "
                f"{len(self.conv_blocks)} conv_blocks; give one per block"
            )
        side = IMAGE_SIZE
        for number, block in enumerate(self.conv_blocks, start=1):
            side -= len(block) * (self.kernel_size - 1)
            smallest = self.pool_size if self.downsample == "max_pool" else 1
            if side < smallest:
                raise ValueError(
                    f"kernel_size={self.kernel_size} with conv_blocks={self.conv_blocks} "
                    f"leaves a {max(side, 0)}x{max(side, 0)} map before block "
                    f"{number}'s {self.downsample}, smaller than "
                    f"{smallest}x{smallest}"
                )
            side = side // self.pool_size if self.downsample == "max_pool" else (side + 1) // 2
        return self


class TrainParams(_Section):
    backend: Literal["tensorflow", "jax", "torch"] = Field(
        description="Keras 3's backend for training (JAX's CPU build comes with the dev "
        "extras, its CUDA build with the `cuda` extras; install torch yourself); on JAX the "
        "data stays on the device and a GPU runs an epoch as one compiled call "
        "([GPUs](docs/gpu.md)); the saved model evaluates under any, and export runs on "
        "TensorFlow"
    )
    optimizer: Literal[OPTIMIZERS] = Field(description="the optimizer")  # type: ignore[valid-type]
    learning_rate: float = Field(
        gt=0, le=10, description="the optimizer's learning rate (a schedule's peak)"
    )
    epochs: int = Field(ge=1, le=10_000, description="passes over the training images")
    batch_size: int = Field(ge=1, le=TRAIN_COUNT, description="images per training step")
    deterministic: bool = Field(
        description="identical reruns: TensorFlow's op determinism; on JAX, XLA's "
        "deterministic GPU kernels"
    )
    distribution: Literal["none", "data_parallel"] = Field(
        description="`data_parallel`: train on every local accelerator with the backend's own "
        "engine (TensorFlow or JAX)"
    )
    lr_schedule: Literal["constant", "exponential", "cosine", "one_cycle", "plateau"] = Field(
        description="how the learning rate moves "
        "([details](docs/params.md#learning-rate-schedules))"
    )
    lr_warmup: float = Field(
        ge=0, lt=1, description="the fraction of all steps that `one_cycle` rises over"
    )
    lr_decay: float = Field(gt=0, lt=1, description="the factor of `exponential` and `plateau`")
    lr_patience: int = Field(
        ge=1,
        le=10_000,
        description="epochs without a better validation loss before `plateau` cuts the rate",
    )
    early_stopping_patience: int = Field(
        ge=0,
        le=10_000,
        description="stop after this many epochs without a better validation loss, keeping "
        "the best epoch's weights; 0 = off",
    )
    label_smoothing: float = Field(
        ge=0,
        lt=1,
        description="the loss's target is 1 minus this for the true digit, the rest shared by "
        "the others",
    )
    precision: Literal[PRECISIONS] = Field(  # type: ignore[valid-type]
        description="Keras's dtype policy: `mixed_bfloat16` for CPUs with AVX512_BF16 or AMX "
        "and recent GPUs, `mixed_float16` for GPUs; elsewhere a one-line note says it is "
        "emulated"
    )


class RobustnessParams(_Section):
    seed: int = Field(
        ge=0,
        le=2**32 - 1,
        description="seeds the robustness suite's corruptions; fixed, so every experiment is "
        "scored on the same digits",
    )
    test_images: int = Field(
        ge=NUM_CLASSES,
        le=TEST_COUNT,
        description="test images (a stratified, seeded sample) that each corruption is applied "
        "to; each rendered set holds as many digits in fonts, at most all 1,520",
    )


class EvaluateParams(_Section):
    min_robustness: float | None = Field(
        ge=0,
        le=1,
        description="the robustness stage fails when the suite's mean accuracy is below this; "
        "`null` = no gate",
    )


class Params(_Section):
    """The sections a stage asked for; the others stay None. Every key's field carries its
    description, from which `mnist-pipeline docs` writes the README's params table."""

    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="seeds the validation split, weight init, dropout, augmentation and shuffling",
    )
    preprocess: PreprocessParams | None = None
    model: ModelParams | None = None
    train: TrainParams | None = None
    robustness: RobustnessParams | None = None
    evaluate: EvaluateParams | None = None


SECTIONS = tuple(Params.model_fields)


_MAPPINGS: dict[tuple[str, ...], type[BaseModel]] = {  # where each mapping of keys sits
    ("preprocess",): PreprocessParams,
    ("model",): ModelParams,
    ("model", "augment"): AugmentParams,
    ("train",): TrainParams,
    ("robustness",): RobustnessParams,
    ("evaluate",): EvaluateParams,
}

# Limits on the file itself, so that no file makes a stage hang or crash before it can
# say what is wrong. The YAML parser is pure Python (about 50 KB/s at worst).
MAX_FILE_BYTES = 16 * 1024  # ten times the committed file
MAX_DEPTH = 8  # collections inside collections; params need 4 (file, section, list, list)


class _Short(reprlib.Repr):
    """repr() cut short at every level: an alias bomb's billion items print as a few."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 4
        self.maxstring = self.maxother = self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() refuses ints over 4300 digits, and is slow
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


_SHORT = _Short()


def _shown(value: object) -> str:
    """Any value from params.yaml as a message shows it: its repr, short and printable."""
    return printable(_SHORT.repr(value), 80)


def _name(key: object) -> str:
    """A key as a message names it: bare if a short printable string, else shown as a value."""
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 40:
        return key
    return _shown(key)


def _format_error(error: dict[str, Any]) -> str:
    loc = error["loc"]
    key, kind = ".".join(_name(part) for part in loc), error["type"]
    message = printable(error["msg"], 200)
    if kind == "missing":
        return f"{key} is missing; add it to {PARAMS_FILE}"
    if kind == "extra_forbidden":
        mapping = _MAPPINGS.get(tuple(loc[:-1]))
        allowed = f"; allowed: {', '.join(mapping.model_fields)}" if mapping else ""
        return f"{key} is not a known key{allowed}"
    if kind == "value_error":  # our own cross-field checks say it all themselves
        return f"{key}: {message.removeprefix('Value error, ')}"
    return f"{key} = {_shown(error['input'])} is invalid: {message}"


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _parse_problem(error: Exception, text: str) -> str:
    """One line from the YAML parser's complaint: what is wrong, and where."""
    cause = error.__cause__
    problem = getattr(cause, "problem", None) or str(cause or "").split("\n")[0]
    problem = problem.replace('"', "'") or "cannot be parsed"
    mark = getattr(cause, "problem_mark", None)
    position = getattr(cause, "position", None)  # a ReaderError's: a character the file holds
    if mark is not None:
        where = f" at line {mark.line + 1}"
    elif position is not None:
        where = f" at line {_line(text, position)}"
    else:
        where = ""
    if "duplicate key" in problem:
        first = getattr(cause, "context_mark", None)
        first_line = f" (first at line {first.line + 1})" if first is not None else ""
        problem = printable(problem.split(" with value")[0], 120)
        return f"{problem}{where}{first_line}; each key may appear once"
    return f"not valid YAML{where}: {printable(problem, 120)}"


def _read_text(path: Path) -> str:
    """params.yaml's text, as DVC reads it (UTF-8, universal newlines), if not too big."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
            size = max(len(data), os.fstat(file.fileno()).st_size)
    except FileNotFoundError:
        raise StageError(f"{path} not found: run the stages from the project root") from None
    if size > MAX_FILE_BYTES:
        raise StageError(
            f"{path} is {size:,} bytes; at most {MAX_FILE_BYTES:,} are allowed "
            "(it holds settings, not data)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise StageError(
            f"{path}: not UTF-8 text (byte {data[error.start]:#04x} at line {line}); "
            "save it as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


_DECIMAL = re.compile(r"[-+]?[0-9_]+")  # YAML 1.2's decimal integers, as the parser reads them
# Python's int() refuses longer decimal strings (0: no limit, before 3.10.7)
_MAX_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 0)()


def _shape_problem(text: str) -> str | None:
    """What, in the YAML's structure, DVC's loader would choke on or hang over: nesting
    deeper than MAX_DEPTH, a key that is a collection or an alias, or an integer too long
    for Python to convert. None if none of these (or if the YAML is invalid: DVC's loader
    then says why)."""
    # One entry per open collection: a mapping's says whether its next node is a key.
    mapping_awaits_key: list[bool | None] = []
    try:
        for event in YAML(typ="safe").parse(text):
            line = event.start_mark.line + 1
            if isinstance(event, NodeEvent) and mapping_awaits_key:
                if mapping_awaits_key[-1] and not isinstance(event, ScalarEvent):
                    return f"the key at line {line} is a list, mapping or alias; keys are names"
                if mapping_awaits_key[-1] is not None:
                    mapping_awaits_key[-1] = not mapping_awaits_key[-1]
            if isinstance(event, CollectionStartEvent):
                mapping_awaits_key.append(True if isinstance(event, MappingStartEvent) else None)
                if len(mapping_awaits_key) > MAX_DEPTH:
                    return f"nested over {MAX_DEPTH} deep at line {line}; params need 4 levels"
            elif isinstance(event, CollectionEndEvent):
                mapping_awaits_key.pop()
            elif isinstance(event, ScalarEvent) and event.style is None and event.tag is None:
                digits = sum(c.isdigit() for c in event.value)
                if 0 < _MAX_DIGITS < digits and _DECIMAL.fullmatch(event.value):
                    return (
                        f"the number at line {line} has {digits:,} digits; "
                        f"at most {_MAX_DIGITS:,} are allowed"
                    )
    except YAMLError:
        return None
    return None


def read_params_file(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml (or a file like it: a preset) as DVC reads it: DVC's own parser, so
    the same YAML dialect (1.2).

    Raises StageError, in one line, for a missing, huge or non-UTF-8 file, bad YAML, a
    duplicate key, or a value the parser cannot build.
    """
    # Imported here, not above: the schema is usable where DVC is not installed
    # (bench/gpu.py on a GPU machine).
    from dvc.utils.serialize import PARSERS, ParseError

    text = _read_text(path)
    problem = _shape_problem(text)
    if problem:
        raise StageError(f"{path}: {problem}")
    try:
        raw = PARSERS[path.suffix](text, path)
    except ParseError as error:
        raise StageError(f"{path}: {_parse_problem(error, text)}") from None
    except RecursionError:
        raise StageError(f"{path}: nested too deep to read; params need 4 levels") from None
    except (ValueError, LookupError, TypeError) as error:
        # The parser's constructors fail this way on a scalar that looks like, or is
        # tagged as, a type it is not: 2024-13-01, !!int abc, !!bool maybe.
        detail = printable(f"{type(error).__name__}: {error}", 80)
        raise StageError(
            f"{path}: a value cannot be read ({detail}); write numbers, strings, "
            "true/false or null, without !! tags"
        ) from None
    if not isinstance(raw, dict):
        raise StageError(f"{path} must be a mapping of sections: {', '.join(SECTIONS)}")
    return raw


def load_params(*sections: str) -> Params:
    """Read params.yaml and validate the given top-level sections (e.g. "seed", "train").

    Raises StageError with one line naming the key, the value and what is allowed.
    """
    return validate_params(read_params_file(), sections)


def validate_params(
    raw: dict[str, Any], sections: tuple[str, ...], source: str = str(PARAMS_FILE)
) -> Params:
    """Check the given sections of a params.yaml's contents (from `source`, which the
    messages name) against the schema.

    Raises StageError with one line naming the key, the value and what is allowed.
    """
    unknown = sorted(_name(key) for key in raw if key not in SECTIONS)
    if unknown:
        raise StageError(
            f"{source}: {unknown[0]} is not a known section; allowed: {', '.join(SECTIONS)}"
        )
    missing = [name for name in sections if name not in raw]
    if missing:
        raise StageError(f"{source}: {missing[0]} is missing; add it")
    try:
        params = Params.model_validate({name: raw[name] for name in sections})
    except ValidationError as error:
        errors = error.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StageError(f"{source}: {_format_error(errors[0])}{more}") from None
    empty = [name for name in sections if getattr(params, name) is None]
    if empty:
        raise StageError(f"{source}: {empty[0]} is empty; it needs a value")
    return params
