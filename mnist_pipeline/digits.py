"""Turning an ordinary image of one digit into an MNIST-style 28x28 image.

MNIST's digits are white on black; each was scaled so its bounding box fits a 20x20
box (keeping its aspect ratio), anti-aliased, then placed in a 28x28 image so that its
centre of mass sits at the centre. `to_mnist` does the same to any image, in these
steps (STEPS; bench/to_mnist_steps.py measures each on and off, on rendered digits made
thin, bold, blurred, coarse and rotated, and on MNIST's own test digits saved as files):

- the ink: the image's gray levels, inverted if its border is light (photos and scans
  are dark on light), less the border's level; its bounding box (above INK_THRESHOLD of
  the brightest ink) scaled to SUPERSAMPLING times the 20-pixel box, to work on;
- deskew: sheared so that the ink's principal axis is vertical (skew mu11 / mu02 from
  the second-order central moments, LeCun's deskewing);
- stroke: strokes thinner or bolder than 80% of MNIST's (STROKE_WIDTHS: twice the mean
  distance from the skeleton to the background, as the digit would be at 20 pixels)
  brought into that range by gray-level dilation or erosion with a disc; blurred
  strokes, wide only for their blur, are not eroded;
- antialias: scaled into the 20x20 box by averaging each pixel's area (and enlarged by
  cubic interpolation before that), so that edges are gray whether the image was large
  or tiny (without it: nearest-neighbour sampling);
- contrast: the brightest ink made full white, as in MNIST (a pencil's gray is not);
- centre: moved by whole pixels so that the centre of mass is at row and column 14.0,
  where MNIST's are (without it: 13.5, as before).

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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from skimage.morphology import skeletonize

from mnist_pipeline.mnist import IMAGE_SIZE

DIGIT_BOX = 20  # the longer side of the digit's bounding box, in pixels
INK_THRESHOLD = 0.2  # a pixel belongs to the digit above this fraction of the darkest ink
MAX_PIXELS = 50_000_000  # larger images are refused: a 50-megapixel photo is the most
DRAWING_MAX_PIXELS = 2048 * 2048  # a drawing sent to the server: a screen's worth at most
WORKING_SIDE = 1024  # larger images are shrunk to this longer side first
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # decoded by Pillow itself
FORMAT_NAMES = "PNG, JPEG, BMP, GIF or WebP"
# The steps of to_mnist, each measured on and off by bench/to_mnist_steps.py
# (bench/results/to_mnist_steps.txt).
STEPS = ("deskew", "stroke", "antialias", "contrast", "centre")
SUPERSAMPLING = 4  # the digit is worked on at 4 times DIGIT_BOX, then averaged down
MAX_SKEW = 1.0  # deskewing shears by at most 45 degrees
# The stroke widths of 80% of MNIST's training digits (10th and 90th percentiles, in
# pixels of the 20x20 box, by stroke_width_of): bench/to_mnist_steps.py measures them.
STROKE_WIDTHS = (1.80, 3.38)
SHARPNESS = 0.85  # strokes narrower than this above 3/4 of their top than at 1/2: blurred
MAX_MORPHOLOGY = 2.0  # strokes grow or shrink by at most 2 pixels a side in each round
MNIST_CENTRE = 14.0  # MNIST's centres of mass: row and column 14.0 +- 0.3 (whole-pixel moves)
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


def to_mnist(image: Image.Image, steps: Iterable[str] = STEPS) -> np.ndarray:
    """A (28, 28) uint8 array, white digit on black, normalised the way MNIST's were (see
    the module's note); `steps` chooses among STEPS, for measuring each one."""
    steps = frozenset(steps)
    if not steps <= frozenset(STEPS):
        raise ValueError(f"unknown steps: {', '.join(sorted(steps - frozenset(STEPS)))}")
    smooth = "antialias" in steps
    work = _supersampled(_ink(image), smooth)
    if "deskew" in steps:
        work = _deskewed(work)
    if "stroke" in steps:
        work = _stroke_normalised(work)
    work = _cropped(work)
    digit = _resized(work, _box(work.shape, DIGIT_BOX), smooth)
    _check_visible(digit)
    if "contrast" in steps:
        digit *= 255 / digit.max()
    return _placed(digit, MNIST_CENTRE if "centre" in steps else (IMAGE_SIZE - 1) / 2)


