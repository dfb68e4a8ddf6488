"""How the train stage trains: the model built and compiled (or resumed from a
checkpoint), then fitted over a seeded batch order (on JAX each epoch one compiled call,
see compiled_epoch.py; elsewhere one `model.fit()`), with callbacks that log each epoch
live, checkpoint it, and (when asked) schedule the learning rate and stop early, every
one of them resumable.

A checkpoint (see checkpoint.py for the store) holds every model variable (weights, and
the random layers' generator states), every optimizer variable (its step count and
learning rate too), the best weights early stopping keeps, as arrays; and as JSON, each
finished epoch's logged metrics, whether a callback stopped training, and the counters
of the callbacks that keep some.

Importing this module imports Keras: the train stage chooses the backend first.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mnist_pipeline.backend import import_keras
from mnist_pipeline.distribution import device_line, distribution_scope
from mnist_pipeline.mnist import NUM_CLASSES
from mnist_pipeline.model import build_model, precision_note
from mnist_pipeline.paths import TRAINING_LOG_DIR, TRAINING_TIME_DIR
from mnist_pipeline.stage import StageError

log = logging.getLogger(__name__)

keras = import_keras()  # on the backend the train stage chose

if TYPE_CHECKING:
    from mnist_pipeline.checkpoint import Store
    from mnist_pipeline.params import Params, TrainParams


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; make TensorFlow's ops deterministic if asked."""
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The shuffle of one epoch: a function of seed and epoch alone, so a resumed run
    sees the same batches as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(count)


EpochOrder = Callable[[int], np.ndarray]  # an epoch's order of the training images


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Batches in an epoch of `count` images: the last one smaller, as in the seed."""
    return math.ceil(count / batch_size)


class EpochBatches(keras.utils.PyDataset):
    """The training batches of epochs `first_epoch` to `epochs - 1`, as one stream.

    Each epoch is `epoch_order(seed, epoch)` cut into batches (the last one smaller, as
    in the seed). Batch i is a pure function of i, so Keras may prefetch freely and a
    resumed run gets exactly the batches an uninterrupted one does. Fit it with
    `steps_per_epoch=batches_per_epoch` and `shuffle=False`.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        first_epoch: int,
        epochs: int,
    ) -> None:
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.first_epoch, self.epochs = first_epoch, epochs
        self.batches_per_epoch = steps_per_epoch(len(labels), batch_size)
        self.order: EpochOrder = lru_cache(maxsize=2)(
            lambda epoch: epoch_order(seed, epoch, len(labels))
        )

    def __len__(self) -> int:
        return self.batches_per_epoch * (self.epochs - self.first_epoch)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, batch = divmod(index, self.batches_per_epoch)
        start = batch * self.batch_size
        rows = self.order(self.first_epoch + epoch)[start : start + self.batch_size]
        return self.images[rows], self.labels[rows]


class _Resumable(keras.callbacks.Callback):
    """A callback made from the run's train params, whose attributes named in STATE go
    into the checkpoint, and are set back from `saved` as training begins."""

    STATE: tuple[str, ...] = ()
    saved: dict[str, Any] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        for name, value in (self.saved or {}).items():
            setattr(self, name, value)

    def state(self) -> dict[str, int | float | None]:
        """The STATE attributes as JSON: whole numbers (counters), numbers, or null."""
        values = {name: getattr(self, name) for name in self.STATE}
        return {
            name: value if value is None or isinstance(value, int) else float(value)
            for name, value in values.items()
        }


class ResumableEarlyStopping(_Resumable, keras.callbacks.EarlyStopping):
    """Stop when val_loss has not improved for `patience` epochs, and keep the weights of
    the best epoch; its counters and best weights go into the checkpoint."""

    STATE = ("wait", "best", "best_epoch", "stopped_epoch")

    def __init__(self, params: TrainParams) -> None:
        patience = params.early_stopping_patience
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        super().on_train_end(logs)
        if self.stopped_epoch:
            log.info(
                f"stopped early after epoch {self.stopped_epoch + 1}: val_loss has not "
                f"improved for {self.patience} epochs; keeping the weights of epoch "
                f"{self.best_epoch + 1}"
            )


class ResumablePlateau(_Resumable, keras.callbacks.ReduceLROnPlateau):
    """Multiply the learning rate by `factor` when val_loss has not improved for
    `patience` epochs; its counters go into the checkpoint (the rate itself is an
    optimizer variable)."""

    STATE = ("wait", "best", "cooldown_counter")

    def __init__(self, params: TrainParams) -> None:
        super().__init__(monitor="val_loss", factor=params.lr_decay, patience=params.lr_patience)


