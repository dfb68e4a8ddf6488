"""Training on JAX with the data on the device: how the train stage fits on the JAX
backend (on TensorFlow and PyTorch it calls `model.fit()`).

The training images go to the device once per run, as uint8. Each epoch, the host sends
only that epoch's seeded order (`epoch_order`, the same as the other path's batches:
batch i of epoch e is a pure function of seed, e and i), and the device gathers each
batch by it. On an accelerator every step of the epoch runs inside one compiled call:
Keras's own stateless `train_step` (the model's `stateless_call`, the loss,
`optimizer.stateless_apply`) in a `jax.lax.scan` over the full batches, then the
smaller last batch; on a CPU, one compiled call a batch (see `whole_epochs`). The loss
and the metrics are summed on the device in Keras's metric variables and read once an
epoch; validation runs the same way. Between epochs the state is written back into the
model's variables, so the callbacks (the training log, checkpoints, schedules, early
stopping) see and change the model exactly as under `model.fit()`.

With `train.distribution: data_parallel` (Keras's DataParallel distribution), the
images are replicated on every device and each gathered batch is split between them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from mnist_pipeline.backend import import_keras

keras = import_keras()  # on JAX: the train stage chose it

if TYPE_CHECKING:
    from mnist_pipeline.training import EpochOrder

State = tuple[list[jax.Array], ...]  # the variables a step reads and returns, as Keras's


def fit_compiled(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    batch_size: int,
    epoch_order: EpochOrder,
    first_epoch: int,
    epochs: int,
    callbacks: Sequence[keras.callbacks.Callback],
    whole: bool,
) -> None:
    """Train the compiled `model` (its optimizer built) on `train` from `first_epoch` to
    `epochs` (a callback may stop it sooner), in batches of `batch_size` taken in
    `epoch_order(epoch)`, validating on `val` (if given) after each epoch, as
    `model.fit()` would with the same batches and `callbacks`. `whole`: each epoch one
    compiled call, else one a batch (`whole_epochs()` says which fits the device)."""
    # Keras builds the metrics' variables on a first batch; a compiled step cannot.
    model._symbolic_build(data_batch=(train[0][:1], train[1][:1]))
    on_device = _placement()
    images, labels = on_device(train[0]), on_device(train[1])
    train_epoch = _compiled_pass(model, model.train_step, len(train[1]), batch_size, whole)
    if val is not None:
        val_images, val_labels = on_device(val[0]), on_device(val[1])
        val_order = on_device(np.arange(len(val[1]), dtype="int32"))
        validate = _compiled_pass(model, model.test_step, len(val[1]), batch_size, whole)

    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model)
    model.stop_training = False
    callback_list.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(first_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)  # a schedule may set the learning rate here
        order = on_device(epoch_order(epoch).astype("int32"))
        state = train_epoch(_state(model, optimizer=True), images, labels, order)
        _write_back(model, state, optimizer=True)
        logs = _metrics(model)
        if val is not None:
            model.reset_metrics()
            state = validate(_state(model, optimizer=False), val_images, val_labels, val_order)
            _write_back(model, state, optimizer=False)
            logs |= {f"val_{name}": value for name, value in _metrics(model).items()}
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)  # as fit() does
    callback_list.on_train_end(logs)


def _compiled_pass(
    model: keras.Model,
    step: Callable[[State, tuple], tuple[Any, State]],
    count: int,
    size: int,
    whole: bool,
) -> Callable[[State, jax.Array, jax.Array, jax.Array], State]:
    """A pass of `step` (Keras's train_step or test_step) over `count` images in batches
    of `size` (the last one smaller), gathered on the device by an order of rows: one
    compiled call (`whole`), or one compiled call a batch (see `whole_epochs`)."""
    full, rest = divmod(count, size)
    constrain = _batch_constraint()

    def one_batch(state: State, images: jax.Array, labels: jax.Array, rows: jax.Array) -> State:
        _, state = step(state, (constrain(images[rows]), constrain(labels[rows])))
        return state

    def whole_pass(state: State, images: jax.Array, labels: jax.Array, order: jax.Array) -> State:
        if full:
            state, _ = jax.lax.scan(
                lambda carried, rows: (one_batch(carried, images, labels, rows), None),
                state,
                order[: full * size].reshape(full, size),
            )
        if rest:
            state = one_batch(state, images, labels, order[full * size :])
        return state

    if whole:
        return jax.jit(whole_pass, donate_argnums=0)

    @partial(jax.jit, donate_argnums=0, static_argnums=5)
    def batch_at(state: State, images: jax.Array, labels: jax.Array, order: jax.Array,
                 start: int, length: int) -> State:  # fmt: skip
        return one_batch(state, images, labels, jax.lax.dynamic_slice(order, (start,), (length,)))

    def batch_by_batch(
        state: State, images: jax.Array, labels: jax.Array, order: jax.Array
    ) -> State:
        for start in range(0, count, size):
            state = batch_at(state, images, labels, order, start, min(size, count - start))
        return state

    return batch_by_batch


def whole_epochs() -> bool:
    """Whether an epoch is one compiled call here: on accelerators. XLA's CPU backend runs
    convolutions inside a compiled loop about 28 times slower than alone (jax-ml/jax#12868;
    measured here: 7.5 s against 0.27 s a step of the default model), so on a CPU each
    batch is one call, its dispatch a millisecond against a step's hundreds."""
    return jax.default_backend() != "cpu"


def _owners(model: keras.Model, optimizer: bool) -> list[list[keras.Variable]]:
    """The variables Keras's train_step (optimizer=True) or test_step takes, in its order."""
    owners = [model.trainable_variables, model.non_trainable_variables]
    if optimizer:
        owners.append(model.optimizer.variables)
    return [*owners, model.metrics_variables]


def _state(model: keras.Model, optimizer: bool) -> State:
    """The current values of `_owners`, as a step takes them."""
    return tuple([v.value for v in variables] for variables in _owners(model, optimizer))


def _write_back(model: keras.Model, state: State, optimizer: bool) -> None:
    """Put a step's returned state back into the variables it came from (`_owners`)."""
    for variables, values in zip(_owners(model, optimizer), state, strict=True):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


def _metrics(model: keras.Model) -> dict[str, float]:
    """The model's metrics summed on the device this epoch, read back once."""
    results = jax.device_get(model.get_metrics_result())
    return {name: float(value) for name, value in results.items()}


def _placement() -> Callable[[np.ndarray], jax.Array]:
    """How an array goes to the device(s): whole to the default device, or replicated on
    every device of the data-parallel distribution."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return jax.device_put
    mesh = distribution.device_mesh.backend_mesh
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return lambda array: jax.device_put(array, replicated)


def _batch_constraint() -> Callable[[jax.Array], jax.Array]:
    """Inside the compiled pass: a gathered batch split along its first axis between the
    data-parallel devices (the distribution's data layout), or left as it is."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return lambda batch: batch

    def split(batch: jax.Array) -> jax.Array:
        layout = distribution.get_data_layout(batch.shape).backend_layout
        return jax.lax.with_sharding_constraint(batch, layout)

    return split
