"""The checkpoint store: one checkpoint per run fingerprint, so a run with other params
never sees another's; one that cannot be read, or holds anything but what the run
expects (its arrays' names, sizes and dtypes, epochs, metrics, counters, shapes), is
reported in one line and dropped; stale ones are removed unless a run holds them; one
process at a time holds a run's checkpoint. The store's folder is trusted only when this
user alone can write to it; no link in it is followed, and only its own entries are
ever removed."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import struct
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mnist_pipeline.checkpoint import fingerprint, open_store

from .helpers import PROJECT_ROOT

RUN = "a" * 64
NAME = RUN[:32]
STATE = {"history": [{"loss": 0.5, "val_loss": 0.4}] * 2, "stopped_early": False}
ARRAYS = {
    "model_0": np.arange(6, dtype=np.float32).reshape(2, 3),
    "model_1": np.zeros(3),
    "optimizer_0": np.array(7, dtype=np.int64),
}


class Killed(Exception):
    """Ends a run's block without success, as a kill would: its checkpoint stays."""


def saved(root: Path, run: str = RUN, state: dict = STATE, arrays: dict = ARRAYS) -> Path:
    """Save a checkpoint into the store at `root` in a run that then dies; its path."""
    with pytest.raises(Killed), open_store(root, run) as store:
        store.save(state, arrays)
        raise Killed
    return store.path


def load(root: Path, run: str = RUN, expected: dict = ARRAYS, restore=None):
    """What a run of `run` expecting `expected` loads from the store at `root` (and then
    dies, keeping it)."""
    with pytest.raises(Killed), open_store(root, run) as store:
        found = store.load(expected, restore or (lambda state, arrays: (state, arrays)))
        raise Killed
    return found


@pytest.fixture
def logged() -> Iterator[list[logging.LogRecord]]:
    """The records the project logs (info and above) during the test."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("mnist_pipeline")
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def warnings_in(records: list[logging.LogRecord]) -> list[str]:
    lines = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    for line in lines:
        assert "\n" not in line
    return lines


# ---------------------------------------------------------------- round trip and keys


def test_a_checkpoint_round_trips_through_its_store(tmp_path, logged):
    saved(tmp_path)
    state, arrays = load(tmp_path)
    assert state == {"fingerprint": RUN, **STATE}
    assert arrays.keys() == ARRAYS.keys()
    for name, want in ARRAYS.items():
        assert arrays[name].dtype == want.dtype and np.array_equal(arrays[name], want)
    assert warnings_in(logged) == []


def test_the_fingerprint_covers_params_and_file_bytes(tmp_path):
    code = tmp_path / "code.py"
    code.write_text("x = 1\n")
    base = fingerprint({"train": {"learning_rate": 0.001}}, [code])
    assert fingerprint({"train": {"learning_rate": 0.002}}, [code]) != base
    code.write_text("x = 2\n")
    assert fingerprint({"train": {"learning_rate": 0.001}}, [code]) != base


def test_a_run_with_another_fingerprint_does_not_see_the_checkpoint(tmp_path, logged):
    saved(tmp_path)
    assert load(tmp_path, "b" * 64) is None
    assert load(tmp_path) is not None  # still there for its run
    assert warnings_in(logged) == []


def test_a_finished_run_removes_its_checkpoint_lock_and_leftovers(tmp_path):
    root = tmp_path / "cache" / "checkpoints"
    with open_store(root, RUN) as store:
        assert os.stat(root).st_mode & 0o777 == 0o700  # made for this user alone
        store.save(STATE, ARRAYS)
        assert sorted(os.listdir(root)) == [f"{NAME}.ckpt", f"{NAME}.lock"]
    assert os.listdir(root) == []
    saved(root)
    (root / f"{NAME}.ckpt.tmp").write_bytes(b"half written when a run was killed")
    with open_store(root, RUN):
        pass
    assert os.listdir(root) == []


def test_only_one_process_holds_a_runs_checkpoint(tmp_path, logged):
    saved(tmp_path)
    with open_store(tmp_path, RUN) as first, open_store(tmp_path, RUN) as second:
        assert second.load(ARRAYS, lambda *_: "resumed") is None
        second.save({"other": True}, {})  # does nothing
        assert first.load(ARRAYS, lambda state, _: state) == {"fingerprint": RUN, **STATE}
    assert warnings_in(logged) == [
        f"another run of this same experiment holds {tmp_path / NAME}.ckpt; "
        "this run keeps no checkpoint"
    ]


# ---------------------------------------------------------------- what is refused


def rewrite(path: Path, change: Callable[[dict[str, bytes]], None]) -> None:
    """Apply `change` to the checkpoint's members (name: bytes), written back stored."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array)
    return out.getvalue()


