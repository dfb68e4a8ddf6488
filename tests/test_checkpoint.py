"""The checkpoint store: one checkpoint per run fingerprint, so a run with other params
never sees another's; an unreadable one is reported and dropped; stale ones are removed
unless a run holds them; one process at a time holds a run's checkpoint."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from mnist_pipeline.checkpoint import Checkpoint, CheckpointStore, fingerprint, remove_stale


def sample(epochs_done: int = 2) -> Checkpoint:
    return Checkpoint(
        epochs_done=epochs_done,
        stopped_early=False,
        history=[{"loss": 0.5, "val_loss": 0.4}] * epochs_done,
        model_variables=[np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros(3)],
        optimizer_variables=[np.array(7, dtype=np.int64)],
        callbacks={"early_stopping": ({"wait": 1, "best": 0.4}, [np.ones((2, 2))])},
    )


def test_a_checkpoint_round_trips_through_its_store(tmp_path):
    store = CheckpointStore(tmp_path, "a" * 64)
    store.save(sample())
    loaded, note = store.load()
    assert note == ""
    assert (loaded.epochs_done, loaded.history) == (2, sample().history)
    for got, want in zip(loaded.model_variables, sample().model_variables, strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    values, arrays = loaded.callbacks["early_stopping"]
    assert values == {"wait": 1, "best": 0.4} and np.array_equal(arrays[0], np.ones((2, 2)))


def test_the_fingerprint_covers_params_and_file_bytes(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("x = 1\n")
    base = fingerprint({"train": {"learning_rate": 0.001}}, [code])
    assert fingerprint({"train": {"learning_rate": 0.002}}, [code]) != base
    code.write_text("x = 2\n")
    assert fingerprint({"train": {"learning_rate": 0.001}}, [code]) != base


def test_a_run_with_another_fingerprint_does_not_see_the_checkpoint(tmp_path):
    CheckpointStore(tmp_path, "a" * 64).save(sample())
    assert CheckpointStore(tmp_path, "b" * 64).load() == (None, "")
    assert CheckpointStore(tmp_path, "a" * 64).load()[0] is not None  # still there for its run


def test_an_unreadable_checkpoint_is_reported_in_one_line_and_removed(tmp_path):
    store = CheckpointStore(tmp_path, "a" * 64)
    store.save(sample())
    state = json.loads((store.folder / "state.json").read_text())
    state["model_variables"] = 5  # more arrays than the file holds
    (store.folder / "state.json").write_text(json.dumps(state))
    loaded, note = store.load()
    assert loaded is None and "\n" not in note
    assert note.startswith(f"ignoring the checkpoint in {store.folder}: it cannot be read")
    assert not store.folder.exists()


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
