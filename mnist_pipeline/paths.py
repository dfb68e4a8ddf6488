"""Every path the pipeline reads or writes, relative to the project root.

DVC runs each stage from the project root, and dvc.yaml names these same paths.
"""

from pathlib import Path

from platformdirs import user_cache_dir

PARAMS_FILE = Path("params.yaml")

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
# The robustness suite: the test images corrupted, and digits rendered from fonts.
SUITE_DIR = Path("data/robustness")

PACKAGE_DIR = Path("mnist_pipeline")

MODEL_FILE = Path("models/model.keras")
# The serving copies (the export stage's): a SavedModel in TF Serving's layout, a folder
# per version (one: 1), so `-v $PWD/models/saved_model:/models/mnist` serves it as is.
SAVED_MODEL_DIR = Path("models/saved_model")
ONNX_FILE = Path("models/model.onnx")
# The training log, DVCLive's folder: the last epoch's metrics (tracked by git), and each
# metric per epoch, {train,val}/<metric>.tsv.
TRAINING_LOG_DIR = Path("dvclive")
TRAINING_METRICS_FILE = TRAINING_LOG_DIR / "metrics.json"
TRAINING_CURVES_DIR = TRAINING_LOG_DIR / "plots" / "metrics"
# How long each epoch took, DVCLive's log of `epoch_seconds` (the last in its
# metrics.json, each in EPOCH_SECONDS_FILE): what the benchmarks read. Not an output DVC
# records (a rerun's seconds differ, its outputs must not): git ignores the folder.
TRAINING_TIME_DIR = Path("logs/training_time")
EPOCH_SECONDS_FILE = TRAINING_TIME_DIR / "plots" / "metrics" / "epoch_seconds.tsv"
# The user's cache folder: ~/.cache/mnist-dvc-pipeline on Linux (XDG_CACHE_HOME moves it).
USER_CACHE = Path(user_cache_dir("mnist-dvc-pipeline"))
# Training checkpoints, one folder per run fingerprint, outside the project: DVC deletes
# a stage's outputs before rerunning it, and a queued experiment's whole temporary copy
# after it.
CHECKPOINT_STORE = USER_CACHE / "checkpoints"
# JAX's persistent compilation cache, beside them: a second run of the same model on
# JAX loads its compiled programs instead of compiling them again.
JAX_COMPILATION_CACHE = USER_CACHE / "jax-compilation"

REPORTS_DIR = Path("reports")
DATASET_STATS_FILE = REPORTS_DIR / "dataset_stats.json"
SAMPLE_GRID_FILE = REPORTS_DIR / "figures" / "samples.png"
MISCLASSIFIED_GRID_FILE = REPORTS_DIR / "figures" / "misclassified.png"
METRICS_FILE = REPORTS_DIR / "metrics.json"
PREDICTIONS_FILE = REPORTS_DIR / "predictions.csv"
ROBUSTNESS_FILE = REPORTS_DIR / "robustness.json"
ROBUSTNESS_PLOT_FILE = REPORTS_DIR / "robustness.csv"  # accuracy per set, for `dvc plots`
SUITE_EXAMPLES_FILE = REPORTS_DIR / "figures" / "robustness_suite.png"


def split_files(split: str) -> tuple[Path, Path]:
    """The (images, labels) .npy files of one split: 'train', 'val' or 'test'."""
    return PROCESSED_DIR / f"{split}_images.npy", PROCESSED_DIR / f"{split}_labels.npy"


def suite_files(name: str) -> tuple[Path, Path]:
    """The (images, labels) .npy files of one set of the robustness suite."""
    return SUITE_DIR / f"{name}_images.npy", SUITE_DIR / f"{name}_labels.npy"
