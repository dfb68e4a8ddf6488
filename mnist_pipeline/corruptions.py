"""The robustness suite's data: MNIST's test digits corrupted in the ways MNIST-C defines
and in the ways pens and scanners change digits, then digits rendered in fonts. Pure
numpy, scipy, scikit-image and Pillow: no TensorFlow.

Every set, in SUITE's (report) order, one line each (the functions below say more).
Pixels run from 0 (black) to 1 (white ink); rows and columns 0-27, the centre at 13.5.

MNIST-C (Mu and Gilmer 2019, arXiv:1906.02337), at the one severity (of 1-5) each of its
sets was made with, its code's default:
    shot_noise      ink p becomes Poisson(3p)/3 (severity 5: rate 3)
    impulse_noise   17% of the pixels set black or white, half each (severity 4: 0.17)
    glass_blur      blur, 2 sweeps swapping pixels 1 px up/left, blur (severity 1: 0.7, 1, 2)
    motion_blur     one-sided Gaussian smear within 45 degrees of level (severity 1: 10, 3)
    shear           sheared 0.4 rad about the centre, left or right (severity 2: 0.4)
    scale           shrunk about the centre to 0.7 of its size (severity 3: 1/0.7)
    rotate          rotated 0.4 rad (23 degrees) about the centre, either way (severity 2)
    brightness      0.5 added to every pixel: a gray background (severity 5: 0.5)
    translate       moved 3 px across and 3 px up or down (severity 3: 3 px)
    stripe          the outer quarters (columns 0-6 and 21-27) inverted (no severities)
    fog             plasma-fractal haze, weight 3, over the digit (severity 5: 3, decay 1.4)
    spatter         gray mud blobs where smoothed noise tops a level (severity 4)
    dotted_line     a dashed line (2 px on, 2 off) from edge to edge (no severities)
    zigzag          a zigzag line (corners 2 px off its axis, 4 px apart) (no severities)
    canny_edges     the Canny edges (sigma 1): outlines only (no severities)

What pens and scanners do that MNIST-C lacks, on the same test digits:
    thin            thinner strokes: a gray erosion by a 2x2 square (1 px narrower)
    bold            bolder strokes: a gray dilation by a 3x3 cross (2 px wider)
    low_resolution  box-averaged down to 14x14 (the digit 10 px tall) and up again, blocky
    rotated         rotated about the centre, uniformly within 15 degrees either way

Digits rendered in 19 fonts matplotlib ships (mnist_pipeline.renderings), 1,520 a set
(or as many as asked, spread over the fonts and layouts), whatever the test images, read as
`mnist-pipeline predict` reads a file:
    rendered                 0-9, 8 layouts a font, as rendered
    rendered_thin            thinner strokes (a max filter, 3 or 5 px with the canvas)
    rendered_bold            bolder strokes (a min filter, 3 or 5 px with the canvas)
    rendered_blurred         a Gaussian blur of 1/40 of the canvas
    rendered_low_resolution  scanned with the digit 10 px tall and blown up again, blocky
    rendered_rotated         rotated uniformly within 15 degrees either way

Each set draws from a generator of its own, seeded from the suite's seed and the set's
name, so its bytes depend on neither the other sets nor their order.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import ImageFont
from scipy import ndimage
from skimage import feature

from mnist_pipeline import figures, renderings
from mnist_pipeline.mnist import IMAGE_SIZE

MNIST_C = (
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
)
PENS_AND_SCANNERS = ("thin", "bold", "low_resolution", "rotated")
RENDERED = tuple(renderings.SETS)
SUITE = MNIST_C + PENS_AND_SCANNERS + RENDERED
CLEAN = "clean"  # the name for the test images as they are, kept beside the suite's sets

CENTRE = (IMAGE_SIZE - 1) / 2  # rows and columns 0-27: the middle is 13.5

# The paper's severities' parameters (see the module's docstring).
SHOT_RATE = 3.0
IMPULSE_AMOUNT = 0.17
GLASS_SIGMA, GLASS_SWEEPS = 0.7, 2
MOTION_RADIUS, MOTION_SIGMA, MOTION_MAX_DEGREES = 10, 3.0, 45.0
SHEAR_RADIANS = 0.4
SCALE_FACTOR = 0.7
ROTATE_RADIANS = 0.4
BRIGHTNESS_SHIFT = 0.5
TRANSLATE_PIXELS = 3
STRIPE_COLUMNS = 7  # each side
FOG_WEIGHT, FOG_DECAY, FOG_MAP_SIDE = 3.0, 1.4, 256
SPATTER_MEAN, SPATTER_SD, SPATTER_SIGMA, SPATTER_LEVEL = 0.65, 0.3, 1.0, 0.65
SPATTER_MASK_SIGMA, SPATTER_MASK_LEVEL, SPATTER_GRAY = 1.5, 0.8, 63 / 255
LINE_REACH = 2.3  # rows: 1 + ln(1 - d / LINE_REACH) is a line's brightness d rows away
ZIGZAG_FIRST, ZIGZAG_LAST, ZIGZAG_RISE = 2, 25, 5  # columns; rows the far end may move
ZIGZAG_HALF_PERIOD, ZIGZAG_AMPLITUDE = 2.0, 2.0
CANNY_SIGMA = 1.0
# Pens and scanners.
LOW_RESOLUTION_SIDE = 14
ROTATED_MAX_DEGREES = renderings.MAX_DEGREES

_CHUNK = 2048  # images at a time where a step holds several arrays per image


def corrupt(name: str, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The test images (N, 28, 28) uint8 corrupted by `name` (one of MNIST_C or
    PENS_AND_SCANNERS), drawing any randomness from `rng`: (N, 28, 28) uint8."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(CORRUPTIONS)}")
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected images of shape (N, 28, 28); got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images; got {images.dtype}")
    if not len(images):
        return images.copy()
    ink = CORRUPTIONS[name](images.astype(np.float64) / 255, rng)
    return np.clip(np.rint(ink * 255), 0, 255).astype(np.uint8)


def set_generator(name: str, seed: int) -> np.random.Generator:
    """The generator of set `name` in a suite built with `seed`."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def build_suite(
    images: np.ndarray, labels: np.ndarray, seed: int, rendered: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every set of SUITE, in its order: name -> (images (M, 28, 28) uint8, labels (M,)
    uint8). The corrupted sets are `images` (MNIST's test digits) corrupted, with
    `labels`; the rendered ones are the same whatever `images` are: `rendered` digits
    each (None: all renderings.GRID_SIZE), the same digits in every rendered set."""
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"expected {len(images)} labels; got shape {labels.shape}")
    if seed < 0:
        raise ValueError(f"the seed must be 0 or more; got {seed}")
    suite = {}
    for name in SUITE:
        rng = set_generator(name, seed)
        if name in CORRUPTIONS:
            suite[name] = (corrupt(name, images, rng), labels.astype(np.uint8))
        else:
            suite[name] = renderings.rendered_set(name, rng, rendered)
    return suite


def save_examples(
    suite: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, columns: int = 8
) -> None:
    """One example of each set in `suite`, captioned with its name, as a PNG at `path`:
    the first digit of each with the label of the first set's first digit (for the
    corrupted sets, that same test digit). A caption wider than its cell gets a blank
    cell either side."""
    names = list(suite)
    if not names:
        raise ValueError("no sets to show")
    label = suite[names[0]][1][0]
    blank = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    images, captions = [], []
    for name in _caption_slots(names, columns):
        if name is None:
            images.append(blank)
            captions.append("")
            continue
        set_images, set_labels = suite[name]
        matching = np.flatnonzero(set_labels == label)
        images.append(set_images[matching[0] if matching.size else 0])
        captions.append(name)
    figures.save_digit_grid(np.stack(images), captions, path, columns)


def _caption_slots(names: list[str], columns: int) -> list[str | None]:
    """`names` in grid order, with blank cells (None) where a caption would run into its
    left neighbour's (or, off the grid's sides, past the picture's edge)."""
    font = ImageFont.load_default(size=12)  # as figures.save_digit_grid's captions
    cell = IMAGE_SIZE * figures.ZOOM + 2 * figures.MARGIN
    room = 4  # pixels between two captions
    slots: list[str | None] = []
    for name in names:
        width = font.getlength(name)
        while True:
            column = len(slots) % columns
            left = slots[-1] if column else None
            at_side = columns >= 3 and column in (0, columns - 1)
            if not (at_side and width > cell) and (
                left is None or (width + font.getlength(left)) / 2 + room <= cell
            ):
                break
            slots.append(None)
        slots.append(name)
    return slots


