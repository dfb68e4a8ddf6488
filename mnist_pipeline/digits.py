"""Turning an ordinary image of one digit into an MNIST-style 28x28 image.

MNIST's digits are white on black; each was scaled so its bounding box fits a 20x20
box (keeping its aspect ratio), then placed in a 28x28 image so that its centre of
mass sits at the centre. Photos and scans are usually dark on light, so those are
inverted first.

Image files come from anyone, so reading one is guarded: only a few formats that Pillow
decodes itself (never EPS, which would run Ghostscript), at most MAX_PIXELS pixels
(checked from the header, before decoding), the first frame only, and shrunk to
WORKING_SIDE pixels a side before any arithmetic. Every image that cannot be made into
a digit gives a ValueError with a one-line message.

What arrives over the network is held tighter (`drawing_to_mnist`, for the server's
drawing page): PNG only, whose decoding costs time in proportion to its pixels (a
progressive JPEG can make each of its pixels cost hundreds of times over), and at most
DRAWING_MAX_PIXELS of them: a digit drawn on a screen is well under a megapixel.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_pipeline.mnist import IMAGE_SIZE

DIGIT_BOX = 20  # the longer side of the digit's bounding box, in pixels
INK_THRESHOLD = 0.2  # a pixel belongs to the digit above this fraction of the darkest ink
MAX_PIXELS = 50_000_000  # larger images are refused: a 50-megapixel photo is the most
DRAWING_MAX_PIXELS = 2048 * 2048  # a drawing sent to the server: a screen's worth at most
WORKING_SIDE = 1024  # larger images are shrunk to this longer side first
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # decoded by Pillow itself
FORMAT_NAMES = "PNG, JPEG, BMP, GIF or WebP"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")  # no fixed white level

# What Pillow raises for a file that is broken in the middle, besides OSError.
_BROKEN = (SyntaxError, EOFError, IndexError, TypeError, ValueError, struct.error, zlib.error)


def read_image(
    path: Path | BinaryIO, formats: tuple[str, ...] = FORMATS, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """The first frame of an image file (a path, or a binary file object such as a
    request's body) in one of `formats`, of at most `max_pixels`, shrunk to at most
    WORKING_SIDE pixels a side; raise ValueError saying why it cannot be read."""
    with _read_errors(formats):
        image = _open(path, formats)
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ValueError(
                f"image too large: {width}x{height} is {width * height:,} pixels, "
                f"over the limit of {max_pixels:,}"
            )
        with _read_errors(formats):
            image.draft(None, _fitted(image.size))  # JPEG: decode at 1/2 to 1/8 scale
            image.load()
        return _workable(image)


def drawing_to_mnist(png: bytes) -> np.ndarray:
    """The MNIST-style digit of a drawing sent as PNG bytes (see the module's note); raise
    ValueError saying why there is none."""
    return to_mnist(read_image(io.BytesIO(png), ("PNG",), DRAWING_MAX_PIXELS))


def check_drawing_size(png: bytes) -> None:
    """Raise ValueError unless `png` starts as a PNG of at most DRAWING_MAX_PIXELS: read
    from its first 24 bytes (the signature, then the IHDR chunk a PNG must begin with),
    so that a decompression bomb costs nothing to refuse."""
    if png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR" or len(png) < 24:
        raise ValueError("not a readable image: not a PNG file")
    width, height = struct.unpack(">II", png[16:24])
    if width * height > DRAWING_MAX_PIXELS:
        raise ValueError(
            f"image too large: {width}x{height} is {width * height:,} pixels, "
            f"over the limit of {DRAWING_MAX_PIXELS:,}"
        )


def to_mnist(image: Image.Image) -> np.ndarray:
    """A (28, 28) uint8 array, white digit on black, normalised the way MNIST's were."""
    pixels = _gray(_workable(image))
    background = np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]))
    if background > 127:  # dark on light: make the ink bright, as in MNIST
        pixels, background = 255 - pixels, 255 - background
    pixels = np.clip(pixels - background, 0, 255)
    if pixels.max() < 1:
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
    if total == 0:
        raise ValueError(
            f"no digit found: the marks vanish when scaled into {DIGIT_BOX}x{DIGIT_BOX} pixels "
            "(too small, or too far apart)"
        )
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