def _resumable(params: TrainParams) -> dict[str, type[_Resumable]]:
    """The callbacks this run uses whose state a checkpoint keeps, by name."""
    kinds: dict[str, type[_Resumable]] = {}
    if params.lr_schedule == "plateau":
        kinds["plateau"] = ResumablePlateau
    if params.early_stopping_patience:
        kinds["early_stopping"] = ResumableEarlyStopping
    return kinds


def _stateful_callbacks(params: TrainParams, resumed: Resumed | None) -> dict[str, _Resumable]:
    """This run's resumable callbacks, by name, each with its state from `resumed`."""
    stateful = {name: kind(params) for name, kind in _resumable(params).items()}
    for name, callback in stateful.items():
        callback.saved = resumed.callbacks[name] if resumed is not None else None
    return stateful


def epoch_schedule(params: TrainParams) -> keras.callbacks.Callback | None:
    """The learning rate as a function of the epoch alone (so nothing to checkpoint)."""
    base, epochs, decay = params.learning_rate, params.epochs, params.lr_decay
    if params.lr_schedule == "exponential":
        return keras.callbacks.LearningRateScheduler(lambda epoch, _: base * decay**epoch)
    if params.lr_schedule == "cosine":
        return keras.callbacks.LearningRateScheduler(
            lambda epoch, _: base * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        )
    return None


ONE_CYCLE_START = 1 / 25  # one_cycle starts at learning_rate / 25 (fast.ai's default)


def learning_rate(
    params: TrainParams, batches_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """What the optimizer gets: a number, or for one_cycle a schedule of the step (the
    optimizer's own `iterations` variable, so a resumed run continues it): a linear rise
    from learning_rate / 25 to learning_rate over the first `lr_warmup` of all steps,
    then a cosine decay to 0 by the last step."""
    if params.lr_schedule != "one_cycle":
        return params.learning_rate
    steps = batches_per_epoch * params.epochs
    warmup = round(steps * params.lr_warmup)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=params.learning_rate * ONE_CYCLE_START,
        decay_steps=max(steps - warmup, 1),
        warmup_target=params.learning_rate,
        warmup_steps=warmup,
    )


def compile_model(model: keras.Model, params: TrainParams, batches_per_epoch: int) -> None:
    """Compile `model` for the run and build its optimizer's variables (so a checkpoint
    can be checked against them and restored into them)."""
    optimizer = keras.optimizers.get(
        {
            "class_name": params.optimizer,
            "config": {"learning_rate": learning_rate(params, batches_per_epoch)},
        }
    )
    loss: str | keras.losses.Loss = "sparse_categorical_crossentropy"
    if params.label_smoothing:  # on one-hot labels (see `targets`)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=["accuracy"],
    )
    model.optimizer.build(model.trainable_variables)


def compiled_model(params: Params, train_count: int) -> keras.Model:
    """The CNN in the run's precision, compiled, its optimizer's variables built."""
    note = precision_note(params.train.precision)
    if note:
        log.warning(note)
    model = build_model(params.model, params.seed, params.train.precision)
    compile_model(model, params.train, steps_per_epoch(train_count, params.train.batch_size))
    return model


@dataclass
class Resumed:
    """What a checkpoint restores besides the variables."""

    history: list[dict[str, float]]  # each finished epoch's logged metrics
    stopped_early: bool  # a callback ended training after the last of them
    callbacks: dict[str, dict[str, Any]]  # each resumable callback's saved attributes


def build_or_resume(
    params: Params, train_count: int, store: Store | None = None
) -> tuple[keras.Model, Resumed | None]:
    """The compiled model, placed as train.distribution says, restored from the run's
    checkpoint in `store` if there is one that fits (None: a fresh model, its summary
    printed)."""
    with distribution_scope(params.train.distribution):
        log.info(device_line(params.train.distribution))
        model = compiled_model(params, train_count)
        resumed = None
        if store is not None:
            resumed = store.load(
                _kept_arrays(model, params.train),
                lambda state, arrays: _restore(model, params.train, state, arrays),
            )
        if resumed is None:
            model.summary()
        else:
            log.info(
                f"resuming after epoch {len(resumed.history)} of {params.train.epochs} "
                f"(checkpoint in {store.path})"
            )
    return model, resumed


def _numbered(prefix: str, values: Sequence[Any]) -> dict[str, Any]:
    return {f"{prefix}_{i}": value for i, value in enumerate(values)}


def _variables(model: keras.Model) -> dict[str, Any]:
    """Every model and optimizer variable, by the name its array has in a checkpoint."""
    return _numbered("model", model.variables) | _numbered("optimizer", model.optimizer.variables)


def _kept_arrays(model: keras.Model, params: TrainParams) -> dict[str, Any]:
    """The arrays a checkpoint of this run holds, by name: each the variable (or, for
    early stopping's best weights, the weight) that gives its shape and dtype."""
    kept = _variables(model)
    if params.early_stopping_patience:  # set from the first validated epoch on
        kept |= _numbered("early_stopping", model.weights)
    return kept


_METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # DVCLive's file names: no ../


def _finite(value: Any) -> bool:
    return type(value) is float and math.isfinite(value)


def _restore(
    model: keras.Model, params: TrainParams, state: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Resumed:
    """Set the model's and optimizer's variables from a checkpoint's `arrays` (all of
    them, or, where Keras refuses one, none) and return the rest of its `state`, each
    part checked first; raises ValueError where anything does not fit this run."""
    history, callbacks, kinds = state.get("history"), state.get("callbacks"), _resumable(params)
    first = history[0] if isinstance(history, list) and history else None
    names = first.keys() if isinstance(first, dict) else set()
    if not (
        "loss" in names
        and len(history) <= params.epochs
        and all(isinstance(name, str) and _METRIC_NAME.fullmatch(name) for name in names)
        and all(
            isinstance(entry, dict) and entry.keys() == names and all(map(_finite, entry.values()))
            for entry in history
        )
    ):
        raise ValueError(
            f"its history is not 1 to {params.epochs} epochs of the same finite metrics "
            "(loss among them) under plain names"
        )
    if not isinstance(state.get("stopped_early"), bool):
        raise ValueError("stopped_early is not true/false")
    if not (  # counters: whole numbers from 0 to the epochs; the rest numbers, or null
        isinstance(callbacks, dict)
        and callbacks.keys() == kinds.keys()
        and all(
            isinstance(values, dict)
            and values.keys() == set(kinds[name].STATE)
            and all(
                value is None
                or _finite(value)
                or (type(value) is int and 0 <= value <= params.epochs)
                for value in values.values()
            )
            for name, values in callbacks.items()
        )
    ):
        raise ValueError(f"its callbacks' state is not this run's ({', '.join(kinds) or 'none'})")
    saved = {name: dict(values) for name, values in callbacks.items()}
    if "early_stopping" in saved:
        best = _numbered("early_stopping", model.weights)
        saved["early_stopping"]["best_weights"] = [arrays[name] for name in best]
    variables = _variables(model)
    before = {name: variable.numpy() for name, variable in variables.items()}
    try:
        for name, variable in variables.items():
            variable.assign(arrays[name])
    except BaseException:
        for name, variable in variables.items():
            variable.assign(before[name])
        raise
    return Resumed(history, state["stopped_early"], saved)


def targets(labels: np.ndarray, params: TrainParams) -> np.ndarray:
    """The labels as the loss takes them: digits, or one-hot rows with label smoothing."""
    if params.label_smoothing:
        return np.eye(NUM_CLASSES, dtype="float32")[labels]
    return labels


class EpochRecord(keras.callbacks.Callback):
    """Records each finished epoch, after the other callbacks have had their say: stops
    on a non-finite loss, logs the epoch's metrics to DVCLive at once (so `dvc exp show`,
    `dvc queue logs`, VS Code and Studio see a run's progress while it trains), stores
    the whole training state in the run's checkpoint, logs its seconds, then logs one
    line: an epoch that is logged is saved.

    The DVCLive log starts fresh and first replays a resumed run's earlier epochs, so
    its files end byte-identical to an uninterrupted run's. The seconds go into a DVCLive
    log of their own (TRAINING_TIME_DIR: `epoch_seconds` by epoch, this process's epochs
    alone), outside the outputs DVC records, which stay the same bytes on every rerun.
    """

    def __init__(
        self,
        history: list[dict[str, float]],
        params: TrainParams,
        store: Store | None,
        stateful: dict[str, _Resumable],
        training_log: bool,
    ) -> None:
        super().__init__()
        self.history, self.store, self.stateful = history, store, stateful
        self.train_params = params  # not self.params: Keras sets that to fit()'s settings
        self.started = time.perf_counter()
        self.live = self.timing = None
        if training_log:
            from dvclive import Live  # here: bench/gpu.py fits without DVC installed

            self.live = Live(str(TRAINING_LOG_DIR), dvcyaml=False, save_dvc_exp=False)
            self.timing = Live(str(TRAINING_TIME_DIR), dvcyaml=False, save_dvc_exp=False)
        for logs in history:
            self._log(logs)

    def _log(self, logs: dict[str, float]) -> None:
        if self.live is None:
            return
        for name, value in logs.items():
            split = "val" if name.startswith("val_") else "train"
            self.live.log_metric(f"{split}/{name.removeprefix('val_')}", value)
        self.live.next_step()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {name: float(value) for name, value in (logs or {}).items()}
        if not math.isfinite(logs["loss"]):
            raise StageError(
                f"training diverged: loss {logs['loss']} in epoch {epoch + 1}; "
                f"try a smaller train.learning_rate than {self.train_params.learning_rate}"
            )
        if self.train_params.lr_schedule == "one_cycle":  # as Keras's schedule callbacks do
            rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            logs["learning_rate"] = float(rate)  # where the schedule is at the epoch's end
        self.history.append(logs)
        self._log(logs)
        if self.store is not None:
            self.store.save(*self._checkpoint())
        seconds = time.perf_counter() - self.started
        if self.timing is not None:
            self.timing.step = epoch
            self.timing.log_metric("epoch_seconds", round(seconds, 3))
        shown = " - ".join(f"{name} {value:.4f}" for name, value in logs.items())
        log.info(f"epoch {epoch + 1}/{self.train_params.epochs} - {seconds:.1f} s - {shown}")

    def _checkpoint(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The whole training state: as JSON, and as arrays (see `_kept_arrays`)."""
        state = {
            "history": self.history,
            "stopped_early": bool(self.model.stop_training),
            "callbacks": {name: callback.state() for name, callback in self.stateful.items()},
        }
        arrays = {name: variable.numpy() for name, variable in _variables(self.model).items()}
        early_stopping = self.stateful.get("early_stopping")
        if early_stopping is not None and early_stopping.best_weights is not None:
            arrays |= _numbered("early_stopping", early_stopping.best_weights)
        return state, arrays

    def finish(self) -> None:
        for live in (self.live, self.timing):
            if live is not None:
                live.end()


# How the training steps run: Keras's model.fit() over EpochBatches, a step a call; or on
# JAX, the data on the device, an epoch one compiled call or a batch one (compiled_epoch.py).
Loop = Literal["keras_fit", "jax_epoch", "jax_batch"]


def default_loop() -> Loop:
    """On JAX, an epoch one compiled call on accelerators, a batch one on a CPU (see
    compiled_epoch.whole_epochs); on TensorFlow and PyTorch, Keras's fit()."""
    if keras.backend.backend() != "jax":
        return "keras_fit"
    from mnist_pipeline.compiled_epoch import whole_epochs

    return "jax_epoch" if whole_epochs() else "jax_batch"


@contextmanager
def fresh_training_log() -> Iterator[None]:
    """Start the training log and its seconds afresh (a resumed run replays its epochs
    into the log), and leave neither where the block fails or is interrupted: the
    checkpoint keeps that run."""

    def remove() -> None:
        for folder in (TRAINING_LOG_DIR, TRAINING_TIME_DIR):
            shutil.rmtree(folder, ignore_errors=True)

    remove()
    try:
        yield
    except BaseException:
        remove()
        raise


def fit(
    model: keras.Model,
    params: TrainParams,
    seed: int,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    store: Store | None = None,
    resumed: Resumed | None = None,
    *,
    training_log: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    loop: Loop | None = None,
) -> None:
    """Train `model` (compiled, and restored from `resumed` if given) for the epochs left,
    validating on `val` after each (None: not at all, a benchmark's choice), checkpointing
    each into `store` (None: no checkpoints) and logging it to the DVCLive training log
    (`training_log`). `callbacks` run after the stage's own and before its record of the
    epoch (a benchmark's timer). `loop`: how the steps run (None: `default_loop()`)."""
    history = list(resumed.history) if resumed is not None else []
    stateful = _stateful_callbacks(params, resumed)
    schedule = epoch_schedule(params)
    record = EpochRecord(history, params, store, stateful, training_log)
    every = [*([schedule] if schedule else []), *stateful.values(), *callbacks, record]
    first_epoch = len(history)
    if resumed is not None and resumed.stopped_early:
        first_epoch = params.epochs
    loop = loop or default_loop()
    images, labels = train[0], targets(train[1], params)
    val = None if val is None else (val[0], targets(val[1], params))
    batches = EpochBatches(images, labels, params.batch_size, seed, first_epoch, params.epochs)
    if first_epoch >= params.epochs:  # every epoch was done before: only the start and end
        callback_list = keras.callbacks.CallbackList(every, model=model)
        callback_list.on_train_begin()
        callback_list.on_train_end()
    elif loop in ("jax_epoch", "jax_batch"):
        from mnist_pipeline.compiled_epoch import fit_compiled

        fit_compiled(
            model, (images, labels), val, params.batch_size, batches.order,
            first_epoch, params.epochs, every, whole=loop == "jax_epoch",
        )  # fmt: skip
    else:
        model.fit(
            batches,
            epochs=params.epochs,
            initial_epoch=first_epoch,
            steps_per_epoch=batches.batches_per_epoch,
            shuffle=False,  # the order is EpochBatches'
            validation_data=val,
            validation_batch_size=params.batch_size,
            callbacks=every,
            verbose=1 if sys.stdout.isatty() else 0,
        )
    record.finish()