def stroke_width_of(image: Image.Image) -> float:
    """The width of the digit's strokes in pixels of its DIGIT_BOX box (stroke_width of
    the ink above half the brightest level, at SUPERSAMPLING times that size). The stroke
    step measures a digit so as it would be once scaled into DIGIT_BOX, the size MNIST's
    digits and to_mnist's already have."""
    work = _supersampled(_ink(image), smooth=True)
    return stroke_width(work > work.max() / 2) / SUPERSAMPLING


def _supersampled(pixels: np.ndarray, smooth: bool) -> np.ndarray:
    """The ink's bounding box scaled so that its longer side is SUPERSAMPLING times
    DIGIT_BOX; raise ValueError if it would vanish at DIGIT_BOX."""
    digit = _cropped(pixels)
    work = _resized(digit, _box(digit.shape, DIGIT_BOX * SUPERSAMPLING), smooth)
    _check_visible(_resized(work, _box(work.shape, DIGIT_BOX), smooth=True))
    return work


def _check_visible(digit: np.ndarray) -> None:
    """Raise ValueError unless some of `digit` (scaled into DIGIT_BOX) would be above 0 in
    8 bits."""
    if digit.max() < 0.5:
        raise ValueError(
            f"no digit found: the marks vanish when scaled into {DIGIT_BOX}x{DIGIT_BOX} pixels "
            "(too small, or too far apart)"
        )


def stroke_width(ink: np.ndarray) -> float:
    """The mean width of the strokes of `ink` (a boolean mask), in its pixels: twice the
    mean distance from its skeleton to the background."""
    skeleton = skeletonize(ink)
    if not skeleton.any():
        return 0.0
    distances = ndimage.distance_transform_edt(np.pad(ink, 1))[1:-1, 1:-1]
    return 2 * float(distances[skeleton].mean())


def _ink(image: Image.Image) -> np.ndarray:
    """The image's gray levels as ink over a black background (0-255 floats): inverted
    when its border is light, the border's median level taken away."""
    pixels = _gray(_workable(image))
    background = np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]))
    if background > 127:  # dark on light: make the ink bright, as in MNIST
        pixels, background = 255 - pixels, 255 - background
    pixels = np.clip(pixels - background, 0, 255)
    if pixels.max() < 1:
        raise ValueError("no digit found: the image is blank")
    return pixels


