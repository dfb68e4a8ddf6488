"""Grids of digits with a caption each, as PNG files (drawn with Pillow: fast to import
and byte-for-byte repeatable)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_pipeline.stage import staged_file

ZOOM = 3  # each 28x28 digit drawn at 84x84
CAPTION_HEIGHT = 16
MARGIN = 6


def save_digit_grid(
    images: np.ndarray, captions: Sequence[str], path: Path, columns: int = 8
) -> None:
    """Draw `images` (N, 28, 28[, 1], uint8, white on black) dark on light in a grid, each
    under its caption, into a PNG at `path`."""
    side = images.shape[1] * ZOOM
    cell_width, cell_height = side + 2 * MARGIN, side + CAPTION_HEIGHT + MARGIN
    rows = max(1, -(-len(images) // columns))
    sheet = Image.new("L", (columns * cell_width, rows * cell_height), 255)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for index, (image, caption) in enumerate(zip(images, captions, strict=True)):
        left, top = (index % columns) * cell_width, (index // columns) * cell_height
        digit = Image.fromarray(255 - np.squeeze(image).astype(np.uint8))
        sheet.paste(
            digit.resize((side, side), Image.Resampling.NEAREST),
            (left + MARGIN, top + CAPTION_HEIGHT),
        )
        draw.text((left + cell_width / 2, top + 2), caption, fill=0, font=font, anchor="mt")
    with staged_file(path) as tmp:
        sheet.save(tmp, format="PNG")