def with_state(**changes) -> Callable[[dict[str, bytes]], None]:
    def change(members: dict[str, bytes]) -> None:
        members["state.json"] = json.dumps(json.loads(members["state.json"]) | changes).encode()

    return change


def refusal(root: Path, logged: list, expected: dict = ARRAYS, restore=None) -> str:
    """Why the store at `root` refuses its checkpoint (which it must, and drop it), from
    the one line it gives."""
    assert load(root, expected=expected, restore=restore) is None
    assert not (root / f"{NAME}.ckpt").exists()
    (line,) = warnings_in(logged)
    prefix = f"ignoring the checkpoint in {root / NAME}.ckpt: "
    assert line.startswith(prefix)
    return line.removeprefix(prefix)


def test_an_unreadable_checkpoint_is_reported_in_one_line_and_removed(tmp_path, logged):
    rewrite(saved(tmp_path), lambda members: members.update({"state.json": b"{not json"}))
    assert refusal(tmp_path, logged).startswith("JSONDecodeError: ")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (with_state(fingerprint="b" * 64), "it belongs to another run"),
        (lambda m: m.pop("optimizer_0.npy"), "its arrays are not the ones this run keeps"),
        (
            lambda m: m.update({"callback_0.npy": npy(np.zeros(2))}),
            "its arrays are not the ones this run keeps",
        ),
        (
            lambda m: m.update({"model_0.npy": npy(np.zeros((2, 4), dtype=np.float32))}),
            "model_0 is float32 (2, 4), this model's is float32 (2, 3)",
        ),
        (
            lambda m: m.update({"model_1.npy": npy(np.zeros(3, dtype=np.float32))}),
            "model_1 is float32 (3,), this model's is float64 (3,)",
        ),
        (lambda m: m.pop("state.json"), "it holds no state.json"),
        (lambda m: m.update({"state.json": b"[]"}), "state.json is not a JSON object"),
    ],
    ids=["fingerprint", "missing", "extra", "size", "dtype", "no-state", "state-not-object"],
)
def test_a_checkpoint_that_is_not_this_runs_is_reported_in_one_line_and_dropped(
    tmp_path, logged, change, reason
):
    rewrite(saved(tmp_path), change)
    assert refusal(tmp_path, logged) == reason


def test_a_flipped_byte_is_caught_by_the_zip_checksum(tmp_path, logged):
    path = saved(tmp_path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model_0.npy")
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 :][:4])
    last = info.header_offset + 30 + name_length + extra_length + info.compress_size - 1
    data[last] ^= 0xFF  # the array's last byte, its recorded CRC-32 left as it was
    path.write_bytes(data)
    assert refusal(tmp_path, logged) == "BadZipFile: Bad CRC-32 for file 'model_0.npy'"


def test_a_state_file_over_its_bound_is_refused_unread(tmp_path, logged, monkeypatch):
    path = saved(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data if name != "state.json" else b" " * (17 << 20))
    assert path.stat().st_size < 1 << 20
    monkeypatch.setattr(json, "loads", lambda *_: pytest.fail("state.json was read"))
    assert refusal(tmp_path, logged) == "state.json is over 16,777,216 bytes"


def test_an_array_that_would_inflate_is_refused_unread(tmp_path, logged):
    path = saved(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if name != "model_0.npy":
                archive.writestr(name, data)
        with archive.open("model_0.npy", "w", force_zip64=True) as member:
            for _ in range(8):  # 8 KB that inflate to 8 MiB, not 24 bytes
                member.write(bytes(1 << 20))
    assert path.stat().st_size < 64 << 10
    assert refusal(tmp_path, logged) == "model_0 is larger than this model's"


def test_an_array_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path, logged):
    header = io.BytesIO()  # 16 TiB of float32, says the header
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**42,)}
    )
    rewrite(saved(tmp_path), lambda m: m.update({"model_0.npy": header.getvalue()}))
    assert refusal(tmp_path, logged) == (
        "model_0 is float32 (4398046511104,), this model's is float32 (2, 3)"
    )


def test_an_arrays_file_that_is_not_a_zip_is_one_line(tmp_path, logged):
    saved(tmp_path).write_bytes(b"PK\x03\x04 not really a zip")
    assert refusal(tmp_path, logged) == "BadZipFile: File is not a zip file"


