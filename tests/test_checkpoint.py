"""The checkpoint store: one checkpoint per run fingerprint, so a run with other params
never sees another's; one that cannot be read, or holds anything but what the run
expects (counts, shapes, dtypes, sizes, epochs, metrics), is reported in one line and
dropped; stale ones are removed unless a run holds them; one process at a time holds a
run's checkpoint."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mnist_pipeline.checkpoint import (
    ArraySpec,
    CallbackLayout,
    Checkpoint,
    CheckpointStore,
    Layout,
    fingerprint,
    remove_stale,
)

EARLY_STOPPING = {"wait": 1, "best": 0.4, "best_epoch": 1, "stopped_epoch": 0}


def sample(epochs_done: int = 2) -> Checkpoint:
    return Checkpoint(
        epochs_done=epochs_done,
        stopped_early=False,
        history=[{"loss": 0.5, "val_loss": 0.4}] * epochs_done,
        model_variables=[np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros(3)],
        optimizer_variables=[np.array(7, dtype=np.int64)],
        callbacks={"early_stopping": (dict(EARLY_STOPPING), [np.ones((2, 2))])},
    )


# What a run whose checkpoints look like sample()'s expects of them.
LAYOUT = Layout(
    epochs=3,
    model_variables=(ArraySpec((2, 3), "<f4"), ArraySpec((3,), "<f8")),
    optimizer_variables=(ArraySpec((), "<i8"),),
    callbacks={
        "early_stopping": CallbackLayout(
            ("wait", "best_epoch", "stopped_epoch"), ("best",), (ArraySpec((2, 2), "<f8"),)
        )
    },
)


@pytest.fixture
def store(tmp_path) -> CheckpointStore:
    """The store of run "a" * 64, holding sample()'s checkpoint."""
    store = CheckpointStore(tmp_path, "a" * 64)
    store.save(sample())
    return store


def refusal(store: CheckpointStore, layout: Layout = LAYOUT) -> str:
    """Why `store` refuses its checkpoint (which it must, and drop it), from the one
    line it gives."""
    loaded, note = store.load(layout)
    assert loaded is None and not store.folder.exists()
    prefix = f"ignoring the checkpoint in {store.folder}: "
    assert note.startswith(prefix) and "\n" not in note
    return note.removeprefix(prefix)


