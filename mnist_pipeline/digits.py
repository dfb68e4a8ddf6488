"""Turning an ordinary image of one digit into an MNIST-style 28x28 image.

MNIST's digits are white on black; each was scaled so its bounding box fits a 20x20
box (keeping its aspect ratio), then placed in a 28x28 image so that its centre of
mass sits at the centre. Photos and scans are usually dark on light, so those are
inverted first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_pipeline.mnist import IMAGE_SIZE

DIGIT_BOX = 20  # the longer side of the digit's bounding box, in pixels
INK_THRESHOLD = 0.2  # a pixel belongs to the digit above this fraction of the darkest ink


def read_image(path: Path) -> Image.Image:
    """Open an image file; raise ValueError saying why it cannot be read."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except IsADirectoryError:
        raise ValueError("is a directory") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not a readable image ({error})") from None


def to_mnist(image: Image.Image) -> np.ndarray:
    """A (28, 28) uint8 array, white digit on black, normalised the way MNIST's were."""
    pixels = np.asarray(ImageOps.grayscale(image.convert("RGBA").convert("RGB")), dtype=np.float64)
    background = np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]))
    if background > 127:  # dark on light: make the ink bright, as in MNIST
        pixels, background = 255 - pixels, 255 - background
    pixels = np.clip(pixels - background, 0, 255)
    if pixels.max() <= 0:
        raise ValueError("no digit found: the image is blank")
    rows, cols = np.nonzero(pixels > INK_THRESHOLD * pixels.max())
    digit = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = DIGIT_BOX / max(digit.shape)
    height, width = (max(1, round(side * scale)) for side in digit.shape)
    resized = Image.fromarray(digit.astype(np.uint8)).resize(
        (width, height), Image.Resampling.LANCZOS
    )
    digit = np.asarray(resized, dtype=np.float64)

    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
    top, left = (IMAGE_SIZE - height) // 2, (IMAGE_SIZE - width) // 2
    canvas[top : top + height, left : left + width] = digit
    total = canvas.sum()
    centre_row = (canvas.sum(axis=1) @ np.arange(IMAGE_SIZE)) / total
    centre_col = (canvas.sum(axis=0) @ np.arange(IMAGE_SIZE)) / total
    shift_row = int(
        np.clip(round((IMAGE_SIZE - 1) / 2 - centre_row), -top, IMAGE_SIZE - top - height)
    )
    shift_col = int(
        np.clip(round((IMAGE_SIZE - 1) / 2 - centre_col), -left, IMAGE_SIZE - left - width)
    )
    canvas = np.roll(canvas, (shift_row, shift_col), axis=(0, 1))
    return np.clip(canvas, 0, 255).round().astype(np.uint8)