def test_a_checkpoint_the_trainer_refuses_is_one_line_and_dropped(tmp_path, logged):
    def restore(state: dict, arrays: dict) -> None:
        raise ValueError(f"its history is not 1 to {len(state['history']) - 1} epochs")

    saved(tmp_path)
    assert refusal(tmp_path, logged, restore=restore) == "its history is not 1 to 1 epochs"


# ---------------------------------------------------------------- the folder itself


def refused(root: Path, logged: list, reason: str) -> None:
    """The store at `root` is not used: one warning line, the planted checkpoint (valid for
    RUN) neither loaded nor removed, nothing saved, nothing removed at the end."""
    before = sorted(os.listdir(root))
    with open_store(root, RUN) as store:
        assert store.load(ARRAYS, lambda *_: "loaded") is None
        store.save({"history": []}, {})
    assert sorted(os.listdir(root)) == before
    assert warnings_in(logged) == [
        f"not using the checkpoint store {root}: {reason}; training goes on without it"
    ]


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o720, 0o702])
def test_a_store_others_can_write_to_is_not_used(tmp_path, logged, mode):
    root = tmp_path / "store"
    saved(root)  # as if planted by another user
    root.chmod(mode)
    refused(root, logged, f"others can write to it (mode {mode:o})")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_store_another_user_owns_is_not_used(tmp_path, logged):
    root = tmp_path / "store"
    saved(root)
    os.chown(root, 12345, -1)
    refused(root, logged, "it belongs to another user (uid 12345)")


def test_a_store_that_is_a_symbolic_link_is_not_followed(tmp_path, logged):
    elsewhere = tmp_path / "elsewhere"
    saved(elsewhere)
    (tmp_path / "store").symlink_to(elsewhere)
    refused(tmp_path / "store", logged, "it is a symbolic link")
    assert sorted(os.listdir(elsewhere)) == [f"{NAME}.ckpt", f"{NAME}.lock"]


def test_a_lock_file_that_is_a_symbolic_link_is_not_followed(tmp_path, logged):
    target = tmp_path / "someone-elses-file"
    target.write_text("keep me")
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    (root / f"{NAME}.lock").symlink_to(target)
    with open_store(root, RUN) as store:
        store.save(STATE, ARRAYS)  # does nothing
    assert target.read_text() == "keep me"
    assert (root / f"{NAME}.lock").is_symlink() and os.listdir(root) == [f"{NAME}.lock"]
    (line,) = warnings_in(logged)
    assert line.startswith(f"not using the checkpoint store {root}: ")


def test_a_checkpoint_that_is_a_symbolic_link_is_not_followed(tmp_path, logged):
    genuine = saved(tmp_path / "elsewhere")  # a valid checkpoint of this very run
    genuine_bytes = genuine.read_bytes()
    root = tmp_path / "store"
    root.mkdir(mode=0o700)
    (root / f"{NAME}.ckpt").symlink_to(genuine)
    with open_store(root, RUN) as store:
        assert store.load(ARRAYS, lambda *_: "loaded") is None
        assert (root / f"{NAME}.ckpt").is_symlink()  # not removed either
        store.save(STATE, ARRAYS)  # replaces the link itself
        assert not (root / f"{NAME}.ckpt").is_symlink()
    assert genuine.read_bytes() == genuine_bytes
    (line,) = warnings_in(logged)
    assert line.startswith(f"ignoring the checkpoint in {root / NAME}.ckpt: ")


def test_a_save_that_fails_is_one_line_and_training_goes_on(tmp_path, logged, monkeypatch):
    saved(tmp_path)  # an earlier epoch's
    writes = []

    def full(*args, **kwargs):
        writes.append(args)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "write_array", full)
    with open_store(tmp_path, RUN) as store:
        for _ in range(3):
            store.save(STATE, ARRAYS)
        assert sorted(os.listdir(tmp_path)) == [f"{NAME}.ckpt", f"{NAME}.lock"]  # no .tmp
    assert len(writes) == 1  # the next saves are not tried
    assert os.listdir(tmp_path) == []  # the run ended: its last checkpoint went too
    assert warnings_in(logged) == [
        f"cannot save the checkpoint in {tmp_path}: No space left on device; "
        "training goes on without checkpoints"
    ]


# ---------------------------------------------------------------- stale checkpoints


