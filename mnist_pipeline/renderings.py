"""Digits 0-9 rendered in TrueType fonts, dark on light, at several sizes, canvases and
places, each read through `mnist_pipeline.digits.to_mnist` exactly as `mnist-pipeline
predict` reads an image file; then the same digits made harder, as pens and scanners make
them. The robustness suite's rendered sets (`mnist_pipeline.corruptions`) and
bench/rendered_digits.py are made here.

The suite renders with the fonts matplotlib ships (FONTS, from its mpl-data folder), never
the system's, so that its digits are the same bytes on every machine with the pinned
packages (Pillow, matplotlib). Its sets, each the same 19 FONTS x 8 LAYOUTS x 0-9 =
1,520 digits, 152 of each (or the same smaller share of them in every set, when the suite
is built from fewer test images: see `chosen_digits`):

    rendered                 as rendered
    rendered_thin            thin strokes: a 3x3 (canvas under 150 px) or 5x5 max filter
                             (the paper eats into the ink)
    rendered_bold            bold strokes: the same sizes of min filter (the ink spreads)
    rendered_blurred         a Gaussian blur of radius 1/40 of the canvas's shorter side
    rendered_low_resolution  scanned so coarsely the digit is 10 px tall (MNIST's are
                             20), blown back up to the canvas, blocky
    rendered_rotated         rotated about the canvas's centre by a uniform random angle
                             in [-15, 15] degrees
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps
from scipy import ndimage

from mnist_pipeline.digits import to_mnist


def _matplotlib_fonts() -> Path:
    """matplotlib's TrueType folder, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("matplotlib is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"


FONT_FOLDER = _matplotlib_fonts()
# The text fonts whose '0'-'9' are ordinary digits (cmmi10's are old-style, and so is
# cmti10's 4; the STIX size and non-Unicode fonts and the Display ones have none), less
# cmr10, whose hairlines the thin variant erases (its 4 loses its diagonal).
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
# (font size in pixels, canvas (width, height), where the digit's centre goes (fractions
# of the canvas)): 60 to 180 px fonts on 80 to 280 px canvases, some off-centre. Each font
# is 0.45 to 0.75 of its canvas's shorter side, so the filters that scale with the canvas
# thin and blur every digit by about the same share (a 24 px digit on a 64 px canvas, as
# the bench also renders, loses whole strokes to the thin filter), and no digit reaches
# the canvas's edge, even rotated 15 degrees.
LAYOUTS = (
    (60, (80, 80), (0.5, 0.5)),
    (64, (96, 96), (0.45, 0.55)),
    (72, (120, 100), (0.5, 0.5)),
    (64, (200, 120), (0.3, 0.4)),
    (90, (200, 140), (0.6, 0.5)),
    (120, (240, 240), (0.5, 0.5)),
    (140, (240, 200), (0.4, 0.45)),
    (180, (280, 220), (0.55, 0.5)),
)
LOW_RESOLUTION_HEIGHT = 10  # pixels: the digit's height in the coarse scan
MAX_DEGREES = 15.0  # rendered_rotated's angles: uniform in [-MAX_DEGREES, MAX_DEGREES]


def render(
    digit: int, font: Path, size: int, canvas: tuple[int, int], place: tuple[float, float]
) -> Image.Image:
    """One digit in `font` at `size` pixels, black on a white grayscale `canvas` (width,
    height), its centre at `place` (fractions of the canvas)."""
    image = Image.new("L", canvas, 255)
    draw = ImageDraw.Draw(image)
    typeface = ImageFont.truetype(str(font), size)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=typeface)
    x = place[0] * canvas[0] - (left + right) / 2
    y = place[1] * canvas[1] - (top + bottom) / 2
    draw.text((x, y), str(digit), fill=0, font=typeface)
    return image


# The variants: a rendered digit (black on white, grayscale) in, a harder one out. The
# stroke filters scale with the canvas so that a thin stroke stays visible on a small one.
# They are Pillow's MaxFilter and MinFilter (a square window, the edge pixels repeated
# beyond it), computed by scipy's separable filters: the same pixels, 8 times faster.
def _stroke_side(image: Image.Image) -> int:
    return 3 if min(image.size) < 150 else 5


def thin(image: Image.Image) -> Image.Image:
    """Thinner strokes: the white paper eats into the ink (a max filter)."""
    pixels = np.asarray(image)
    return Image.fromarray(ndimage.maximum_filter(pixels, _stroke_side(image), mode="nearest"))


def bold(image: Image.Image) -> Image.Image:
    """Bolder strokes: the ink spreads (a min filter)."""
    pixels = np.asarray(image)
    return Image.fromarray(ndimage.minimum_filter(pixels, _stroke_side(image), mode="nearest"))