def _open(path: Path | BinaryIO, formats: tuple[str, ...]) -> Image.Image:
    """Open an image of one of `formats` lazily: only its header is read. Pillow's own pixel
    check is off meanwhile, as read_image's is stricter and says the width and height
    (not thread-safe, like Pillow's setting itself)."""
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        return Image.open(path, formats=list(formats))
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def _read_errors(formats: tuple[str, ...]) -> Iterator[None]:
    """The file system's and Pillow's errors in the block as ValueErrors with one-line
    messages; Pillow's decompression bomb warning is one of them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except IsADirectoryError:
        raise ValueError("is a directory") from None
    except PermissionError:
        raise ValueError("permission denied") from None
    except UnidentifiedImageError:
        names = FORMAT_NAMES if formats == FORMATS else " or ".join(formats)
        raise ValueError(f"not a readable image: not a {names} file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"image too large: {_one_line(error)}") from None
    except (OSError, *_BROKEN) as error:
        raise ValueError(f"not a readable image: {_one_line(error)}") from None


def _fitted(size: tuple[int, int]) -> tuple[int, int]:
    """`size` shrunk, keeping its aspect ratio, to at most WORKING_SIDE pixels a side."""
    scale = min(1.0, WORKING_SIDE / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _workable(image: Image.Image) -> Image.Image:
    """`image` at most WORKING_SIDE pixels a side, in a mode that resamples smoothly:
    1-bit and palette images become grayscale (with alpha where they have transparency),
    16-bit ones 32-bit (ignoring a transparent level: rare, and LA would clip them)."""
    if image.mode in HIGH_DEPTH_MODES:
        image = image.convert("I") if image.mode.startswith("I;16") else image
    elif image.mode in ("1", "P", "PA") or "transparency" in image.info:
        image = image.convert("LA" if image.has_transparency_data else "L")
    if max(image.size) > WORKING_SIDE:
        image = image.resize(_fitted(image.size), Image.Resampling.BOX)
    return image


def _gray(image: Image.Image) -> np.ndarray:
    """Gray levels 0-255 as floats. Transparent pixels show the paper (see _paper);
    16-bit, 32-bit and float images are stretched from their darkest pixel to their
    lightest, as they have no fixed white level."""
    if image.mode in HIGH_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("the image has NaN or infinite pixel values; expected finite numbers")
        low, high = values.min(), values.max()
        return (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
    if not image.has_transparency_data:
        return np.asarray(_converted(image, "L"), dtype=np.float64)
    la = np.asarray(_converted(image, "LA"), dtype=np.float64)
    gray, alpha = la[..., 0], la[..., 1] / 255
    return gray * alpha + _paper(gray, alpha) * (1 - alpha)


def _converted(image: Image.Image, mode: str) -> Image.Image:
    """`image` in `mode`, through RGB(A) for the modes Pillow cannot convert directly."""
    try:
        return image.convert(mode)
    except ValueError:
        return image.convert("RGBA" if mode == "LA" else "RGB").convert(mode)


def _paper(gray: np.ndarray, alpha: np.ndarray) -> float:
    """The shade transparent pixels stand for. Mostly opaque: the opaque pixels are paper
    and ink, so the paper's shade (their median); mostly transparent: they are the ink,
    so the opposite of its shade (dark and light ink on transparent are both found)."""
    opaque = gray[alpha > 0.5]
    shade = float(np.median(opaque)) if opaque.size else 255.0
    if 2 * opaque.size >= gray.size:
        return shade
    return 0.0 if shade > 127 else 255.0


def _one_line(error: BaseException) -> str:
    """The error's message on one line (or its type's name where it has none)."""
    return " ".join(str(error).split()) or type(error).__name__
