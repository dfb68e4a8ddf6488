"""Stage 5, export: the trained model in the formats serving systems load.

Its inputs and outputs are its entry in dvc.yaml. The SavedModel sits in TF Serving's
layout (a folder per version), its serving_default signature taking raw uint8 images
(N, 28, 28, 1) as `images` and returning `probabilities` (N, 10); the ONNX model is the
same function (tf2onnx). The validation images check the copies; never the test set.

Both copies compute in float32: a mixed-precision model (train.precision) is rebuilt in
float32 with the same weights, and the stage prints on how many validation images that
changes the digit. Each copy is loaded back with its own runtime (TensorFlow,
onnxruntime) and must give the digit of the Keras model (in float32) for every
validation image, its probabilities within 1e-5; otherwise nothing is written. Export
always runs on TensorFlow, whichever backend trained.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Import this project's own mnist_pipeline (the folder above this script), never an
# installed copy: an experiment in a temporary copy runs the copy's code, as DVC records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnist_pipeline.arrays import load_split
from mnist_pipeline.backend import import_keras
from mnist_pipeline.export import (
    MODEL_VERSION,
    digits_differ,
    disagreement,
    float32_model,
    in_batches,
    onnx_predictor,
    saved_model_predictor,
    write_onnx,
    write_saved_model,
)
from mnist_pipeline.paths import MODEL_FILE, ONNX_FILE, SAVED_MODEL_DIR
from mnist_pipeline.stage import (
    StageError,
    log,
    require_file,
    run_stage,
    staged_dir,
    staged_file,
)


def check(name: str, predict, expected, images) -> None:
    """Fail the stage if the exported `name` disagrees with the Keras model."""
    problem = disagreement(expected, in_batches(predict, images))
    if problem:
        raise StageError(f"the exported {name} disagrees with {MODEL_FILE}: {problem}")


def main() -> None:
    require_file(MODEL_FILE, made_by="train")
    images, _ = load_split("val")
    import_keras("tensorflow", chosen_by="export's backend")  # SavedModel, tf2onnx: TF graphs
    from mnist_pipeline.model import load_model  # builds on the Keras just imported

    trained = load_model(MODEL_FILE)
    model = float32_model(trained)  # what serving runtimes compute in
    expected = in_batches(lambda batch: model.predict(batch, verbose=0), images)
    if model is not trained:
        mixed = in_batches(lambda batch: trained.predict(batch, verbose=0), images)
        log.info(
            f"{MODEL_FILE} is mixed precision; the serving copies compute in float32 "
            f"(same weights), which gives another digit on {digits_differ(mixed, expected):,} "
            f"of {len(images):,} validation images"
        )

    with staged_dir(SAVED_MODEL_DIR) as saved_models, staged_file(ONNX_FILE) as onnx_file:
        version = saved_models / str(MODEL_VERSION)
        write_saved_model(model, version)
        check("SavedModel", saved_model_predictor(version), expected, images)
        write_onnx(model, onnx_file)
        check("ONNX model", onnx_predictor(onnx_file), expected, images)
    log.info(f"wrote {SAVED_MODEL_DIR / str(MODEL_VERSION)} and {ONNX_FILE}")


if __name__ == "__main__":
    run_stage(main)
