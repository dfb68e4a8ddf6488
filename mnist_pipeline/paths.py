"""Every path the pipeline reads or writes, relative to the project root.

DVC runs each stage from the project root, and dvc.yaml names these same paths.
"""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")

MODEL_FILE = Path("models/model.keras")
TRAINING_LOG_DIR = Path("dvclive")
# Not a DVC output (DVC deletes those before a rerun): removed after a successful train.
CHECKPOINT_DIR = Path(".checkpoints/train")

REPORTS_DIR = Path("reports")
DATASET_STATS_FILE = REPORTS_DIR / "dataset_stats.json"
SAMPLE_GRID_FILE = REPORTS_DIR / "figures" / "samples.png"
MISCLASSIFIED_GRID_FILE = REPORTS_DIR / "figures" / "misclassified.png"
METRICS_FILE = REPORTS_DIR / "metrics.json"
PREDICTIONS_FILE = REPORTS_DIR / "predictions.csv"


def split_files(split: str) -> tuple[Path, Path]:
    """The (images, labels) .npy files of one split: 'train', 'val' or 'test'."""
    return PROCESSED_DIR / f"{split}_images.npy", PROCESSED_DIR / f"{split}_labels.npy"