# ---------------------------------------------------------------- MNIST-C
# Each: images as floats 0-1 (N, 28, 28) and the set's generator in, floats out.


def _shot_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photon noise: each pixel p a Poisson count of rate 3p, over 3 (the background,
    0, stays black)."""
    return rng.poisson(x * SHOT_RATE) / SHOT_RATE


def _impulse_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: each pixel, with probability 0.17, black or white (even odds)."""
    hit = rng.random(x.shape) < IMPULSE_AMOUNT
    white = rng.random(x.shape) < 0.5
    return np.where(hit, white.astype(np.float64), x)


def _glass_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian blur (sigma 0.7); then two sweeps from the bottom right corner in which
    each pixel of rows and columns 2-27, with probability 1/2, swaps with itself or the
    pixel above, left or above-left of it (a pixel moved may move again); the blur again."""
    # Pixel-major (28, 28, N), so each swap below is one row of N values; the sweeps go
    # pixel by pixel (a pixel moved may move again), but over all images at once.
    pixels = np.ascontiguousarray(_gaussian(x, GLASS_SIGMA).transpose(1, 2, 0))
    count = len(x)
    inner = np.arange(IMAGE_SIZE - 1, 1, -1)  # rows and columns 27 down to 2
    for _ in range(GLASS_SWEEPS):
        swaps = rng.random((len(inner), len(inner), count)) < 0.5
        steps = rng.integers(0, 2, size=(2, len(inner), len(inner), count))  # 1: back one
        for i, row in enumerate(inner):
            for j, column in enumerate(inner):
                which = np.flatnonzero(swaps[i, j])
                rows = row - steps[0, i, j, which]
                columns = column - steps[1, i, j, which]
                here = pixels[row, column, which]
                pixels[row, column, which] = pixels[rows, columns, which]
                pixels[rows, columns, which] = here
    return _gaussian(pixels.transpose(2, 0, 1), GLASS_SIGMA)


def _motion_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pixel the mean of the pixels 0 to 10 px from it (rounded to whole pixels)
    along a direction drawn uniformly within 45 degrees of horizontal, weighted by a
    one-sided Gaussian of distance (sigma 3)."""
    angles = np.deg2rad(rng.uniform(-MOTION_MAX_DEGREES, MOTION_MAX_DEGREES, size=len(x)))
    distances = np.arange(MOTION_RADIUS + 1)
    weights = np.exp(-(distances**2) / (2 * MOTION_SIGMA**2))
    weights /= weights.sum()
    blurred = np.zeros_like(x)
    for distance, weight in zip(distances, weights, strict=True):
        rows = np.rint(distance * np.sin(angles)).astype(np.intp)
        columns = np.rint(distance * np.cos(angles)).astype(np.intp)
        blurred += weight * _shifted(x, rows, columns)
    return blurred