def blurred(image: Image.Image) -> Image.Image:
    """Out of focus: a Gaussian blur of radius 1/40 of the canvas's shorter side."""
    return image.filter(ImageFilter.GaussianBlur(min(image.size) / 40))


def low_resolution(image: Image.Image) -> Image.Image:
    """Scanned so coarsely that the digit is LOW_RESOLUTION_HEIGHT pixels tall (MNIST's
    are 20), then blown back up to the canvas's size, blocky."""
    width, height = image.size
    _, top, _, bottom = ImageOps.invert(image).getbbox()
    scale = min(1.0, LOW_RESOLUTION_HEIGHT / (bottom - top))
    small = image.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX
    )
    return small.resize((width, height), Image.Resampling.NEAREST)


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated `degrees` anticlockwise about the canvas's centre, the corners white."""
    return image.rotate(degrees, Image.Resampling.BILINEAR, fillcolor=255)


@dataclasses.dataclass(frozen=True)
class Variant:
    """How a rendered set makes a rendered digit harder: `draw` takes what one digit needs
    from the set's generator (None: nothing), `apply` makes the digit (black on white,
    grayscale) harder with it."""

    apply: Callable[[Image.Image, Any], Image.Image]
    draw: Callable[[np.random.Generator], Any] = lambda rng: None


# The suite's rendered sets: name -> how each makes its digits harder.
SETS: dict[str, Variant] = {
    "rendered": Variant(lambda image, _: image),
    "rendered_thin": Variant(lambda image, _: thin(image)),
    "rendered_bold": Variant(lambda image, _: bold(image)),
    "rendered_blurred": Variant(lambda image, _: blurred(image)),
    "rendered_low_resolution": Variant(lambda image, _: low_resolution(image)),
    "rendered_rotated": Variant(
        rotated, draw=lambda rng: float(rng.uniform(-MAX_DEGREES, MAX_DEGREES))
    ),
}
GRID_SIZE = len(FONTS) * len(LAYOUTS) * 10  # every digit in every font and layout: 1,520


def font_paths() -> list[Path]:
    """The suite's fonts, as files in matplotlib's folder."""
    return [FONT_FOLDER / name for name in FONTS]


def spread_pairs(fonts: int = len(FONTS), layouts: int = len(LAYOUTS)) -> list[tuple[int, int]]:
    """Every (font, layout) pair of a `fonts` x `layouts` grid, by index, once each, in an
    order whose every beginning is spread over the fonts and the layouts alike: pair k is
    font k mod `fonts` and layout k mod `layouts` (shifted by one more layout after each
    lcm(fonts, layouts) pairs, where the two counts share a factor; 19 and 8 do not)."""
    cycle = math.lcm(fonts, layouts)
    return [(k % fonts, (k + k // cycle) % layouts) for k in range(fonts * layouts)]


def chosen_digits(count: int | None = None) -> set[tuple[int, int, int]]:
    """The (font, layout, digit) indices of a rendered set of `count` digits (None, or
    GRID_SIZE and more: all of them): 0-9 in each of the first pairs of `spread_pairs`,
    the last of them cut short where `count` is no multiple of 10 (its first digits)."""
    total = GRID_SIZE if count is None else min(count, GRID_SIZE)
    if total < 0:
        raise ValueError(f"a rendered set holds 0 or more digits; got {count}")
    return {
        (font, layout, digit)
        for at, (font, layout) in enumerate(spread_pairs())
        for digit in range(10)
        if at * 10 + digit < total
    }


def rendered_set(
    name: str, rng: np.random.Generator, count: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The rendered set `name` (one of SETS) of `count` digits (see `chosen_digits`;
    None: every digit 0-9 in every font of FONTS in every layout of LAYOUTS), made harder
    by the set's variant and read by `to_mnist`, in the grid's order (fonts, then layouts,
    then digits). Every digit of the grid draws from `rng`, chosen or not, so a smaller
    set is the very digits of the whole one it holds, byte for byte. Returns (images (M,
    28, 28) uint8, labels (M,) uint8)."""
    variant = SETS[name]
    chosen = chosen_digits(count)
    images, labels = [], []
    grid = itertools.product(enumerate(font_paths()), enumerate(LAYOUTS), range(10))
    for (font_at, font), (layout_at, (size, canvas, place)), digit in grid:
        drawn = variant.draw(rng)
        if (font_at, layout_at, digit) in chosen:
            image = variant.apply(render(digit, font, size, canvas, place), drawn)
            images.append(to_mnist(image))
            labels.append(digit)
    if not images:
        return np.zeros((0, 28, 28), dtype=np.uint8), np.zeros(0, dtype=np.uint8)
    return np.stack(images), np.array(labels, dtype=np.uint8)
