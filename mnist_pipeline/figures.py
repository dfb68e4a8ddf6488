"""Grids of digits with a caption each, as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from mnist_pipeline.stage import staged_file


def save_digit_grid(
    images: np.ndarray, captions: Sequence[str], path: Path, columns: int = 8
) -> None:
    """Draw `images` (N, 28, 28[, 1]) in a grid, each above its caption, into a PNG at `path`."""
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.4), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, captions, strict=False):
        axis.imshow(np.squeeze(image), cmap="gray_r", vmin=0, vmax=255)
        axis.set_title(caption, fontsize=8)
    figure.tight_layout()
    with staged_file(path) as tmp:
        figure.savefig(tmp, dpi=80)
    plt.close(figure)