def age(path: Path, days: float = 8) -> None:
    long_ago = time.time() - days * 86400
    os.utime(path, (long_ago, long_ago), follow_symlinks=False)


def test_stale_checkpoints_are_removed_unless_a_run_holds_them(tmp_path, logged):
    old, held, fresh = (saved(tmp_path, c * 64) for c in "abc")
    for path in (old, held):
        age(path)
        age(path.with_suffix(".lock"))
    # a run of `held`, still going (and then killed), while a run of another one starts
    with pytest.raises(Killed), open_store(tmp_path, "b" * 64):
        with open_store(tmp_path, "d" * 64):
            pass
        raise Killed
    removed = [r.getMessage() for r in logged if "removed" in r.getMessage()]
    assert removed == [f"removed a checkpoint unused for 7 days: {old}"]
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == [held.name, fresh.name]
    assert not old.with_suffix(".lock").exists()


def test_only_the_stores_own_entries_are_ever_removed(tmp_path, logged):
    root, outside = tmp_path / "store", tmp_path / "outside"
    saved(root, "b" * 64)  # so the folder exists, made as the store makes it
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    (outside / "folder").mkdir()
    (outside / "folder" / "file").write_text("keep me too")
    others = {
        "x.v1": lambda p: p.mkdir(),  # a folder, and a lock file that is not the store's
        "x.lock": lambda p: p.write_text("not the store's"),
        "notes.txt": lambda p: p.write_text("mine"),
        f"{'c' * 32}.ckpt": lambda p: p.symlink_to(outside / "data.txt"),
        f"{'d' * 32}": lambda p: p.symlink_to(outside / "folder"),
        f"{'e' * 32}.ckpt.tmp": lambda p: p.symlink_to(outside / "data.txt"),
    }
    for name, make in others.items():
        make(root / name)
        age(root / name)
    (root / f"{'f' * 32}.ckpt").write_bytes(b"a stale checkpoint")
    (root / f"{'f' * 32}.lock").symlink_to(outside / "data.txt")  # lock not usable: kept
    old_layout = root / ("9" * 32)  # a checkpoint folder of the previous layout
    old_layout.mkdir()
    (old_layout / "state.json").write_text("{}")
    (old_layout / "link").symlink_to(outside / "folder")
    for path in (root / f"{'f' * 32}.ckpt", old_layout / "state.json", old_layout):
        age(path)
    with open_store(root, RUN):
        pass
    assert sorted(os.listdir(root)) == sorted(
        [*others, f"{'b' * 32}.ckpt", f"{'b' * 32}.lock", f"{'f' * 32}.ckpt", f"{'f' * 32}.lock"]
    )
    assert (outside / "data.txt").read_text() == "keep me"
    assert (outside / "folder" / "file").read_text() == "keep me too"
    removed = [r.getMessage() for r in logged if "removed" in r.getMessage()]
    assert removed == [f"removed a checkpoint unused for 7 days: {old_layout}"]


# ---------------------------------------------------------------- what the trainer checks
# A real (tiny) model: a genuine one-epoch checkpoint, changed, is refused in one line
# and the run starts from a fresh model; Keras's own check refuses an array of this size
# and dtype but another shape, and no variable keeps a value from that checkpoint.


@pytest.fixture(scope="module")
def tiny():
    """The training module and a tiny run's params: a plateau schedule, early stopping."""
    from mnist_pipeline.backend import import_keras
    from mnist_pipeline.params import read_params_file, validate_params

    import_keras()
    from mnist_pipeline import training

    raw = read_params_file(PROJECT_ROOT / "params.yaml")
    raw["model"].update(conv_blocks=[[4]], dense_units=8)
    raw["train"].update(epochs=3, lr_schedule="plateau", early_stopping_patience=2, batch_size=32)
    return training, validate_params(raw, ("seed", "model", "train"))


DIGITS = (
    np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8),
    np.arange(64) % 10,
)


def trained_one_epoch(tiny, root: Path) -> list[np.ndarray]:
    """Train the tiny run one epoch into the store at `root`, then die; its variables."""
    training, params = tiny
    with pytest.raises(Killed), open_store(root, RUN) as store:
        training.seed_everything(params.seed, False)
        model, _ = training.build_or_resume(params, 64, store)
        one = params.train.model_copy(update={"epochs": 1})
        training.fit(model, one, params.seed, DIGITS, DIGITS, store, training_log=False)
        raise Killed
    return [v.numpy() for v in model.variables]