def test_a_checkpoint_round_trips_through_its_store(store):
    loaded, note = store.load(LAYOUT)
    assert note == ""
    assert (loaded.epochs_done, loaded.history) == (2, sample().history)
    for got, want in zip(loaded.model_variables, sample().model_variables, strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    values, arrays = loaded.callbacks["early_stopping"]
    assert values == EARLY_STOPPING and np.array_equal(arrays[0], np.ones((2, 2)))


def test_the_fingerprint_covers_params_and_file_bytes(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("x = 1\n")
    base = fingerprint({"train": {"learning_rate": 0.001}}, [code])
    assert fingerprint({"train": {"learning_rate": 0.002}}, [code]) != base
    code.write_text("x = 2\n")
    assert fingerprint({"train": {"learning_rate": 0.001}}, [code]) != base


def test_a_run_with_another_fingerprint_does_not_see_the_checkpoint(tmp_path):
    CheckpointStore(tmp_path, "a" * 64).save(sample())
    assert CheckpointStore(tmp_path, "b" * 64).load(LAYOUT) == (None, "")
    assert (
        CheckpointStore(tmp_path, "a" * 64).load(LAYOUT)[0] is not None
    )  # still there for its run


def test_an_unreadable_checkpoint_is_reported_in_one_line_and_removed(store):
    tamper(store, lambda state: state.update(model_variables=5))  # more than the file holds
    assert refusal(store) == "its variable counts are not this model's"


def test_only_one_process_holds_a_runs_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path, "a" * 64)
    with store.held() as first, CheckpointStore(tmp_path, "a" * 64).held() as second:
        assert (first, second) == (True, False)


def test_stale_checkpoints_are_removed_unless_a_run_holds_them(tmp_path):
    old, held, fresh = (CheckpointStore(tmp_path, c * 64) for c in "abc")
    for store in (old, held, fresh):
        store.save(sample())
    long_ago = time.time() - 8 * 86400
    for store in (old, held):
        os.utime(store.folder, (long_ago, long_ago))
    with held.held():
        removed = remove_stale(tmp_path, max_age_days=7)
    assert removed == [old.folder]
    assert [p.name for p in sorted(Path(tmp_path).iterdir()) if p.is_dir()] == [
        held.folder.name,
        fresh.folder.name,
    ]


def tamper(store: CheckpointStore, change) -> None:
    """Apply `change` to the saved state.json's contents (a dict), keeping it valid JSON."""
    state = json.loads((store.folder / "state.json").read_text())
    change(state)
    (store.folder / "state.json").write_text(json.dumps(state))


def inflating_member(path: Path, name: str, size: int) -> None:
    """Replace the arrays file at `path` with one whose member `name` inflates to `size`
    bytes of zeros, written a MiB at a time."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            for _ in range(size >> 20):
                member.write(bytes(1 << 20))
        for other in ("model_1", "optimizer_0", "callback_early_stopping_0"):
            archive.writestr(f"{other}.npy", b"")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.update(epochs_done=-7), "epochs_done is -7, not 1-3"),
        (lambda s: s.update(epochs_done=True), "epochs_done is True, not 1-3"),
        (lambda s: s.update(epochs_done=4), "epochs_done is 4, not 1-3"),
        (lambda s: s.update(stopped_early="no"), "stopped_early is not true/false"),
        (
            lambda s: s.update(history="all done"),
            "its history does not hold one entry for each of its 2 epochs",
        ),
        (
            lambda s: s["history"][1].update(loss="NaN"),
            "its history holds an entry that is not the same finite metrics as the others",
        ),
        (lambda s: s["history"][0].pop("loss"), "its history does not log the loss"),
        (
            lambda s: [entry.update({"../../escaped": 1.0}) for entry in s["history"]],
            "its history names a metric that is not a plain name",
        ),
        (
            lambda s: s["callbacks"]["early_stopping"]["values"].update(wait=10**6),
            "the state of callback early_stopping is not valid",
        ),
        (
            lambda s: s["callbacks"].update(plateau={"values": {}, "arrays": 0}),
            "its callbacks are not this run's (early_stopping)",
        ),
        (lambda s: s.update(fingerprint="b" * 64), "it belongs to another run"),
        (
            lambda s: s.update(variables_sha256="0" * 64),
            "variables.npz does not match the sha256 recorded with it",
        ),
    ],
)
def test_a_checkpoint_with_impossible_contents_is_reported_in_one_line_and_dropped(
    store, change, reason
):
    tamper(store, change)
    assert refusal(store) == reason


def test_a_checkpoint_of_another_model_is_not_resumed(store):
    wider = ArraySpec((2, 4), "<f4")
    other_model = dataclasses.replace(LAYOUT, model_variables=(wider, LAYOUT.model_variables[1]))
    assert refusal(store, other_model) == (
        "variables.npz: model_0 is float32 (2, 3), this model's is float32 (2, 4)"
    )


def resealed(store: CheckpointStore) -> None:
    """Record the arrays file's current sha256 in state.json, as if it were genuine."""
    digest = hashlib.sha256((store.folder / "variables.npz").read_bytes()).hexdigest()
    tamper(store, lambda state: state.update(variables_sha256=digest))


def test_an_arrays_file_that_would_inflate_is_refused_unread(store):
    arrays = store.folder / "variables.npz"
    inflating_member(arrays, "model_0", 8 << 20)  # 8 KB that inflate to 8 MiB, not 24 bytes
    assert arrays.stat().st_size < 16 << 10
    resealed(store)
    assert refusal(store) == (
        "variables.npz: model_0 is compressed; checkpoints store arrays as they are"
    )


def test_an_array_header_claiming_a_huge_shape_is_refused_before_allocating(store):
    arrays = store.folder / "variables.npz"
    with np.load(arrays) as saved:
        kept = {name: saved[name] for name in saved.files}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**42,)}
    )
    with zipfile.ZipFile(arrays, "w") as archive:  # 16 TiB of float32, says the header
        for name, value in kept.items():
            if name == "model_0":
                archive.writestr("model_0.npy", header.getvalue())
            else:
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, value)
    resealed(store)
    assert refusal(store) == (
        "variables.npz: model_0 is float32 (4398046511104,), this model's is float32 (2, 3)"
    )


def test_an_arrays_file_that_is_not_a_zip_is_one_line(store):
    (store.folder / "variables.npz").write_bytes(b"PK\x03\x04 not really a zip")
    resealed(store)
    assert refusal(store) == "BadZipFile: File is not a zip file"
