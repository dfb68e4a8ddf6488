"""Stage 3, train: fit the CNN on the training split, validating every epoch.

Its inputs and outputs are its entry in dvc.yaml. The model is in Keras's native format
and takes raw 0-255 pixels; the training log (DVCLive) holds each epoch's loss and
accuracy, training and validation, written as the epoch ends, and the seconds each
epoch took go beside it, outside DVC's outputs (TRAINING_TIME_DIR).

After every epoch the whole training state is checkpointed into the checkpoint store
(CHECKPOINT_STORE in mnist_pipeline/paths.py), keyed by a fingerprint of the params,
code and data: a run that is killed, in the workspace or in a queued experiment's
temporary copy, resumes after its last finished epoch when it is run again, with the
same result as an uninterrupted run. The checkpoint is removed once the outputs are written.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Import this project's own mnist_pipeline (the folder above this script), never an
# installed copy: an experiment in a temporary copy runs the copy's code, as DVC records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnist_pipeline import checkpoint
from mnist_pipeline.arrays import load_split
from mnist_pipeline.backend import choose_backend, import_keras
from mnist_pipeline.params import Params, load_params
from mnist_pipeline.paths import CHECKPOINT_STORE, MODEL_FILE, PACKAGE_DIR, split_files
from mnist_pipeline.stage import log, run_stage, staged_file

# What the checkpoint fingerprint covers besides the params (paths relative to the root).
CODE = [Path("stages/train.py"), *sorted(PACKAGE_DIR.glob("*.py"))]
DATA = [path for split in ("train", "val") for path in split_files(split)]


def run_fingerprint(params: Params) -> str:
    """What this run's checkpoint is filed under: its params, code and data."""
    settings = params.model_dump(include={"seed", "model", "train"})
    return checkpoint.fingerprint(settings, CODE + DATA)


def main() -> None:
    params = load_params("seed", "model", "train")
    choose_backend(  # a cheap check, nothing imported
        params.train.backend, chosen_by="train.backend", deterministic=params.train.deterministic
    )
    train, val = load_split("train"), load_split("val")
    import_keras()  # on the backend chosen
    from mnist_pipeline import training  # builds on the Keras just imported
    from mnist_pipeline.model import save_model

    # held while the run lasts; its checkpoint removed once the model is saved
    with checkpoint.open_store(CHECKPOINT_STORE, run_fingerprint(params)) as store:
        training.seed_everything(params.seed, params.train.deterministic)
        model, resumed = training.build_or_resume(params, len(train[1]), store)
        with training.fresh_training_log():
            training.fit(model, params.train, params.seed, train, val, store, resumed)
        with staged_file(MODEL_FILE) as tmp:
            save_model(model, tmp)
    log.info(f"saved {MODEL_FILE}")


if __name__ == "__main__":
    run_stage(main)