def _shear(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sheared by 0.4 rad about the centre, left or right at random, bilinear. As in the
    scikit-image the paper used (0.14), whose shear turned the y axis, the rows are also
    spaced 1/cos 0.4 apart: the digit grows 9% taller."""

    def sheared(images: np.ndarray, radians: float) -> np.ndarray:  # (row, column) out -> in
        return _affine(images, np.array([[np.cos(radians), 0.0], [-np.sin(radians), 1.0]]))

    return _either_way(x, rng, sheared, SHEAR_RADIANS)


def _scale(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shrunk to 0.7 of its size about the centre, bilinear."""
    return _affine(x, np.eye(2) / SCALE_FACTOR)


def _rotate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotated by 0.4 rad about the centre, either way at random, bilinear."""
    return _either_way(x, rng, _rotated, ROTATE_RADIANS)


def _brightness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0.5 added to every pixel (clipped): the paper's HSV value shift, on gray pixels."""
    return x + BRIGHTNESS_SHIFT


def _translate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Moved 3 px left or right and 3 px up or down, each at random; black comes in."""
    rows, columns = TRANSLATE_PIXELS * rng.choice([-1, 1], size=(2, len(x)))
    return _shifted(x, rows, columns)


def _stripe(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Columns 0-6 and 21-27 inverted."""
    striped = x.copy()
    for side in (slice(None, STRIPE_COLUMNS), slice(IMAGE_SIZE - STRIPE_COLUMNS, None)):
        striped[:, :, side] = 1 - x[:, :, side]
    return striped


def _fog(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plasma fractal haze (see _plasma: a 28x28 window of a 256x256 map, its noise
    falling 1.4^2 an octave) times 3 added, then all scaled by m / (m + 3), m the image's
    brightest pixel: the digit stands 1/4 of its ink above the haze."""
    haze = _plasma_windows(rng, len(x))
    brightest = x.max(axis=(1, 2), keepdims=True)
    return (x + FOG_WEIGHT * haze) * brightest / (brightest + FOG_WEIGHT)


def _spatter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mud: Gaussian noise (mean 0.65, sd 0.3) blurred (sigma 1); where it tops 0.65, a
    mask, blurred (sigma 1.5) and kept where it tops 0.8; there, the image blended
    towards gray 63/255 by the mask."""
    liquid = _gaussian(rng.normal(SPATTER_MEAN, SPATTER_SD, size=x.shape), SPATTER_SIGMA)
    mud = _gaussian((liquid > SPATTER_LEVEL).astype(np.float64), SPATTER_MASK_SIGMA)
    mud[mud < SPATTER_MASK_LEVEL] = 0
    return x * (1 - mud) + SPATTER_GRAY * mud


def _dotted_line(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A line (see _line_ink: about 3 px thick) from a random row (0-26) of column 0 to
    one of column 27, dashed: columns 2-3, 6-7, ... 22-23, 26 only; added to the ink."""
    left, right = rng.integers(0, IMAGE_SIZE - 1, size=(2, len(x), 1))
    columns = np.arange(IMAGE_SIZE)
    line_rows = left + (right - left) * columns / (IMAGE_SIZE - 1)  # (N, 28): by column
    ink = _line_ink(line_rows)
    ink[:, :, (columns // 2 % 2 == 0) | (columns == IMAGE_SIZE - 1)] = 0  # the dashes' gaps
    return x + ink


def _zigzag(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A zigzag of lines (see _line_ink) along an axis from column 2, at a random row
    (0-26), to column 25, rising or falling 5 rows at most; its corners 2 px either side
    of the axis, 4 px apart along it. Each stroke is drawn over the columns it spans, as
    the paper's are. Added to the ink."""
    count = len(x)
    start = rng.integers(0, IMAGE_SIZE - 1, size=count)
    rise = rng.integers(-ZIGZAG_RISE, ZIGZAG_RISE, size=count)
    angle = np.arctan(rise / (ZIGZAG_LAST - ZIGZAG_FIRST))
    length = (ZIGZAG_LAST - ZIGZAG_FIRST) / np.cos(angle)  # 23 to 23.6 columns' worth
    # Along the line (u) and across it (v): corners every 2 half-periods, up and down.
    half, peak = ZIGZAG_HALF_PERIOD, ZIGZAG_AMPLITUDE
    corners = np.arange(half, ZIGZAG_LAST - ZIGZAG_FIRST, 2 * half)  # 2, 6, ... 22
    u = np.concatenate([np.zeros((count, 1)), np.tile(corners, (count, 1)), length[:, None]], 1)
    signs = np.where(np.arange(len(corners)) % 2 == 0, 1.0, -1.0)
    last = signs[-1] * peak - signs[-1] * (length - corners[-1]) * peak / half
    v = np.concatenate([np.zeros((count, 1)), np.tile(signs * peak, (count, 1)), last[:, None]], 1)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    columns = ZIGZAG_FIRST + u * cos - v * sin
    rows = start[:, None] + u * sin + v * cos
    grid = np.arange(IMAGE_SIZE)
    ink = np.zeros_like(x)
    for k in range(u.shape[1] - 1):  # each stroke: across the columns it spans
        c0, c1 = columns[:, k : k + 1], columns[:, k + 1 : k + 2]
        r0, r1 = rows[:, k : k + 1], rows[:, k + 1 : k + 2]
        line_rows = r0 + (r1 - r0) / (c1 - c0) * (grid - c0)
        spanned = (grid >= np.floor(c0)) & (grid < np.ceil(c1))  # (N, 28)
        ink += _line_ink(line_rows) * spanned[:, None, :]
    return x + ink


def _canny_edges(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """scikit-image's Canny edges (sigma 1, thresholds 0.1 and 0.2), white on black."""
    # scikit-image's canny takes one 2-D image (0.2 ms each); a mosaic of them in one
    # call would change the gradients on each image's rim, which its neighbours see.
    return np.stack([feature.canny(image, sigma=CANNY_SIGMA) for image in x]).astype(np.float64)


# ---------------------------------------------------------------- pens and scanners


def _thin(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A gray erosion by a 2x2 square: strokes 1 px narrower."""
    # A thin pen's ink is as dark as a broad one's: the brightest pixel keeps its level
    # (a faint hairline left by the erosion is brought back up with it).
    thinned = ndimage.grey_erosion(x, size=(1, 2, 2))
    brightest = thinned.max(axis=(1, 2), keepdims=True)
    return thinned * np.divide(
        x.max(axis=(1, 2), keepdims=True),
        brightest,
        where=brightest > 0,
        out=np.ones_like(brightest),
    )


def _bold(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A gray dilation by a 3x3 cross: strokes 2 px wider."""
    return ndimage.grey_dilation(x, footprint=ndimage.generate_binary_structure(2, 1)[None])


def _low_resolution(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scanned at half MNIST's resolution (the digit 10 px tall, as
    bench/rendered_digits.py's low resolution): each of 14x14 pixels the mean of the
    area it covers, then each shown as a 2x2 block."""
    side = LOW_RESOLUTION_SIDE
    # Box averaging: each coarse pixel the mean of the fine area it covers.
    edges = np.arange(side + 1) * IMAGE_SIZE / side
    fine = np.arange(IMAGE_SIZE)
    overlap = np.clip(
        np.minimum(edges[1:, None], fine + 1) - np.maximum(edges[:-1, None], fine), 0, None
    )
    average = overlap / overlap.sum(axis=1, keepdims=True)  # (side, 28)
    coarse = average @ x @ average.T
    nearest = ((fine + 0.5) * side / IMAGE_SIZE).astype(np.intp)
    return coarse[:, nearest][:, :, nearest]


def _rotated_randomly(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotated about the centre by an angle drawn uniformly in [-15, 15] degrees."""
    degrees = rng.uniform(-ROTATED_MAX_DEGREES, ROTATED_MAX_DEGREES, size=len(x))
    return _rotated(x, np.deg2rad(degrees))


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "shear": _shear,
    "scale": _scale,
    "rotate": _rotate,
    "brightness": _brightness,
    "translate": _translate,
    "stripe": _stripe,
    "fog": _fog,
    "spatter": _spatter,
    "dotted_line": _dotted_line,
    "zigzag": _zigzag,
    "canny_edges": _canny_edges,
    "thin": _thin,
    "bold": _bold,
    "low_resolution": _low_resolution,
    "rotated": _rotated_randomly,
}


# ---------------------------------------------------------------- helpers


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Each image blurred (edges extended, as scikit-image's `gaussian`)."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="nearest", truncate=4.0)


def _shifted(x: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Each image n sampled `rows[n]` rows and `columns[n]` columns (whole pixels) away:
    out[n, r, c] = x[n, r + rows[n], c + columns[n]], black beyond the edges."""
    pad = int(max(np.abs(rows).max(initial=0), np.abs(columns).max(initial=0)))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out = np.empty_like(x)
    shifts, which = np.unique(np.stack([rows, columns], axis=1), axis=0, return_inverse=True)
    for index, (row, column) in enumerate(shifts):
        chosen = which.ravel() == index
        top, left = pad + row, pad + column
        out[chosen] = padded[chosen, top : top + IMAGE_SIZE, left : left + IMAGE_SIZE]
    return out


def _affine(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Each image resampled (bilinear, black beyond the edges) so that the pixel at
    (row, column) comes from matrix @ ((row, column) - centre) + centre."""
    full = np.eye(3)
    full[1:, 1:] = matrix
    offset = np.concatenate([[0.0], CENTRE - matrix @ [CENTRE, CENTRE]])
    return ndimage.affine_transform(x, full, offset=offset, order=1, mode="constant")


def _rotated(x: np.ndarray, radians: float | np.ndarray) -> np.ndarray:
    """Each image rotated about the centre by `radians` (one angle, or one per image),
    bilinear; positive turns the digit anticlockwise as shown."""
    angles = np.broadcast_to(np.asarray(radians, dtype=np.float64), (len(x),))
    out = np.empty_like(x)
    grid = np.arange(IMAGE_SIZE) - CENTRE
    for first in range(0, len(x), _CHUNK):
        cos = np.cos(angles[first : first + _CHUNK])[:, None, None]
        sin = np.sin(angles[first : first + _CHUNK])[:, None, None]
        rows, columns = grid[None, :, None], grid[None, None, :]
        coordinates = np.stack(
            np.broadcast_arrays(
                np.arange(len(cos), dtype=np.float64)[:, None, None],
                CENTRE + cos * rows + sin * columns,
                CENTRE - sin * rows + cos * columns,
            )
        )
        out[first : first + _CHUNK] = ndimage.map_coordinates(
            x[first : first + _CHUNK], coordinates, order=1, mode="constant"
        )
    return out


def _either_way(
    x: np.ndarray,
    rng: np.random.Generator,
    transform: Callable[[np.ndarray, float], np.ndarray],
    amount: float,
) -> np.ndarray:
    """Each image transformed by `amount` or by -`amount`, with equal chance."""
    out = np.empty_like(x)
    positive = rng.random(len(x)) < 0.5
    for chosen, signed in ((positive, amount), (~positive, -amount)):
        if chosen.any():
            out[chosen] = transform(x[chosen], signed)
    return out


def _line_ink(line_rows: np.ndarray) -> np.ndarray:
    """(N, 28, 28): a line through row line_rows[n, c] of each column c, 1 + ln(1 - d /
    LINE_REACH) bright at d rows from it, 0 from where that reaches 0."""
    distance = np.abs(np.arange(IMAGE_SIZE)[None, :, None] - line_rows[:, None, :])
    near = distance < LINE_REACH * (1 - np.exp(-1))  # beyond, 1 + ln(...) is below 0
    ink = np.zeros(distance.shape)
    ink[near] = 1 + np.log1p(-distance[near] / LINE_REACH)
    return ink


def _plasma_windows(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` 28x28 windows of plasma fractals, 0-1: the 8x8 windows 32 px apart of
    each 256x256 map in turn (each map scaled to 0-1 as a whole, as a window of a map
    of its own would be)."""
    per_map = (FOG_MAP_SIDE // 32) ** 2
    maps = -(-count // per_map)
    windows = []
    for first in range(0, maps, 16):
        plasma = _plasma(rng, min(16, maps - first))
        tiles = plasma.reshape(len(plasma), 8, 32, 8, 32)[:, :, :IMAGE_SIZE, :, :IMAGE_SIZE]
        windows.append(tiles.transpose(0, 1, 3, 2, 4).reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
    return np.concatenate(windows)[:count]


def _plasma(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` plasma fractals (FOG_MAP_SIDE square, wrapping around): diamond-square,
    each new point the mean of its 4 neighbours plus uniform noise whose reach falls
    FOG_DECAY^2 times each halving of the step; each map scaled to 0-1."""
    side = FOG_MAP_SIDE
    maps = np.zeros((count, side, side))
    step, reach = side, 1.0
    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        around = corners + np.roll(corners, -1, 1) + np.roll(corners, -1, 2)
        around += np.roll(corners, (-1, -1), (1, 2))
        maps[:, half::step, half::step] = around / 4 + rng.uniform(-reach, reach, around.shape)
        centres = maps[:, half::step, half::step]
        # Midpoints of the grid's horizontal edges, then of its vertical ones.
        across = corners + np.roll(corners, -1, 2) + centres + np.roll(centres, 1, 1)
        maps[:, ::step, half::step] = across / 4 + rng.uniform(-reach, reach, across.shape)
        down = corners + np.roll(corners, -1, 1) + centres + np.roll(centres, 1, 2)
        maps[:, half::step, ::step] = down / 4 + rng.uniform(-reach, reach, down.shape)
        step, reach = half, reach / FOG_DECAY**2
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / (high - low)
