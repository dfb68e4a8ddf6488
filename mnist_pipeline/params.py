"""params.yaml: its schema, and loading it with one-line errors.

Every key is required: params.yaml is the one place a setting lives, so DVC sees
every value a stage uses. Each stage loads only the sections it reads.

The file is parsed by DVC's own loader (ruamel.yaml, YAML 1.2, duplicate keys refused),
so a stage uses exactly the values that `dvc params diff` and `dvc exp show` report:
`1e-3` is a float, `010` is ten, `on` is a string.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from dvc.utils.serialize import LOADERS, EncodingError, ParseError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mnist_pipeline.mnist import IMAGE_SIZE, NUM_CLASSES, TRAIN_COUNT
from mnist_pipeline.paths import PARAMS_FILE
from mnist_pipeline.stage import StageError

OPTIMIZERS = ("adam", "adamw", "nadam", "rmsprop", "sgd", "adadelta")


class _Section(BaseModel):
    # strict: "10" is not an int and 1.0 is not an int; extra: typos are errors.
    model_config = ConfigDict(extra="forbid", strict=True)


class PreprocessParams(_Section):
    val_size: int = Field(ge=NUM_CLASSES, le=TRAIN_COUNT - NUM_CLASSES)
    max_train: int | None = Field(ge=NUM_CLASSES)

    @model_validator(mode="after")
    def _cap_fits(self) -> PreprocessParams:
        left = TRAIN_COUNT - self.val_size
        if self.max_train is not None and self.max_train > left:
            raise ValueError(
                f"max_train={self.max_train} exceeds the {left} training images left after "
                f"val_size={self.val_size}; use null for all of them"
            )
        return self


class ModelParams(_Section):
    conv_filters: list[Annotated[int, Field(ge=1, le=512)]] = Field(min_length=1, max_length=6)
    kernel_size: int = Field(ge=1, le=IMAGE_SIZE)
    pool_size: int = Field(ge=1, le=IMAGE_SIZE)
    pooling: Literal["after_last", "after_each"]
    conv_dropout: float = Field(ge=0, lt=1)
    dense_units: int = Field(ge=1, le=4096)
    dense_dropout: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _shapes_fit(self) -> ModelParams:
        side = IMAGE_SIZE
        for _ in self.conv_filters:
            side -= self.kernel_size - 1
            if self.pooling == "after_each" and side >= self.pool_size:
                side //= self.pool_size
        if side < self.pool_size:
            raise ValueError(
                f"kernel_size={self.kernel_size} with conv_filters={self.conv_filters} "
                f"leaves a {max(side, 0)}x{max(side, 0)} map, smaller than "
                f"pool_size={self.pool_size}"
            )
        return self


class TrainParams(_Section):
    backend: Literal["tensorflow", "jax", "torch"]
    optimizer: Literal[OPTIMIZERS]  # type: ignore[valid-type]
    learning_rate: float = Field(gt=0, le=10)
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=TRAIN_COUNT)
    deterministic: bool
    distribution: Literal["none", "data_parallel"]
    lr_schedule: Literal["constant", "exponential", "cosine", "plateau"]
    lr_decay: float = Field(gt=0, lt=1)
    lr_patience: int = Field(ge=1, le=10_000)
    early_stopping_patience: int = Field(ge=0, le=10_000)


class Params(_Section):
    """The sections a stage asked for; the others stay None."""

    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    preprocess: PreprocessParams | None = None
    model: ModelParams | None = None
    train: TrainParams | None = None


SECTIONS = tuple(Params.model_fields)


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "preprocess": PreprocessParams,
    "model": ModelParams,
    "train": TrainParams,
}


def _format_error(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    key, kind, message = ".".join(loc), error["type"], error["msg"]
    if kind == "missing":
        return f"{key} is missing; add it to {PARAMS_FILE}"
    if kind == "extra_forbidden":
        allowed = ", ".join(_SECTION_MODELS[loc[0]].model_fields)
        return f"{key} is not a known key; allowed: {allowed}"
    if kind == "value_error":  # our own cross-field checks say it all themselves
        return f"{key}: {message.removeprefix('Value error, ')}"
    return f"{key} = {error['input']!r} is invalid: {message}"


def _parse_problem(error: ParseError) -> str:
    """One line from the YAML parser's complaint: what is wrong, and where."""
    if isinstance(error, EncodingError):
        return "not UTF-8 text"
    cause = error.__cause__
    problem = getattr(cause, "problem", None) or "cannot be parsed"
    mark = getattr(cause, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = problem.replace('"', "'")
    if "duplicate key" in problem:
        first = getattr(cause, "context_mark", None)
        first_line = f" (first at line {first.line + 1})" if first is not None else ""
        return f"{problem.split(' with value')[0]}{where}{first_line}; each key may appear once"
    return f"not valid YAML{where}: {problem}"


def read_params_file() -> dict[str, Any]:
    """params.yaml as DVC reads it: DVC's own loader, so the same YAML dialect (1.2).

    Raises StageError, in one line, for a missing file, bad YAML or a duplicate key.
    """
    try:
        raw = LOADERS[PARAMS_FILE.suffix](PARAMS_FILE)
    except FileNotFoundError:
        raise StageError(f"{PARAMS_FILE} not found: run the stages from the project root") from None
    except ParseError as error:
        raise StageError(f"{PARAMS_FILE}: {_parse_problem(error)}") from None
    if not isinstance(raw, dict):
        raise StageError(f"{PARAMS_FILE} must be a mapping of sections: {', '.join(SECTIONS)}")
    return raw


def load_params(*sections: str) -> Params:
    """Read params.yaml and validate the given top-level sections (e.g. "seed", "train").

    Raises StageError with one line naming the key, the value and what is allowed.
    """
    raw = read_params_file()
    unknown = sorted(str(key) for key in raw if key not in SECTIONS)
    if unknown:
        raise StageError(
            f"{PARAMS_FILE}: {unknown[0]} is not a known section; allowed: {', '.join(SECTIONS)}"
        )
    missing = [name for name in sections if name not in raw]
    if missing:
        raise StageError(f"{PARAMS_FILE}: {missing[0]} is missing; add it")
    try:
        params = Params.model_validate({name: raw[name] for name in sections})
    except ValidationError as error:
        errors = error.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StageError(f"{PARAMS_FILE}: {_format_error(errors[0])}{more}") from None
    empty = [name for name in sections if getattr(params, name) is None]
    if empty:
        raise StageError(f"{PARAMS_FILE}: {empty[0]} is empty; it needs a value")
    return params