def resumed_in(tiny, root: Path):
    """The tiny run started against the store at `root`: its model and what it resumed."""
    training, params = tiny
    with pytest.raises(Killed), open_store(root, RUN) as store:
        training.seed_everything(params.seed, False)
        model, resumed = training.build_or_resume(params, 64, store)
        raise Killed
    return model, resumed


def test_a_genuine_checkpoint_resumes_every_variable_and_callback(tiny, tmp_path, logged):
    trained = trained_one_epoch(tiny, tmp_path)
    model, resumed = resumed_in(tiny, tmp_path)
    assert len(resumed.history) == 1 and not resumed.stopped_early
    assert set(resumed.callbacks) == {"plateau", "early_stopping"}
    assert len(resumed.callbacks["early_stopping"]["best_weights"]) == len(model.weights)
    for found, wanted in zip(model.variables, trained, strict=True):
        assert np.array_equal(found.numpy(), wanted)
    assert warnings_in(logged) == []


def history(change: Callable[[list[dict]], object]) -> Callable[[dict], None]:
    return lambda state: change(state["history"])


HISTORY = "its history is not 1 to 3 epochs of the same finite metrics (loss among them) under plain names"
CALLBACKS = "its callbacks' state is not this run's (plateau, early_stopping)"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.update(history=[]), HISTORY),
        (lambda s: s.update(history=s["history"] * 4), HISTORY),
        (lambda s: s.update(history="all done"), HISTORY),
        (history(lambda h: h[0].update(loss="NaN")), HISTORY),
        (history(lambda h: h[0].update(loss=float("inf"))), HISTORY),
        (history(lambda h: h[0].pop("loss")), HISTORY),
        (history(lambda h: h.append({"loss": 0.1})), HISTORY),  # not the same metrics
        (history(lambda h: [e.update({"../../escaped": 1.0}) for e in h]), HISTORY),
        (lambda s: s.update(stopped_early="no"), "stopped_early is not true/false"),
        (lambda s: s["callbacks"]["early_stopping"].update(wait=10**6), CALLBACKS),
        (lambda s: s["callbacks"]["plateau"].update(wait=-1), CALLBACKS),
        (lambda s: s["callbacks"]["plateau"].update(best="low"), CALLBACKS),
        (lambda s: s["callbacks"]["plateau"].update(cooldown_counter=True), CALLBACKS),
        (lambda s: s["callbacks"]["plateau"].pop("cooldown_counter"), CALLBACKS),
        (lambda s: s["callbacks"].pop("plateau"), CALLBACKS),
        (lambda s: s["callbacks"].update(other={}), CALLBACKS),
    ],
)
def test_a_checkpoint_with_impossible_contents_is_one_line_and_training_starts_fresh(
    tiny, tmp_path, logged, change, reason
):
    trained_one_epoch(tiny, tmp_path)
    path = tmp_path / f"{NAME}.ckpt"

    def changed(members: dict[str, bytes]) -> None:
        state = json.loads(members["state.json"])
        change(state)
        members["state.json"] = json.dumps(state).encode()

    rewrite(path, changed)
    _, resumed = resumed_in(tiny, tmp_path)
    assert resumed is None and not path.exists()
    assert warnings_in(logged) == [f"ignoring the checkpoint in {path}: {reason}"]


def test_an_array_of_another_shape_is_refused_by_keras_and_no_variable_keeps_it(
    tiny, tmp_path, logged
):
    training, params = tiny
    trained_one_epoch(tiny, tmp_path)
    path = tmp_path / f"{NAME}.ckpt"
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("model_"))
        last_matrix = [n for n in names if np.load(io.BytesIO(archive.read(n))).ndim == 2][-1]
    assert last_matrix != "model_0.npy"  # earlier variables are set before it is refused

    def transposed(members: dict[str, bytes]) -> None:
        members[last_matrix] = npy(np.load(io.BytesIO(members[last_matrix])).T.copy())

    rewrite(path, transposed)
    model, resumed = resumed_in(tiny, tmp_path)
    assert resumed is None and not path.exists()
    (line,) = warnings_in(logged)
    assert line.startswith(f"ignoring the checkpoint in {path}: ")
    assert "shape" in line
    training.seed_everything(params.seed, False)
    fresh, _ = training.build_or_resume(params, 64, None)
    for found, wanted in zip(model.variables, fresh.variables, strict=True):
        assert np.array_equal(found.numpy(), wanted.numpy())