def _cropped(pixels: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels above INK_THRESHOLD of the brightest."""
    ink = pixels > INK_THRESHOLD * pixels.max()
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _box(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """`shape` scaled so that its longer side is `side`, as (height, width)."""
    scale = side / max(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _resized(pixels: np.ndarray, shape: tuple[int, int], smooth: bool) -> np.ndarray:
    """`pixels` resampled to `shape`: shrunk by averaging each pixel's area (a box filter)
    and enlarged by cubic interpolation, so that edges come out in anti-aliased grays;
    nearest-neighbour sampling where not `smooth`."""
    if not smooth:
        method = Image.Resampling.NEAREST
    elif shape[0] * shape[1] < pixels.size:
        method = Image.Resampling.BOX
    else:
        method = Image.Resampling.BICUBIC
    image = Image.fromarray(pixels.astype(np.float32), "F").resize(shape[::-1], method)
    return np.clip(np.asarray(image, dtype=np.float64), 0, 255)


def _deskewed(pixels: np.ndarray) -> np.ndarray:
    """`pixels` sheared horizontally about their centre of mass so that the ink's
    principal axis is vertical: x -> x - skew * (y - centre), skew = mu11 / mu02 from the
    second-order central moments (at most MAX_SKEW either way); a wider array."""
    mass = pixels / pixels.sum()
    rows, cols = np.arange(pixels.shape[0]), np.arange(pixels.shape[1])
    row_mass, col_mass = mass.sum(axis=1), mass.sum(axis=0)
    centre_row, centre_col = row_mass @ rows, col_mass @ cols
    mu02 = row_mass @ (rows - centre_row) ** 2
    mu11 = (rows - centre_row) @ mass @ (cols - centre_col)
    if mu02 < 1e-3:  # one row of ink: nothing to stand up
        return pixels
    skew = float(np.clip(mu11 / mu02, -MAX_SKEW, MAX_SKEW))
    height, width = pixels.shape
    margin = int(np.ceil(abs(skew) * height / 2)) + 1
    # Pillow's affine transform maps each output pixel (x, y) to the input's.
    inverse = (1, skew, -margin - skew * centre_row, 0, 1, 0)
    sheared = Image.fromarray(pixels.astype(np.float32), "F").transform(
        (width + 2 * margin, height), Image.Transform.AFFINE, inverse, Image.Resampling.BILINEAR
    )
    return np.asarray(sheared, dtype=np.float64)


def _stroke_normalised(pixels: np.ndarray) -> np.ndarray:
    """`pixels` (a digit about SUPERSAMPLING times DIGIT_BOX tall or wide) with strokes
    outside STROKE_WIDTHS brought to its nearer end by gray-level dilation or erosion
    with a disc: measured and changed up to three times, as a change is seldom exactly as
    measured."""
    for _ in range(3):
        pixels = _cropped(pixels)
        width = _width(pixels)
        if width == 0 or STROKE_WIDTHS[0] <= width <= STROKE_WIDTHS[1]:
            break
        if width > STROKE_WIDTHS[1] and _blurred(pixels):
            break  # wide for its blur: eroding would only thin it
        target = min(max(width, STROKE_WIDTHS[0]), STROKE_WIDTHS[1])
        # Each side moving by r also moves the digit's box by 2r, which the scaling into
        # DIGIT_BOX takes back: r solves (width + 2r) / (box + 2r) = target / DIGIT_BOX.
        box = max(pixels.shape)
        change = (target * box / DIGIT_BOX - width * SUPERSAMPLING) / (2 - 2 * target / DIGIT_BOX)
        reach = round(min(abs(change), MAX_MORPHOLOGY * SUPERSAMPLING))
        if reach == 0:
            break
        offsets = np.arange(-reach, reach + 1) ** 2
        disc = offsets[:, None] + offsets[None, :] <= reach * (reach + 1)
        if change > 0:
            pixels = ndimage.grey_dilation(np.pad(pixels, reach), footprint=disc)
            continue
        eroded = ndimage.grey_erosion(pixels, footprint=disc)
        if eroded.max() <= pixels.max() / 4:  # worn away
            break
        pixels = eroded
    return pixels


def _width(pixels: np.ndarray) -> float:
    """The stroke width of the ink in `pixels` (at SUPERSAMPLING), in pixels of DIGIT_BOX,
    as stroke_width_of measures it (and MNIST's): once scaled into DIGIT_BOX."""
    small = _resized(pixels, _box(pixels.shape, DIGIT_BOX), True)
    seen = _resized(small, _box(small.shape, DIGIT_BOX * SUPERSAMPLING), True)
    return stroke_width(seen > seen.max() / 2) / SUPERSAMPLING


def _blurred(pixels: np.ndarray) -> bool:
    """Whether the ink's strokes are blurred: much narrower above three quarters of the
    brightest level than above half of it (sharp ones, bold or not, are about as wide)."""
    top = pixels.max()
    half = stroke_width(pixels > top / 2)
    return half > 0 and stroke_width(pixels > 0.75 * top) < SHARPNESS * half


def _placed(digit: np.ndarray, centre: float) -> np.ndarray:
    """`digit` in a 28x28 image, moved by whole pixels so that its centre of mass is as
    near (`centre`, `centre`) as the image's edges allow; rounded to uint8."""
    height, width = digit.shape
    top, left = (IMAGE_SIZE - height) // 2, (IMAGE_SIZE - width) // 2
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
    canvas[top : top + height, left : left + width] = digit
    total = canvas.sum()
    centre_row = (canvas.sum(axis=1) @ np.arange(IMAGE_SIZE)) / total
    centre_col = (canvas.sum(axis=0) @ np.arange(IMAGE_SIZE)) / total
    shift_row = int(np.clip(round(centre - centre_row), -top, IMAGE_SIZE - top - height))
    shift_col = int(np.clip(round(centre - centre_col), -left, IMAGE_SIZE - left - width))
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
